"""The cap on unfinished input held over all connections (``--max-buffered-input``).

Every connection holds the input it cannot act on yet: the part of a Gearman packet received so far,
an HTTP request body still arriving. One connection is bounded by its own limits (the packet size,
the HTTP body limit); many together are bounded here, so clients that open connections and send big
packets or bodies slowly cannot grow the server's memory without end. Both listeners take bytes from
one ``InputBudget`` as they come to hold them and give them back when the input is complete (or the
connection is gone); what would pass the cap is refused with an error naming the option.
"""

from __future__ import annotations

import os

#: the default cap is this share of the machine's memory, at most DEFAULT_MAX
DEFAULT_SHARE = 4
DEFAULT_MAX = 1024 * 1024 * 1024
OPTION = "--max-buffered-input"


def default_limit() -> int:
    """A quarter of the machine's physical memory, at most 1 GiB (1 GiB where it cannot be read)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return DEFAULT_MAX
    return min(DEFAULT_MAX, memory // DEFAULT_SHARE) if memory > 0 else DEFAULT_MAX


class InputBudget:
    """Bytes of unfinished input held over all connections, against a limit (0: no limit)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Hold N more bytes, unless that would pass the limit (then nothing is taken: False)."""
        used = self.used + n
        if self.limit and used > self.limit:
            return False
        self.used = used
        return True

    def give(self, n: int) -> None:
        """N bytes taken before are no longer held."""
        self.used -= n

    def refusal(self) -> str:
        """Why input was refused, for the log and the error sent back."""
        return (f"the server holds {self.used} bytes of unfinished input from all connections and may hold at most "
                f"{self.limit} ({OPTION}); try again later")
