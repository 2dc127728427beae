"""One vector index per process, kept in step with every other process's.

Each process keeps the vectors of its busiest users in memory (index.py); the database is
the record. When several processes share the database, a memory added or deleted through
one of them must reach the others' indexes:

- every change to a user's vectors raises the user's version in Redis (``INCR``, which
  says which version the change made) and goes out on the bus as ``memory.index`` with
  the change itself (ids, tiers, sessions and, for a few vectors, the vectors);
- a process applies such an event to its loaded entry of that user when the entry is at
  the version just before, and is then at the event's version; otherwise (an event it
  missed, or too many vectors to carry) it drops the entry, to be loaded again from the
  database at the next search;
- before searching a loaded entry a process reads the user's version (one pipelined
  ``GET``, a few microseconds): an entry behind it is dropped and loaded again, so a
  missed or late event never serves stale results.

A deleted memory is never returned in any case: hits of the index are read back from the
database before they are returned (on PostgreSQL always; on DuckDB, which one process
owns, perhaps from the store's row cache, which that process's writes keep exact). If Redis is unreachable, searches use the entries as
they are (kept in step by the bus) and report it in ``/health``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from sdk import Event, EventBus
from sdk.redispipe import RedisPipe, RedisReplyError, RedisUnavailable

from .index import VectorIndex, _Entry

TOPIC = "memory.index"
MAX_EVENT_VECTORS = 64  # beyond this an event names the change; receivers reload


def _pack(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).decode()


def _unpack(text: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).reshape(-1, dim).copy()


class SharedVectorIndex(VectorIndex):
    """A :class:`VectorIndex` that tells other processes of its changes and checks it is
    not behind them (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origin = uuid.uuid4().hex
        self._redis: RedisPipe | None = None
        self._bus: EventBus | None = None
        self._prefix = ""
        self._at: dict[str, int] = {}  # user_id -> version the loaded entries reflect
        self._loaded_at: dict[tuple[str, str], int] = {}  # version read before a load
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.log = logging.getLogger("llmmultichat.plugin.memory")
        self.stale_reloads = 0  # entries found behind the shared version at a search

    async def start(self, redis_url: str, prefix: str, bus: EventBus) -> None:
        self._redis = RedisPipe(redis_url, timeout=1.0)
        self._prefix = prefix
        self._bus = bus
        self._unsubscribe = bus.subscribe(TOPIC, self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        while self._tasks:  # changes made here still reach the others
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    @property
    def redis_error(self) -> str:
        return self._redis.last_error if self._redis is not None else ""

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}iv:{quote(user_id, safe='')}"

    async def _version(self, user_id: str) -> int | None:
        if self._redis is None:
            return None
        try:
            value = await self._redis.call("GET", self._key(user_id))
        except (RedisUnavailable, RedisReplyError):
            return None
        return int(value or 0)

    # -- local changes: apply, then tell the others ---------------------------------------

    def on_add(
        self,
        user_id: str,
        model: str,
        ids: Sequence[str],
        tiers: Sequence[str],
        sessions: Sequence[str | None],
        vectors: np.ndarray,
    ) -> None:
        super().on_add(user_id, model, ids, tiers, sessions, vectors)
        change: dict[str, Any] = {
            "op": "add",
            "model": model,
            "ids": list(ids),
            "tiers": list(tiers),
            "sessions": list(sessions),
        }
        if len(ids) <= MAX_EVENT_VECTORS:
            change["dim"] = int(vectors.shape[1])
            change["vectors"] = _pack(vectors)
        self._announce(user_id, change)

    def on_remove(self, user_id: str | None, ids: Sequence[str]) -> None:
        super().on_remove(user_id, ids)
        self._announce(user_id, {"op": "remove", "ids": list(ids)})

    def drop_user(self, user_id: str) -> None:
        super().drop_user(user_id)
        self._at.pop(user_id, None)
        self._announce(user_id, {"op": "drop"})

    def _announce(self, user_id: str | None, change: dict[str, Any]) -> None:
        if self._bus is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._send(user_id, change))
        except RuntimeError:
            return  # no loop (a test driving the index directly)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, user_id: str | None, change: dict[str, Any]) -> None:
        version = None
        if user_id is not None and self._redis is not None:
            try:
                version = int(await self._redis.call("INCR", self._key(user_id)))
            except (RedisUnavailable, RedisReplyError) as exc:
                self.log.warning("memory index: could not raise the version in Redis: %s", exc)
            if version is not None and self._at.get(user_id) == version - 1:
                self._at[user_id] = version  # our own entry already has the change
        assert self._bus is not None
        try:
            await self._bus.publish(
                TOPIC, {**change, "origin": self.origin, "user_id": user_id, "version": version}
            )
        except Exception as exc:
            self.log.warning("memory index: could not publish a change: %s", exc)

    # -- other processes' changes ---------------------------------------------------------

    def _drop_entries(self, user_id: str) -> None:
        super().drop_user(user_id)
        self._at.pop(user_id, None)

    async def _on_event(self, event: Event) -> None:
        data = event.data
        if data.get("origin") == self.origin:
            return
        user_id = data.get("user_id")
        op = data.get("op")
        ids = [str(i) for i in data.get("ids") or []]
        if user_id is None:  # a change across users (admin flush): no version to follow
            if op == "remove":
                super().on_remove(None, ids)
            return
        user_id = str(user_id)
        if not any(key[0] == user_id for key in self._entries):
            return  # nothing of this user loaded here
        version = data.get("version")
        if op == "drop" or version is None or self._at.get(user_id) != int(version) - 1:
            self._drop_entries(user_id)
            return
        if op == "add":
            if "vectors" not in data:
                self._drop_entries(user_id)
                return
            vectors = _unpack(str(data["vectors"]), int(data["dim"]))
            super().on_add(
                user_id, str(data["model"]), ids, data["tiers"], data["sessions"], vectors
            )
        elif op == "remove":
            super().on_remove(user_id, ids)
        self._at[user_id] = int(version)

    # -- search ----------------------------------------------------------------------------

    async def ensure(
        self,
        user_id: str,
        model: str,
        count: int,
        loader: Callable[[], Awaitable[Any]],
    ) -> _Entry | None:
        key = (user_id, model)
        if key in self._entries:
            current = await self._version(user_id)
            if current is not None and self._at.get(user_id) != current:
                self.stale_reloads += 1
                self._drop_entries(user_id)
                count = max(count, self.min_vectors)  # it was big enough to be loaded

        async def tagged_loader() -> Any:
            version = await self._version(user_id)
            if version is not None:
                self._loaded_at[key] = version  # read before the rows: never newer
            return await loader()

        entry = await super().ensure(user_id, model, count, tagged_loader)
        loaded = self._loaded_at.pop(key, None)
        if entry is not None and loaded is not None:
            if self._at.get(user_id, loaded) != loaded:
                # another model's entry of this user is at another version: keep one
                for other in [k for k in self._entries if k[0] == user_id and k != key]:
                    self._entries.pop(other, None)
            self._at[user_id] = loaded
        return entry
