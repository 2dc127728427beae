"""Where counters live: this process (``memory``) or Redis (``redis``, shared by every instance).

Both backends answer the same three questions:
- ``hit``: count one request against a GCRA limit, after checking the caller's daily token
  quota when one applies (for Redis: one Lua script, one round trip);
- ``add_usage``: add LLM tokens to a user's count for a UTC day (idempotent per event id
  on Redis, where every instance receives the same bus event);
- ``usage``: tokens used by a user on a UTC day.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from sdk.redispipe import RedisPipe, RedisReplyError, RedisUnavailable, Script

from .limits import Decision, Limit, gcra

# Day counters are kept a little longer than a day so a request around midnight still sees them.
QUOTA_TTL_SECONDS = 2 * 86400


class BackendUnavailable(Exception):
    """The shared store cannot be reached; the plugin applies ``on_backend_error``."""


@dataclass(frozen=True, slots=True)
class HitResult:
    decision: Decision | None  # None when the quota refused the request before counting it
    quota_used: int = 0


class Backend(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def hit(self, key: str, limit: Limit, quota_key: str, quota_limit: int) -> HitResult: ...
    async def add_usage(self, quota_key: str, tokens: int, event_id: str) -> int: ...
    async def usage(self, quota_key: str) -> int: ...
    async def probe(self) -> None: ...
    def status(self) -> tuple[bool, str]: ...


class MemoryBackend:
    """Counters in this process: exact for one server, reset by a restart."""

    SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._quota: dict[str, int] = {}
        self._hits = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._tat.clear()

    def _sweep(self, now: float) -> None:
        # Drop limits whose every slot is back (tat in the past): bounded memory under many clients.
        self._tat = {k: v for k, v in self._tat.items() if v > now}

    async def hit(self, key: str, limit: Limit, quota_key: str, quota_limit: int) -> HitResult:
        used = 0
        if quota_key and quota_limit > 0:
            used = self._quota.get(quota_key, 0)
            if used >= quota_limit:
                return HitResult(None, used)
        now = time.monotonic()
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            self._sweep(now)
        decision, new_tat = gcra(self._tat.get(key), now, limit)
        if new_tat is not None:
            self._tat[key] = new_tat
        return HitResult(decision, used)

    async def add_usage(self, quota_key: str, tokens: int, event_id: str) -> int:
        # The in-memory bus delivers an event once to this process; keys of past days are
        # dropped as new days start.
        day = quota_key.rsplit(":", 1)[-1]
        if any(not k.endswith(day) for k in self._quota):
            self._quota = {k: v for k, v in self._quota.items() if k.endswith(day)}
        total = self._quota.get(quota_key, 0) + tokens
        self._quota[quota_key] = total
        return total

    async def usage(self, quota_key: str) -> int:
        return self._quota.get(quota_key, 0)

    async def probe(self) -> None:
        return None

    def status(self) -> tuple[bool, str]:
        return True, "in-process counters"


# KEYS[1] limit key, KEYS[2] quota key; ARGV period_ms, count, quota_limit (0: no quota check).
# Returns {status, remaining, reset_ms, retry_after_ms, quota_used}; status 1 allowed,
# 0 limited, 2 quota spent. Time comes from the Redis server, so every instance agrees.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local used = 0
if quota > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= quota then
    return {2, 0, 0, 0, used}
  end
end
local interval = period / count
local tolerance = period - interval
local backlog = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if backlog < 0 then backlog = 0 end
-- a thousandth of an interval (at least 1 microsecond) of slack for float and '%.3f' rounding
local slack = math.max(interval / 1000, 0.001)
if backlog > tolerance + slack then
  return {0, 0, math.ceil(backlog), math.ceil(backlog - tolerance), used}
end
local used_ms = backlog + interval
redis.call('SET', KEYS[1], string.format('%.3f', now + used_ms), 'PX', math.ceil(used_ms))
local remaining = math.floor((period - used_ms) / interval + 0.001)
return {1, remaining, math.ceil(used_ms), 0, used}
"""

# KEYS[1] quota key, KEYS[2] event marker; ARGV tokens, ttl seconds. Counts each event once
# even though the Redis bus hands it to every instance.
USAGE_LUA = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  local v = redis.call('INCRBY', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return v
end
return -1
"""


class RedisBackend:
    """Counters in Redis: one limit for all instances, on an auto-pipelined connection
    (``sdk.redispipe``: a check costs a few microseconds of CPU). While Redis is
    unreachable every call raises :class:`BackendUnavailable` at once (no waiting on each
    request) and Redis is tried again every ``retry_seconds``."""

    def __init__(self, url: str, prefix: str, timeout: float, retry_seconds: float) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._redis: RedisPipe | None = None
        self._gcra: Script | None = None
        self._usage: Script | None = None

    async def start(self) -> None:
        self._redis = RedisPipe(self.url, timeout=self.timeout, retry_seconds=self.retry_seconds)
        self._gcra = self._redis.script(GCRA_LUA)
        self._usage = self._redis.script(USAGE_LUA)
        try:
            await self._call(self._redis.ping())
        except BackendUnavailable:
            pass  # reported by health(); requests follow on_backend_error until it is back

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except (RedisUnavailable, RedisReplyError) as exc:
            raise BackendUnavailable(str(exc)) from exc

    def _pipe(self) -> RedisPipe:
        if self._redis is None:
            raise BackendUnavailable("not started")
        return self._redis

    async def hit(self, key: str, limit: Limit, quota_key: str, quota_limit: int) -> HitResult:
        self._pipe()
        assert self._gcra is not None
        keys = [self.prefix + key, self.prefix + (quota_key or "q:none")]
        args = [int(limit.period * 1000), limit.count, quota_limit if quota_key else 0]
        status, remaining, reset_ms, retry_ms, used = await self._call(self._gcra(keys, args))
        if int(status) == 2:
            return HitResult(None, int(used))
        decision = Decision(
            allowed=int(status) == 1,
            limit=limit.count,
            remaining=int(remaining),
            reset=int(reset_ms) / 1000,
            retry_after=int(retry_ms) / 1000,
        )
        return HitResult(decision, int(used))

    async def add_usage(self, quota_key: str, tokens: int, event_id: str) -> int:
        self._pipe()
        assert self._usage is not None
        keys = [self.prefix + quota_key, self.prefix + "evt:" + event_id]
        return int(await self._call(self._usage(keys, [tokens, QUOTA_TTL_SECONDS])))

    async def usage(self, quota_key: str) -> int:
        value = await self._call(self._pipe().call("GET", self.prefix + quota_key))
        return int(value or 0)

    async def probe(self) -> None:
        """Ping Redis when it was last seen down, so health recovers without traffic."""
        if self._redis is not None and not self._redis.up:
            try:
                await self._call(self._redis.ping())
            except BackendUnavailable:
                pass

    def status(self) -> tuple[bool, str]:
        if self._redis is None:
            return False, "not started"
        if not self._redis.up:
            return False, f"Redis unreachable: {self._redis.last_error}"
        return True, "Redis reachable"
