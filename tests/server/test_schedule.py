"""Cron specs of SUBMIT_JOB_SCHED: parsing and the next matching minute."""

from __future__ import annotations

import time

import pytest

from geartrain.server.schedule import Cron, CronError


def _local(y, mo, d, h=0, mi=0):
    return time.mktime((y, mo, d, h, mi, 0, 0, 0, -1))


def test_empty_fields_mean_every_minute():
    cron = Cron.parse(b"", b"", b"", b"", b"")
    t = _local(2026, 3, 10, 12, 30) + 5
    assert cron.next_after(t) == _local(2026, 3, 10, 12, 31)
    assert cron.text == "* * * * *"


def test_fixed_time_daily():
    cron = Cron.parse(b"15", b"3", b"", b"", b"")
    assert cron.next_after(_local(2026, 3, 10, 12, 0)) == _local(2026, 3, 11, 3, 15)
    assert cron.next_after(_local(2026, 3, 10, 3, 0)) == _local(2026, 3, 10, 3, 15)


def test_lists_ranges_steps():
    cron = Cron.parse(b"*/20", b"9-10", b"", b"", b"")
    assert cron.minute == frozenset({0, 20, 40})
    assert cron.hour == frozenset({9, 10})
    assert Cron.parse(b"1,2,5-7", b"", b"", b"", b"").minute == frozenset({1, 2, 5, 6, 7})
    assert cron.next_after(_local(2026, 3, 10, 10, 41)) == _local(2026, 3, 11, 9, 0)


def test_day_of_week_sunday_is_0_or_7():
    sunday = Cron.parse(b"0", b"0", b"", b"", b"7")
    assert sunday.wday == frozenset({0})
    t = sunday.next_after(_local(2026, 3, 10))  # a Tuesday
    assert time.localtime(t).tm_wday == 6 and time.localtime(t).tm_mday == 15


def test_day_of_month_or_day_of_week():
    cron = Cron.parse(b"0", b"0", b"20", b"", b"1")  # the 20th, or any Monday
    assert cron.next_after(_local(2026, 3, 10)) == _local(2026, 3, 16)  # Monday 16th comes first


def test_bad_specs():
    for fields in ((b"60", b"", b"", b"", b""), (b"x", b"", b"", b"", b""), (b"", b"", b"", b"13", b""),
                   (b"*/0", b"", b"", b"", b""), (b"5-2", b"", b"", b"", b"")):
        with pytest.raises(CronError):
            Cron.parse(*fields)
    with pytest.raises(CronError):
        Cron.parse(b"0", b"0", b"31", b"2", b"").next_after(_local(2026, 1, 1))
