"""server/policy.py: a policy's words, their defaults and limits, and the delays they give."""

from __future__ import annotations

import random

import pytest

from geartrain.server.policy import Policy, PolicyError, parse


def test_words_and_defaults():
    p = parse("tries=5 delay=2 backoff=exponential factor=3 cap=60 jitter=0.5 foreground=yes keep=3600")
    assert p == Policy(5, 2.0, "exponential", 3.0, 60.0, 0.5, True, 3600.0)
    assert parse("") == Policy() and not Policy().retries
    assert parse("tries=2").retries
    assert parse("delay=1.5s,keep=10").delay == 1.5  # commas separate too; seconds may carry an s


def test_words_lay_over_a_base():
    base = parse("tries=4 keep=60")
    assert parse("delay=5", base) == Policy(tries=4, delay=5.0, keep=60.0)


def test_text_round_trips_and_names_only_what_differs():
    p = parse("tries=3 backoff=exponential keep=7")
    assert p.text() == "tries=3 backoff=exponential keep=7"
    assert parse(p.text()) == p
    assert Policy().text() == ""


@pytest.mark.parametrize(("words", "says"), [
    ("tries=0", "bad value for tries"), ("tries=x", "bad value for tries"), ("backoff=linear", "fixed or exponential"),
    ("jitter=2", "a fraction"), ("delay=-1", "bad value for delay"), ("retries=3", "unknown policy word"),
    ("tries", "unknown policy word"), ("foreground=maybe", "yes or no"),
    ("delay=10 cap=5 backoff=exponential", "cap=5 is below delay=10"),
])
def test_bad_words_are_refused_naming_them(words, says):
    with pytest.raises(PolicyError, match=says):
        parse(words)


def test_fixed_and_exponential_delays_capped():
    fixed = parse("tries=5 delay=3")
    assert [fixed.delay_before(n) for n in (2, 3, 4)] == [3.0, 3.0, 3.0]
    exp = parse("tries=9 delay=1 backoff=exponential factor=2 cap=10")
    assert [exp.delay_before(n) for n in (2, 3, 4, 5, 6, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_spreads_delays_within_its_fraction():
    p = parse("tries=3 delay=10 jitter=0.2")
    rand = random.Random(7)
    delays = [p.delay_before(2, rand) for _ in range(500)]
    assert min(delays) >= 8.0 and max(delays) <= 12.0
    assert max(delays) - min(delays) > 3.0  # spread, not one value
