"""geartrain: Gearman, rebuilt in Python — job server, client and worker libraries, command line.

The libraries' main names are here: ``from geartrain import Client, AsyncClient, Worker, AsyncWorker, Task``.
They are imported on first use (PEP 562), so ``import geartrain`` (the command line's first step,
and the server's) does not pay for the client and worker modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: name -> the module that defines it
_LAZY = {"Client": "client", "AsyncClient": "client", "Task": "client", "Worker": "worker", "AsyncWorker": "worker"}

__all__ = ["AsyncClient", "AsyncWorker", "Client", "Task", "Worker", "__version__"]

if TYPE_CHECKING:
    from .client import AsyncClient, Client, Task
    from .worker import AsyncWorker, Worker


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geartrain' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
