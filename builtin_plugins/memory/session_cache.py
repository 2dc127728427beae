"""Redis side of the short-term and mid-term tiers (when Redis is configured).

DuckDB stays the record of every tier; Redis is the fast, shared copy that the context
hook and the session view read first: a capped list of the recent turns of each session
(``short_term_turns`` long) and the session summary, both with a TTL. Keys:
``<prefix><user>:<session>:st`` (list of JSON turns) and ``...:mt`` (JSON summary), the
ids URL-quoted so no id can reach into another user's keys. If Redis fails, the plugin
logs it, reports ``degraded`` and reads from DuckDB.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

_SAFE = ""


class SessionCache:
    def __init__(self, url: str, prefix: str, ttl_seconds: int, log: logging.Logger) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = ttl_seconds
        self.log = log
        self._redis: Any = None
        self.last_error: str = ""

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(
            self.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            await self._redis.ping()
            self.last_error = ""
        except Exception as exc:
            self._fail("connect", exc)

    async def stop(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:
                pass
            self._redis = None

    @property
    def healthy(self) -> bool:
        return self._redis is not None and not self.last_error

    async def ping(self) -> bool:
        if self._redis is None:
            return False
        try:
            await self._redis.ping()
            self.last_error = ""
            return True
        except Exception as exc:
            self._fail("ping", exc)
            return False

    def _fail(self, what: str, exc: Exception) -> None:
        self.last_error = f"{what}: {exc.__class__.__name__}: {exc}"
        self.log.warning("memory: Redis %s failed, reading from DuckDB: %s", what, exc)

    def _key(self, user_id: str, session_id: str, kind: str) -> str:
        return f"{self.prefix}{quote(user_id, safe=_SAFE)}:{quote(session_id, safe=_SAFE)}:{kind}"

    def _user_pattern(self, user_id: str) -> str:
        # quote() leaves no glob characters (* ? [ ]) unescaped.
        return f"{self.prefix}{quote(user_id, safe=_SAFE)}:*"

    async def push_turn(
        self, user_id: str, session_id: str, turn: dict[str, Any], keep: int
    ) -> None:
        if self._redis is None:
            return
        key = self._key(user_id, session_id, "st")
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.rpush(key, json.dumps(turn, ensure_ascii=False))
            pipe.ltrim(key, -keep, -1)
            pipe.expire(key, self.ttl)
            await pipe.execute()
            self.last_error = ""
        except Exception as exc:
            self._fail("write", exc)

    async def set_turns(self, user_id: str, session_id: str, turns: list[dict[str, Any]]) -> None:
        if self._redis is None:
            return
        key = self._key(user_id, session_id, "st")
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(key)
            if turns:
                pipe.rpush(key, *[json.dumps(t, ensure_ascii=False) for t in turns])
                pipe.expire(key, self.ttl)
            await pipe.execute()
        except Exception as exc:
            self._fail("write", exc)

    async def turns(self, user_id: str, session_id: str) -> list[dict[str, Any]] | None:
        """The cached turns, oldest first; None when not cached (read DuckDB instead)."""
        if self._redis is None:
            return None
        try:
            raw = await self._redis.lrange(self._key(user_id, session_id, "st"), 0, -1)
        except Exception as exc:
            self._fail("read", exc)
            return None
        if not raw:
            return None
        return [json.loads(r) for r in raw]

    async def set_summary(self, user_id: str, session_id: str, summary: dict[str, Any]) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(
                self._key(user_id, session_id, "mt"),
                json.dumps(summary, ensure_ascii=False),
                ex=self.ttl,
            )
        except Exception as exc:
            self._fail("write", exc)

    async def summary(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self._key(user_id, session_id, "mt"))
        except Exception as exc:
            self._fail("read", exc)
            return None
        return json.loads(raw) if raw else None

    async def drop_session(self, user_id: str, session_id: str) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.delete(
                self._key(user_id, session_id, "st"), self._key(user_id, session_id, "mt")
            )
        except Exception as exc:
            self._fail("delete", exc)

    async def drop_user(self, user_id: str) -> None:
        if self._redis is None:
            return
        try:
            keys = [
                k async for k in self._redis.scan_iter(match=self._user_pattern(user_id), count=500)
            ]
            if keys:
                await self._redis.delete(*keys)
        except Exception as exc:
            self._fail("delete", exc)

    async def drop_all(self) -> None:
        if self._redis is None:
            return
        try:
            keys = [k async for k in self._redis.scan_iter(match=f"{self.prefix}*", count=500)]
            for start in range(0, len(keys), 500):
                await self._redis.delete(*keys[start : start + 500])
        except Exception as exc:
            self._fail("delete", exc)
