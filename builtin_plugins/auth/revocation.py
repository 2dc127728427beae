"""Which access tokens were revoked before they expired, and which cached users changed.

Access tokens are never looked up in the database; instead two kinds of records are kept
for one access-token lifetime (after that every token they name has expired anyway):
- ``user``: the user's tokens issued before ``after`` are refused, except those of the
  login family ``keep`` (change-password keeps the caller's own login; deletion keeps none);
- ``family``: every token of that login (logout, refresh-token reuse).

Records live in this process (loaded from and saved to the database, so they survive a
restart) and, when Redis is configured, also in Redis so that every instance refuses the
token at once. Redis also holds a version number per user, raised by every change to the
account (password, roles, deletion, API keys): instances keep users and API keys in
memory and drop them when the version they were read at is no longer the current one.

Each check of an access token is one ``MGET`` (revocation of the user, of the login, and
the user's version) on an auto-pipelined connection (``sdk.redispipe``), so a check costs
a few microseconds of CPU. While Redis is unreachable the process keeps serving with its
own records and pushes pending records to Redis when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sdk.redispipe import RedisPipe, RedisReplyError, RedisUnavailable

from .store import AuthStore

USER, FAMILY, VERSION = "user", "family", "version"
REDIS_ERRORS = (RedisUnavailable, RedisReplyError)
SWEEP_EVERY = 1024  # records between sweeps of the expired ones


class RevocationStore:
    def __init__(
        self,
        store: AuthStore,
        ttl_seconds: int,
        logger: logging.Logger,
        redis_url: str = "",
        prefix: str = "llmmc:auth:",
        timeout: float = 0.5,
    ) -> None:
        self.store = store
        self.ttl = ttl_seconds + 60  # covers clock skew between instances
        self.log = logger
        self.redis_url = redis_url
        self.prefix = prefix
        self.timeout = timeout
        self._users: dict[str, tuple[float, str, float]] = {}  # user_id -> (after, keep, expires)
        self._families: dict[str, float] = {}  # family_id -> expires
        self._redis: RedisPipe | None = None
        self._pending: list[tuple[str, str, float, str]] = []
        self._redis_ok = True
        self._redis_error = ""
        self._retry_task: asyncio.Task[None] | None = None
        self._recorded = 0

    @property
    def shared(self) -> bool:
        """True when other instances learn of revocations and user changes (Redis)."""
        return self._redis is not None

    async def start(self) -> None:
        now = time.time()
        for kind, subject, after, keep, expires in await self.store.live_revocations(now):
            if kind == USER:
                self._users[subject] = (after, keep, expires)
            else:
                self._families[subject] = expires
        if self.redis_url:
            self._redis = RedisPipe(self.redis_url, timeout=self.timeout, retry_seconds=1.0)
            self._retry_task = asyncio.create_task(self._retry_loop())

    async def stop(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    def status(self) -> tuple[bool, str]:
        if self._redis is None:
            return True, "in-process revocation list"
        if self._redis_ok:
            return True, "revocations shared through Redis"
        return False, f"Redis unreachable ({self._redis_error}); revocations of this instance only"

    # -- writing ----------------------------------------------------------------------------

    async def revoke_user(self, user_id: str, after: float, keep_family: str = "") -> None:
        await self._record(USER, user_id, after, keep_family)

    async def revoke_family(self, family_id: str) -> None:
        await self._record(FAMILY, family_id, 0.0, "")

    async def user_changed(self, user_id: str) -> None:
        """Raise the user's version: every instance drops what it cached of the user."""
        if self._redis is not None:
            self._pending.append((VERSION, user_id, 0.0, ""))
            await self._flush()

    async def _record(self, kind: str, subject: str, after: float, keep: str) -> None:
        expires = time.time() + self.ttl
        self._recorded += 1
        if self._recorded % SWEEP_EVERY == 0:
            self._sweep(time.time())
        if kind == USER:
            self._users[subject] = (after, keep, expires)
        else:
            self._families[subject] = expires
        await self.store.save_revocation(kind, subject, after, keep, expires)
        if self._redis is not None:
            self._pending.append((kind, subject, after, keep))
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self._redis is None:
            return
        pending, self._pending = self._pending, []
        calls = []
        for kind, subject, after, keep in pending:
            if kind == VERSION:
                calls.append(self._redis.call("INCR", self._key(VERSION, subject)))
            else:
                value = f"{after!r}|{keep}" if kind == USER else "1"
                calls.append(
                    self._redis.call("SET", self._key(kind, subject), value, "EX", self.ttl)
                )
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [p for p, r in zip(pending, results, strict=True) if isinstance(r, Exception)]
        if failed:
            self._pending = failed + self._pending
            self._mark_down(next(r for r in results if isinstance(r, Exception)))
        else:
            self._redis_ok = True

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._pending:
                await self._flush()

    def _mark_down(self, exc: BaseException) -> None:
        if self._redis_ok:
            self.log.warning("revocation store: Redis unreachable: %s", exc)
        self._redis_ok = False
        self._redis_error = f"{type(exc).__name__}: {exc}"

    def _mark_up(self) -> None:
        if not self._redis_ok:
            self._redis_ok = True
            self.log.info("revocation store: Redis is back")

    def _key(self, kind: str, subject: str) -> str:
        return f"{self.prefix}{kind[0]}:{subject}"

    def _sweep(self, now: float) -> None:
        # An entry is dropped when its token is presented after it expired; one never
        # presented again (the usual logout) would stay: drop every expired one now and then.
        self._users = {k: v for k, v in self._users.items() if v[2] >= now}
        self._families = {k: v for k, v in self._families.items() if v >= now}

    # -- checking ---------------------------------------------------------------------------

    @staticmethod
    def _user_refuses(record: tuple[float, str] | None, iat: float, family: str) -> bool:
        if record is None:
            return False
        after, keep = record
        return iat < after and not (keep and keep == family)

    async def check(self, user_id: str, family_id: str, iat: float) -> tuple[bool, str | None]:
        """(revoked, the user's current version); the version is None when unknown (no
        Redis, or Redis away), "" when the user never changed."""
        now = time.time()
        local = self._users.get(user_id)
        if local is not None and local[2] < now:
            del self._users[user_id]
            local = None
        if self._user_refuses(local[:2] if local else None, iat, family_id):
            return True, None
        fam_expires = self._families.get(family_id)
        if fam_expires is not None:
            if fam_expires >= now:
                return True, None
            del self._families[family_id]
        if self._redis is None:
            return False, None
        try:
            user_value, fam_value, version = await self._redis.call(
                "MGET",
                self._key(USER, user_id),
                self._key(FAMILY, family_id),
                self._key(VERSION, user_id),
            )
        except REDIS_ERRORS as exc:
            # Keep serving with this instance's own records (documented in docs/auth.md).
            self._mark_down(exc)
            return False, None
        self._mark_up()
        if fam_value is not None:
            return True, None
        if user_value is not None:
            after_text, _, keep = str(user_value).partition("|")
            try:
                after = float(after_text)
            except ValueError:
                after = 0.0
            if self._user_refuses((after, keep), iat, family_id):
                return True, None
        return False, version or ""

    async def is_revoked(self, user_id: str, family_id: str, iat: float) -> bool:
        return (await self.check(user_id, family_id, iat))[0]

    async def user_version(self, user_id: str) -> str | None:
        """The user's current version ("" if never changed), None when unknown."""
        if self._redis is None:
            return None
        try:
            version = await self._redis.call("GET", self._key(VERSION, user_id))
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            return None
        self._mark_up()
        return str(version or "")
