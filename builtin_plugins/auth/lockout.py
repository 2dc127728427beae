"""Login protection per account, beside the ratelimit plugin's per-IP limit.

Failed logins are counted per (account, client IP) and per account over all IPs, where
"account" is the normalized email whether or not such an account exists (so a lock tells
nothing about which emails are registered). When a counter reaches its limit within
``window_seconds``, a lock starts: ``lock_seconds`` the first time, doubling each time it
comes back, never longer than ``max_lock_seconds``. A lock refuses logins (429 with
Retry-After) without looking at the password, and failures during a lock are not counted,
so nobody can push a lock past its cap. A successful login clears both counters.

Why an attacker cannot lock the real user out for good:
- the (account, IP) lock only locks the attacker's own address;
- the account-wide lock (for attacks spread over many addresses) does not apply to an IP
  from which this account logged in successfully within ``known_ip_days``: the owner on
  their usual network is never locked by it;
- every lock ends by itself after at most ``max_lock_seconds``, and a password reset
  clears it.

The records live in Redis when one is configured (shared by every instance; one Lua call
per failure), else in this process.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

_FAILED_LUA = """
local function bump(fail, level, lock, limit)
  local n = redis.call('INCR', fail)
  if n == 1 then redis.call('PEXPIRE', fail, ARGV[1]) end
  if n < limit then return 0 end
  redis.call('DEL', fail)
  local lv = redis.call('INCR', level)
  local ms = math.floor(math.min(tonumber(ARGV[4]) * 2 ^ (lv - 1), tonumber(ARGV[5])))
  redis.call('PEXPIRE', level, ms + tonumber(ARGV[1]))
  redis.call('SET', lock, '1', 'PX', ms)
  return ms
end
local a = bump(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]))
local b = bump(KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[3]))
return {a, b}
"""


@dataclass(slots=True)
class LockoutSettings:
    max_failures: int = 5  # per (account, IP)
    account_max_failures: int = 50  # per account, over every IP
    window_seconds: int = 900
    lock_seconds: int = 30
    max_lock_seconds: int = 900
    known_ip_days: int = 30

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> LockoutSettings:
        return cls(**{k: int(v) for k, v in cfg.items() if k in cls.__dataclass_fields__})


def account_key(email_norm: str) -> str:
    # email_norm: the folded email (names.fold), so every spelling of one email is one account
    """The key of an account in the records: a hash, so no email is kept in Redis."""
    return hashlib.sha256(email_norm.encode("utf-8")).hexdigest()[:32]


class _Memory:
    """The in-process records: values with an expiry time (monotonic)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[int, float]] = {}

    def get(self, key: str) -> int:
        item = self._data.get(key)
        if item is None:
            return 0
        if item[1] <= time.monotonic():
            del self._data[key]
            return 0
        return item[0]

    def ttl(self, key: str) -> float:
        return max(0.0, self._data[key][1] - time.monotonic()) if self.get(key) else 0.0

    def set(self, key: str, value: int, seconds: float) -> None:
        self._data[key] = (value, time.monotonic() + seconds)
        if len(self._data) > 100_000:  # a flood of made-up emails: drop what has expired
            now = time.monotonic()
            self._data = {k: v for k, v in self._data.items() if v[1] > now}

    def incr(self, key: str, seconds: float) -> int:
        item = self._data.get(key)
        if item is None or item[1] <= time.monotonic():
            self.set(key, 1, seconds)
            return 1
        self._data[key] = (item[0] + 1, item[1])
        return item[0] + 1

    def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)


class LoginGuard:
    def __init__(
        self,
        settings: LockoutSettings,
        logger: logging.Logger,
        redis_url: str = "",
        prefix: str = "llmmc:auth:",
    ) -> None:
        self.s = settings
        self.log = logger
        self.redis_url = redis_url
        self.prefix = prefix + "login:"
        self._memory = _Memory()
        self._redis: Any = None
        self._script: Any = None

    async def start(self) -> None:
        if self.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(
                self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._script = self._redis.register_script(_FAILED_LUA)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _keys(self, account: str, ip: str) -> dict[str, str]:
        pair, acct = f"{self.prefix}p:{account}:{ip}", f"{self.prefix}a:{account}"
        return {
            "pair_fail": pair + ":n",
            "pair_level": pair + ":lv",
            "pair_lock": pair + ":lock",
            "acct_fail": acct + ":n",
            "acct_level": acct + ":lv",
            "acct_lock": acct + ":lock",
            "known": f"{self.prefix}k:{account}:{ip}",
        }

    async def locked_for(self, account: str, ip: str) -> float:
        """Seconds until this client may try this account again (0: now)."""
        k = self._keys(account, ip)
        if self._redis is None:
            m = self._memory
            acct = 0.0 if m.get(k["known"]) else m.ttl(k["acct_lock"])
            return max(m.ttl(k["pair_lock"]), acct)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.pttl(k["pair_lock"]).pttl(k["acct_lock"]).exists(k["known"])
                pair_ms, acct_ms, known = await pipe.execute()
        except Exception as exc:  # Redis away: the per-IP limit still stands
            self.log.warning("login guard: Redis unreachable, not checking locks: %r", exc)
            return 0.0
        acct_ms = 0 if known else acct_ms
        return max(pair_ms, acct_ms, 0) / 1000

    async def failed(self, account: str, ip: str) -> float:
        """Count a failed login; the seconds of the lock it started (0: none)."""
        k = self._keys(account, ip)
        s = self.s
        if self._redis is None:
            return max(
                self._bump(k["pair_fail"], k["pair_level"], k["pair_lock"], s.max_failures),
                self._bump(k["acct_fail"], k["acct_level"], k["acct_lock"], s.account_max_failures),
            )
        keys = [k[n] for n in ("pair_fail", "pair_level", "pair_lock")]
        keys += [k[n] for n in ("acct_fail", "acct_level", "acct_lock")]
        args = [
            s.window_seconds * 1000,
            s.max_failures,
            s.account_max_failures,
            s.lock_seconds * 1000,
            s.max_lock_seconds * 1000,
        ]
        try:
            a, b = await self._script(keys=keys, args=args)
        except Exception as exc:
            self.log.warning("login guard: Redis unreachable, failure not counted: %r", exc)
            return 0.0
        return max(int(a), int(b)) / 1000

    def _bump(self, fail: str, level: str, lock: str, limit: int) -> float:
        m, s = self._memory, self.s
        if m.incr(fail, s.window_seconds) < limit:
            return 0.0
        m.delete(fail)
        lv = m.incr(level, s.max_lock_seconds + s.window_seconds)
        seconds = float(min(s.lock_seconds * 2 ** (lv - 1), s.max_lock_seconds))
        m.set(lock, 1, seconds)
        return seconds

    async def succeeded(self, account: str, ip: str) -> None:
        """A correct password: clear the counters and locks, and remember this IP."""
        k = self._keys(account, ip)
        known_seconds = self.s.known_ip_days * 86400
        clear = [v for n, v in k.items() if n != "known"]
        if self._redis is None:
            self._memory.delete(*clear)
            self._memory.set(k["known"], 1, known_seconds)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(*clear).set(k["known"], "1", ex=known_seconds)
                await pipe.execute()
        except Exception as exc:
            self.log.warning("login guard: Redis unreachable, counters not cleared: %r", exc)

    async def clear(self, account: str) -> None:
        """A password reset: the account's own lock and counter go (per-IP ones expire)."""
        k = self._keys(account, "-")
        keys = [k["acct_fail"], k["acct_level"], k["acct_lock"]]
        if self._redis is None:
            self._memory.delete(*keys)
            return
        try:
            await self._redis.delete(*keys)
        except Exception as exc:
            self.log.warning("login guard: Redis unreachable, lock not cleared: %r", exc)
