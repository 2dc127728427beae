"""The ingest pipeline: chat turns on their way into memory.

Chat must not wait for embeddings and extraction: each ``chat.message.created`` event's
turn goes to an inbox (bounded: a full inbox makes the publisher wait for room rather
than grow memory without bound or lose the turn), and workers record what is waiting
through the memory service, in batches: turns that arrive within ``record_linger_ms`` of
each other cost one embedding call and one transaction per user. A worker about to
record waits while a reply's context is being worked out (it would compete for the CPU
and the database), but never longer than ``YIELD_SECONDS``. Turns of users deleted while
this process runs are dropped (a reply finishing after the deletion must not bring
memories back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from sdk.untrusted import repair

from .service import MemoryService

# Chat turns waiting to be recorded, and the tasks recording them.
INBOX_TURNS = 10_000
RECORD_WORKERS = 2
RECORD_BATCH = 32  # turns a worker takes at once (stored in one write per user)
# A worker about to record a turn waits while a reply's context is being worked out, but
# never longer than this.
YIELD_SECONDS = 0.05
DELETED_USERS = 10_000  # deleted users remembered (user ids are never reused)


class TurnRecorder:
    def __init__(self, service: MemoryService, *, linger_ms: int, log: logging.Logger) -> None:
        self.service = service
        self.linger = max(0, int(linger_ms)) / 1000
        self.log = log
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=INBOX_TURNS)
        self._replies = 0  # replies whose context is being worked out
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._gathering = asyncio.Lock()
        self._flush = asyncio.Event()  # set: record what is waiting now (idle(), stop())
        self._flushers = 0
        self._deleted_users: OrderedDict[str, None] = OrderedDict()

    def start(self, spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        """Start the workers (``spawn`` runs a background task of the plugin)."""
        for i in range(RECORD_WORKERS):
            spawn(self._work(), f"memory-record-turns-{i}")

    @property
    def waiting(self) -> int:
        """Turns received and not yet taken by a worker."""
        return self._inbox.qsize()

    async def receive(self, data: dict[str, Any]) -> None:
        """One chat turn (a ``chat.message.created`` event's data) to record."""
        if str(data.get("user_id") or "") in self._deleted_users:
            return
        # A broken upstream's reply can hold lone surrogates (or NUL) that no store can
        # encode: keep the turn with U+FFFD in their place rather than lose it.
        await self._inbox.put(repair(dict(data)))

    def forget_user(self, user_id: str) -> None:
        """A user was deleted (anywhere): their turns still waiting or still to come are
        not recorded."""
        self._deleted_users[user_id] = None
        while len(self._deleted_users) > DELETED_USERS:
            self._deleted_users.popitem(last=False)

    @contextlib.asynccontextmanager
    async def reply_in_progress(self) -> AsyncIterator[None]:
        """Around working out a reply's context: the workers hold back meanwhile."""
        self._replies += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._replies -= 1
            if not self._replies:
                self._quiet.set()

    async def idle(self) -> None:
        """Wait until every turn received is recorded."""
        self._flushers += 1
        self._flush.set()
        try:
            await self._inbox.join()
        finally:
            self._flushers -= 1
            if not self._flushers:
                self._flush.clear()

    async def drain(self, timeout: float) -> None:
        """Record what was received, within ``timeout`` seconds (before stopping)."""
        self._flush.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._inbox.join(), timeout)

    async def _work(self) -> None:
        inbox = self._inbox
        while True:
            # One worker gathers a batch at a time (the other records the previous one):
            # turns that arrive within the linger are recorded together, so the cost per
            # turn falls as the rate rises instead of competing with every reply.
            async with self._gathering:
                batch = [await inbox.get()]
                if self.linger and inbox.qsize() < RECORD_BATCH and not self._flush.is_set():
                    # (asyncio.timeout, not wait_for: on 3.11 that can swallow a cancel)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.linger):
                            await self._flush.wait()
                while len(batch) < RECORD_BATCH and not inbox.empty():
                    batch.append(inbox.get_nowait())
            if not self._quiet.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(YIELD_SECONDS):
                        await self._quiet.wait()
            try:
                await self.service.record_turns(
                    [d for d in batch if str(d.get("user_id") or "") not in self._deleted_users]
                )
            except Exception:
                self.log.exception("memory: could not record %d chat messages", len(batch))
            finally:
                for _ in batch:
                    inbox.task_done()
