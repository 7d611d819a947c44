"""Cron specs for SUBMIT_JOB_SCHED: parse the five fields and find the next time they match.

Fields are minute, hour, day-of-month, month, day-of-week (0 or 7 = Sunday), each one of: empty or
``*`` (any), a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those.
As in cron, when both day-of-month and day-of-week are restricted a day matching either counts.
Times are the server's local time. Pure: the caller passes the current time in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


class CronError(ValueError):
    """A field of a cron spec cannot be parsed."""


_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))


def _parse_field(raw: bytes | str, name: str, lo: int, hi: int) -> frozenset[int] | None:
    """The set of values RAW allows, or None for 'any'."""
    text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    if text in ("", "*"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, _, step_text = part.partition("/")
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step in {name} field: {text!r}")
            step = int(step_text)
        if part in ("*", ""):
            start, stop = lo, hi
        elif "-" in part:
            a, _, b = part.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise CronError(f"bad range in {name} field: {text!r}")
            start, stop = int(a), int(b)
        elif part.isdigit():
            start = stop = int(part)
            if step != 1:
                stop = hi
        else:
            raise CronError(f"bad {name} field: {text!r}")
        if start < lo or stop > hi or start > stop:
            raise CronError(f"{name} out of range {lo}-{hi}: {text!r}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed five-field cron spec; None in a field means any value."""

    minute: frozenset[int] | None
    hour: frozenset[int] | None
    mday: frozenset[int] | None
    month: frozenset[int] | None
    wday: frozenset[int] | None
    text: str = "* * * * *"

    @classmethod
    def parse(cls, minute: bytes | str, hour: bytes | str, mday: bytes | str, month: bytes | str,
              wday: bytes | str) -> Cron:
        raw = (minute, hour, mday, month, wday)
        sets = [_parse_field(r, n, lo, hi) for r, (n, lo, hi) in zip(raw, _FIELDS, strict=True)]
        wd = sets[4]
        if wd is not None and 7 in wd:
            wd = frozenset((wd - {7}) | {0})
        texts = []
        for r in raw:
            t = (r.decode("ascii", errors="replace") if isinstance(r, bytes) else r).strip()
            texts.append(t or "*")
        return cls(sets[0], sets[1], sets[2], sets[3], wd, " ".join(texts))

    def _day_ok(self, tm: time.struct_time) -> bool:
        if self.month is not None and tm.tm_mon not in self.month:
            return False
        wday = (tm.tm_wday + 1) % 7  # struct_time: Monday=0; cron: Sunday=0
        if self.mday is None and self.wday is None:
            return True
        if self.mday is None:
            return wday in self.wday  # type: ignore[operator]
        if self.wday is None:
            return tm.tm_mday in self.mday
        return tm.tm_mday in self.mday or wday in self.wday

    def next_after(self, now: float) -> float:
        """The first whole minute strictly after NOW (epoch seconds) that matches, in local time."""
        start = (int(now) // 60 + 1) * 60
        hours = sorted(self.hour) if self.hour is not None else list(range(24))
        minutes = sorted(self.minute) if self.minute is not None else list(range(60))
        tm = time.localtime(start)
        # walk day by day (at most ~8 years, enough for Feb 29 on a given weekday)
        day_start = time.mktime((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0, 0, 0, -1))
        for day in range(366 * 8):
            day_tm = time.localtime(day_start + day * 86400 + 3 * 3600)  # 03:00 avoids DST edges
            if not self._day_ok(day_tm):
                continue
            for h in hours:
                for m in minutes:
                    t = time.mktime((day_tm.tm_year, day_tm.tm_mon, day_tm.tm_mday, h, m, 0, 0, 0, -1))
                    if t >= start:
                        return float(t)
        raise CronError(f"cron spec {self.text!r} never matches")
