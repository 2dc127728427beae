"""The GCRA arithmetic shared by the memory backend (and mirrored in the Redis Lua script)."""

from __future__ import annotations

import random

import pytest

from builtin_plugins.ratelimit.limits import gcra, parse_limit


@pytest.mark.parametrize("text", ["1/hour", "3/minute", "10/s", "7/5 minutes", "1000/day"])
def test_exactly_count_requests_in_a_burst_at_any_clock_value(text):
    limit = parse_limit(text)
    rng = random.Random(text)
    for _ in range(200):
        now = rng.uniform(0, 2e9)
        tat = None
        for i in range(limit.count):
            decision, tat = gcra(tat, now, limit)
            assert decision.allowed, (now, i)
            assert decision.remaining == limit.count - i - 1
        decision, unchanged = gcra(tat, now, limit)
        assert not decision.allowed and unchanged is None
        assert decision.retry_after == pytest.approx(limit.interval, rel=1e-3)
        # one interval later, exactly one more
        decision, tat2 = gcra(tat, now + limit.interval, limit)
        assert decision.allowed
        decision, _ = gcra(tat2, now + limit.interval, limit)
        assert not decision.allowed


def test_parse_limit():
    assert parse_limit("10/minute").period == 60 and parse_limit("10/minute").count == 10
    assert parse_limit(" 30 / 5 minutes ").period == 300
    assert parse_limit("2/d").period == 86400
    for bad in ("0/minute", "ten/minute", "10/fortnight", "10", "-1/s"):
        with pytest.raises(ValueError):
            parse_limit(bad)
