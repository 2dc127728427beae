"""Parsing limits ("10/minute") and the decision a check produces."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}

# "10/minute", "5 / 2 hours", "100/s"
LIMIT_PATTERN = (
    r"^\s*[1-9][0-9]{0,8}\s*/\s*([1-9][0-9]{0,5}\s*)?"
    r"(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\s*$"
)
_LIMIT_RE = re.compile(LIMIT_PATTERN)


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    period: float  # seconds
    text: str

    @property
    def interval(self) -> float:
        """GCRA emission interval: one request every ``interval`` seconds at steady state."""
        return self.period / self.count


def parse_limit(text: str) -> Limit:
    m = _LIMIT_RE.match(text)
    if m is None:
        raise ValueError(f"not a limit: {text!r} (expected e.g. '10/minute')")
    count_text = text.split("/", 1)[0]
    multiplier = int(m.group(1)) if m.group(1) else 1
    return Limit(int(count_text), float(multiplier * UNITS[m.group(2)]), text.strip())


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the whole quota is available again
    retry_after: float  # seconds until the next request would be admitted (0 when allowed)

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(max(0, math.ceil(self.reset))),
        }


def gcra(tat: float | None, now: float, limit: Limit) -> tuple[Decision, float | None]:
    """One GCRA step: returns the decision and the new theoretical arrival time (None: unchanged).

    The same arithmetic runs in Lua for the Redis backend (redis_backend.py).
    """
    interval = limit.interval
    # Work relative to now, and allow a thousandth of an interval of float error: clock
    # values are large, and (now + period) - period need not round back to now.
    backlog = 0.0 if tat is None or tat < now else tat - now
    tolerance = limit.period - interval
    if backlog > tolerance + interval * 1e-3:
        return Decision(False, limit.count, 0, backlog, backlog - tolerance), None
    used = backlog + interval
    remaining = math.floor((limit.period - used) / interval + 1e-3)
    return Decision(True, limit.count, remaining, used, 0.0), now + used
