"""Where counters live: this process (``memory``) or Redis (``redis``, shared by every instance).

Both backends answer the same three questions:
- ``hit``: count one request against a GCRA limit, after checking the caller's daily token
  quota when one applies (for Redis: one Lua script, one round trip);
- ``add_usage``: add LLM tokens to a user's count for a UTC day (idempotent per event id
  on Redis, where every instance receives the same bus event);
- ``usage``: tokens used by a user on a UTC day.

A quota check may also **reserve** tokens for the turn it admits (``Reserve``): a turn is
admitted while the tokens used plus those reserved by turns still running are below the
quota, and then reserves its own. Usage consumes the user's reservations (oldest first);
``settle`` drops what a finished turn did not use; a reservation nobody settles lapses
after its ``ttl``. So turns started in parallel cannot together overshoot the quota by
more than one turn's reservation.
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
    quota_reserved: int = 0  # by turns still running (when the quota refused)


@dataclass(frozen=True, slots=True)
class Reserve:
    """Tokens to set aside for the turn a quota check admits, under ``reservation_id``."""

    reservation_id: str
    tokens: int
    ttl: float


class Backend(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def hit(
        self,
        key: str,
        limit: Limit,
        quota_key: str,
        quota_limit: int,
        reserve: Reserve | None = None,
    ) -> HitResult: ...
    async def add_usage(self, quota_key: str, tokens: int, event_id: str) -> int: ...
    async def settle(self, quota_key: str, reservation_id: str) -> None: ...
    async def usage(self, quota_key: str) -> int: ...
    async def probe(self) -> None: ...
    def status(self) -> tuple[bool, str]: ...


class MemoryBackend:
    """Counters in this process: exact for one server, reset by a restart."""

    SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._quota: dict[str, int] = {}
        # quota key -> reservation id -> [tokens left, expires (monotonic)], oldest first
        self._reserved: dict[str, dict[str, list[float]]] = {}
        self._hits = 0

    def _reservations(self, quota_key: str) -> dict[str, list[float]]:
        held = self._reserved.get(quota_key)
        if held is None:
            return {}
        now = time.monotonic()
        for rid in [r for r, (_, expires) in held.items() if expires <= now]:
            del held[rid]
        if not held:
            del self._reserved[quota_key]
        return held

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._tat.clear()

    def _sweep(self, now: float) -> None:
        # Drop limits whose every slot is back (tat in the past): bounded memory under many clients.
        self._tat = {k: v for k, v in self._tat.items() if v > now}

    async def hit(
        self,
        key: str,
        limit: Limit,
        quota_key: str,
        quota_limit: int,
        reserve: Reserve | None = None,
    ) -> HitResult:
        used = 0
        quota = bool(quota_key and quota_limit > 0)
        if quota:
            used = self._quota.get(quota_key, 0)
            reserved = int(sum(left for left, _ in self._reservations(quota_key).values()))
            if used + reserved >= quota_limit:
                return HitResult(None, used, reserved)
        now = time.monotonic()
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            self._sweep(now)
            for qk in list(self._reserved):
                self._reservations(qk)
        decision, new_tat = gcra(self._tat.get(key), now, limit)
        if new_tat is not None:
            self._tat[key] = new_tat
        if quota and reserve is not None and reserve.tokens > 0 and decision.allowed:
            held = self._reserved.setdefault(quota_key, {})
            held[reserve.reservation_id] = [float(reserve.tokens), now + reserve.ttl]
        return HitResult(decision, used)

    async def settle(self, quota_key: str, reservation_id: str) -> None:
        held = self._reserved.get(quota_key)
        if held is not None:
            held.pop(reservation_id, None)
            if not held:
                del self._reserved[quota_key]

    async def add_usage(self, quota_key: str, tokens: int, event_id: str) -> int:
        # The in-memory bus delivers an event once to this process; keys of past days are
        # dropped as new days start.
        day = quota_key.rsplit(":", 1)[-1]
        if any(not k.endswith(day) for k in self._quota):
            self._quota = {k: v for k, v in self._quota.items() if k.endswith(day)}
        total = self._quota.get(quota_key, 0) + tokens
        self._quota[quota_key] = total
        left = float(tokens)  # what was used comes out of the oldest reservations
        held = self._reservations(quota_key)
        for rid in list(held):
            if left <= 0:
                break
            take = min(left, held[rid][0])
            held[rid][0] -= take
            left -= take
            if held[rid][0] <= 0:
                del held[rid]
        return total

    async def usage(self, quota_key: str) -> int:
        return self._quota.get(quota_key, 0)

    async def probe(self) -> None:
        return None

    def status(self) -> tuple[bool, str]:
        return True, "in-process counters"


# The tokens reserved in hash KEYS[1] (field: reservation id, value "tokens|expires_ms"),
# dropping lapsed ones. Shared by the scripts below.
RESERVED_LUA = """
local function reserved_tokens(key, now)
  local total = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local left, expires = string.match(fields[i + 1], '([^|]+)|([^|]+)')
    if tonumber(expires) <= now then
      redis.call('HDEL', key, fields[i])
    else
      total = total + tonumber(left)
    end
  end
  return total
end
"""

# KEYS[1] limit key, KEYS[2] quota key, KEYS[3] reservations of that quota key; ARGV
# period_ms, count, quota_limit (0: no quota check), tokens to reserve (0: none),
# reservation id, its ttl_ms. Returns {status, remaining, reset_ms, retry_after_ms,
# quota_used, quota_reserved}; status 1 allowed, 0 limited, 2 quota spent. Time comes from
# the Redis server, so every instance agrees.
GCRA_LUA = (
    RESERVED_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4])
local used = 0
if quota > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
  local reserved = reserved_tokens(KEYS[3], now)
  if used + reserved >= quota then
    return {2, 0, 0, 0, used, reserved}
  end
end
local interval = period / count
local tolerance = period - interval
local backlog = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if backlog < 0 then backlog = 0 end
-- a thousandth of an interval (at least 1 microsecond) of slack for float and '%.3f' rounding
local slack = math.max(interval / 1000, 0.001)
if backlog > tolerance + slack then
  return {0, 0, math.ceil(backlog), math.ceil(backlog - tolerance), used, 0}
end
local used_ms = backlog + interval
redis.call('SET', KEYS[1], string.format('%.3f', now + used_ms), 'PX', math.ceil(used_ms))
if quota > 0 and reserve > 0 then
  local ttl = tonumber(ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[5], reserve .. '|' .. string.format('%.0f', now + ttl))
  redis.call('PEXPIRE', KEYS[3], ttl)
end
local remaining = math.floor((period - used_ms) / interval + 0.001)
return {1, remaining, math.ceil(used_ms), 0, used, 0}
"""
)

# KEYS[1] quota key, KEYS[2] event marker, KEYS[3] reservations; ARGV tokens, ttl seconds.
# Counts each event once even though the Redis bus hands it to every instance, and takes
# the tokens out of the oldest reservations.
USAGE_LUA = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  local v = redis.call('INCRBY', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  local left = tonumber(ARGV[1])
  local fields = redis.call('HGETALL', KEYS[3])
  local held = {}
  for i = 1, #fields, 2 do
    local tokens, expires = string.match(fields[i + 1], '([^|]+)|([^|]+)')
    held[#held + 1] = {fields[i], tonumber(tokens), expires}
  end
  table.sort(held, function(a, b) return tonumber(a[3]) < tonumber(b[3]) end)
  for _, r in ipairs(held) do
    if left <= 0 then break end
    local take = math.min(left, r[2])
    left = left - take
    if r[2] - take <= 0 then
      redis.call('HDEL', KEYS[3], r[1])
    else
      redis.call('HSET', KEYS[3], r[1], (r[2] - take) .. '|' .. r[3])
    end
  end
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

    async def hit(
        self,
        key: str,
        limit: Limit,
        quota_key: str,
        quota_limit: int,
        reserve: Reserve | None = None,
    ) -> HitResult:
        self._pipe()
        assert self._gcra is not None
        quota = self.prefix + (quota_key or "q:none")
        keys = [self.prefix + key, quota, quota + ":r"]
        args = [int(limit.period * 1000), limit.count, quota_limit if quota_key else 0]
        if reserve is not None and reserve.tokens > 0:
            args += [reserve.tokens, reserve.reservation_id, max(1, int(reserve.ttl * 1000))]
        else:
            args += [0, "", 1]
        status, remaining, reset_ms, retry_ms, used, reserved = await self._call(
            self._gcra(keys, args)
        )
        if int(status) == 2:
            return HitResult(None, int(used), int(reserved))
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
        keys = [
            self.prefix + quota_key,
            self.prefix + "evt:" + event_id,
            self.prefix + quota_key + ":r",
        ]
        return int(await self._call(self._usage(keys, [tokens, QUOTA_TTL_SECONDS])))

    async def settle(self, quota_key: str, reservation_id: str) -> None:
        await self._call(self._pipe().call("HDEL", self.prefix + quota_key + ":r", reservation_id))

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
        if not self._redis.up:  # (its error names the host: in the log, not in /health)
            return False, "Redis unreachable"
        return True, "Redis reachable"
