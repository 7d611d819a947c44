"""A function's policy: how often a failed job is tried again and after what delay, and how long the
outcome of a background job is kept once it ended.

A policy is written as words ``name=value`` (the same text on the command line, in the admin command
``policy``, over HTTP and in the durable store):

    tries=5 delay=2 backoff=exponential factor=2 cap=300 jitter=0.1 foreground=no keep=3600

``tries`` counts every try, the first included (``tries=1``: never again); ``delay`` is the seconds
before the first retry, multiplied by ``factor`` for each further one with ``backoff=exponential``,
never more than ``cap``; ``jitter`` spreads each delay by up to that fraction either way, so jobs
that failed together do not all come back together; ``foreground=yes`` retries foreground jobs too
(their clients wait through the tries; by default only background jobs are retried, a foreground
client decides for itself); ``keep`` is the seconds a background job's outcome is kept (0: not kept).
A word left out takes its default; an unknown word or a bad value is an error naming it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

#: the words a policy may have, in the order they are written
WORDS = ("tries", "delay", "backoff", "factor", "cap", "jitter", "foreground", "keep")
BACKOFFS = ("fixed", "exponential")
#: a try count or delay beyond these is a typo, not a policy
MAX_TRIES = 1000
MAX_SECONDS = 365 * 24 * 3600.0


class PolicyError(ValueError):
    """A policy's text cannot be read: the message names the word and what it takes."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How a function's failed jobs are tried again, and how long its background jobs' outcomes are kept."""

    tries: int = 1
    delay: float = 1.0
    backoff: str = "fixed"
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.0
    foreground: bool = False
    keep: float = 0.0

    @property
    def retries(self) -> bool:
        """Whether a failed job is tried again at all."""
        return self.tries > 1

    def delay_before(self, try_number: int, rand: random.Random | None = None) -> float:
        """Seconds to wait before try TRY_NUMBER (2 for the first retry)."""
        delay = self.delay
        if self.backoff == "exponential":
            delay *= self.factor ** max(0, try_number - 2)
        delay = min(delay, self.cap)
        if self.jitter:
            delay *= 1.0 + self.jitter * ((rand or random).random() * 2.0 - 1.0)
        return max(0.0, delay)

    def text(self) -> str:
        """The words of every setting that differs from the default (empty for the default policy)."""
        default = Policy()
        words = []
        for name in WORDS:
            value = getattr(self, name)
            if value != getattr(default, name):
                words.append(f"{name}={_show(value)}")
        return " ".join(words)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse(text: str, base: Policy | None = None) -> Policy:
    """The policy TEXT describes, its words laid over BASE (the defaults when None)."""
    values = {f.name: getattr(base or Policy(), f.name) for f in fields(Policy)}
    for word in text.replace(",", " ").split():
        name, sep, raw = word.partition("=")
        name = name.strip().lower()
        if not sep or name not in WORDS:
            raise PolicyError(f"unknown policy word {word!r}: a policy is words name=value with names "
                              f"{', '.join(WORDS)}")
        values[name] = _read(name, raw.strip())
    policy = Policy(**values)
    if policy.cap < policy.delay and policy.backoff == "exponential":
        raise PolicyError(f"cap={policy.cap:g} is below delay={policy.delay:g}")
    return policy


def _read(name: str, raw: str) -> object:
    try:
        if name == "tries":
            value: object = int(raw)
            if not 1 <= value <= MAX_TRIES:  # type: ignore[operator]
                raise ValueError
        elif name == "backoff":
            if raw.lower() not in BACKOFFS:
                raise ValueError
            value = raw.lower()
        elif name == "foreground":
            if raw.lower() not in ("yes", "no", "true", "false", "1", "0"):
                raise ValueError
            value = raw.lower() in ("yes", "true", "1")
        elif name == "jitter":
            value = float(raw)
            if not 0.0 <= value <= 1.0:  # type: ignore[operator]
                raise ValueError
        elif name == "factor":
            value = float(raw)
            if not 1.0 <= value <= 100.0:  # type: ignore[operator]
                raise ValueError
        else:  # delay, cap, keep: seconds
            value = float(raw.removesuffix("s"))
            if not 0.0 <= value <= MAX_SECONDS:  # type: ignore[operator]
                raise ValueError
    except ValueError:
        raise PolicyError(f"bad value for {name}: {raw!r} ({_expects(name)})") from None
    return value


def _expects(name: str) -> str:
    return {
        "tries": f"a whole number from 1 to {MAX_TRIES}",
        "backoff": "fixed or exponential",
        "foreground": "yes or no",
        "jitter": "a fraction from 0 to 1",
        "factor": "a number from 1 to 100",
    }.get(name, "seconds, from 0 to a year")
