"""Where weather results are kept for ``cache_seconds``.

In Redis when the plugin has a ``redis_url`` or the kernel's bus runs on Redis (so every
instance shares one cache and one upstream quota), else in this process. A Redis that is
away never fails a call: the result is fetched from the upstream and the plugin reports
itself ``degraded``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from redis import asyncio as aioredis
from redis.exceptions import RedisError

# In-process entries kept at most (least recently used dropped first).
MEMORY_MAX_ENTRIES = 2048


def cache_key(provider: str, units: str, city: str) -> str:
    """Provider, units and the city folded (case, spacing), hashed so any city is a safe key."""
    folded = " ".join(city.casefold().replace(",", ", ").split())
    digest = hashlib.sha256(folded.encode()).hexdigest()[:32]
    return f"{provider}:{units}:{digest}"


class Cache(Protocol):
    kind: str

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def set(self, key: str, value: dict[str, Any], ttl: int) -> None: ...

    async def check(self) -> str:
        """Return "ok", or why the cache is not usable."""

    async def close(self) -> None: ...


class MemoryCache:
    kind = "memory"

    def __init__(self, max_entries: int = MEMORY_MAX_ENTRIES) -> None:
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._max = max_entries

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return dict(value)

    async def set(self, key: str, value: dict[str, Any], ttl: int) -> None:
        self._items[key] = (time.monotonic() + ttl, dict(value))
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    async def check(self) -> str:
        return "ok"

    async def close(self) -> None:
        self._items.clear()


class RedisCache:
    kind = "redis"

    def __init__(self, url: str, prefix: str, logger: logging.Logger) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._prefix = prefix
        self._log = logger
        self.last_error = ""

    def _failed(self, action: str, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        self._log.warning(
            "weather cache: Redis %s failed (%s); going without cache", action, self.last_error
        )

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._failed("GET", exc)
            return None
        self.last_error = ""
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def set(self, key: str, value: dict[str, Any], ttl: int) -> None:
        try:
            await self._redis.set(self._prefix + key, json.dumps(value), ex=ttl)
        except (RedisError, OSError) as exc:
            self._failed("SET", exc)

    async def check(self) -> str:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            return f"Redis unreachable ({type(exc).__name__})"
        return "ok"

    async def close(self) -> None:
        await self._redis.aclose()
