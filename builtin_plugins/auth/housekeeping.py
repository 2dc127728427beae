"""Deleting what has run out: audit events older than ``audit_days``, used or expired
reset tokens, and refresh tokens past their expiry. Runs at start and then every
``PRUNE_EVERY_SECONDS``; on PostgreSQL several instances may prune at once (each
statement is an idempotent ``DELETE``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .auditlog import AuditLog
from .store import AuthStore

PRUNE_EVERY_SECONDS = 3600.0


class Housekeeping:
    def __init__(
        self, store: AuthStore, audit_log: AuditLog, access_seconds: int, logger: logging.Logger
    ) -> None:
        self.store = store
        self.audit_log = audit_log
        # An expired refresh token is kept one access-token lifetime (+60 s) more: until
        # then the last access token of its login may still be alive, and logging out with
        # the expired refresh token still ends it (docs/auth.md).
        self.refresh_grace = access_seconds + 60
        self.log = logger
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        now = time.time()
        await self.audit_log.prune()
        await self.store.purge_reset(now)
        await self.store.purge_refresh(now - self.refresh_grace)

    async def start(self) -> None:
        try:
            await self.run()
        except Exception as exc:  # never stops the start; tried again in the loop
            self.log.warning("auth: pruning failed: %r", exc)
        self._task = asyncio.create_task(self._loop(), name="auth-housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            try:
                await self.run()
            except Exception as exc:  # tried again next time
                self.log.warning("auth: pruning failed: %r", exc)
