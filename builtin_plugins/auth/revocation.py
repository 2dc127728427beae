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

With Redis, every record and version is written by a script that also ``PUBLISH``es it,
before the request that made it answers. Each instance subscribes (:mod:`.feed`) and
applies what it hears as it arrives, so a check is a few dictionary lookups in this
process, with no round trip. Redis sends a published message to the subscribers before
it answers the publisher, so the record is in force on every subscribed instance before
the revoking request answers. When the subscription starts (or starts again), the
instance first reads every record and version in Redis (``SCAN``), then trusts its own
memory. Whenever it is not subscribed and caught up, each check asks Redis instead (one
``MGET`` of the user's and the login's records and the user's version, on an
auto-pipelined connection, ``sdk.redispipe``).

While Redis is unreachable, ``on_redis_error`` decides: ``"open"`` (the default) keeps
serving with this process's own records (revocations made on other instances meanwhile
are not seen) and pushes its pending records to Redis when it is back; ``"closed"``
answers every check that would need Redis with 503 ``REVOCATIONS_UNAVAILABLE``. When the
subscription starts again after an outage, the process reads every record in Redis and
in the database (where an instance that died before it could push its records left
them), so what was revoked meanwhile anywhere is refused from then on, and reports the
users whose tokens it learned were revoked (``on_learned``) so that long-lived
connections can be closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sdk.errors import ServiceUnavailable
from sdk.redispipe import RedisPipe, RedisReplyError, RedisUnavailable

from .feed import Feed
from .store import AuthStore

USER, FAMILY, VERSION = "user", "family", "version"
REDIS_ERRORS = (RedisUnavailable, RedisReplyError)
SWEEP_EVERY = 1024  # records between sweeps of the expired ones
CHANNEL = "revocations"  # after redis_prefix
SCAN_COUNT = 1000
REVOCATIONS_UNAVAILABLE = "REVOCATIONS_UNAVAILABLE"


def revocations_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Token revocations cannot be checked right now (Redis is unreachable); try again shortly.",
        code=REVOCATIONS_UNAVAILABLE,
        headers={"Retry-After": "2"},
    )


# Write a record (SET with a TTL) and publish it, in one step. ARGV: channel, message, value, ttl.
RECORD_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""
# Raise a user's version and publish the new one. ARGV: channel, message before the number.
VERSION_SCRIPT = """
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. v)
return v
"""


class RevocationStore:
    def __init__(
        self,
        store: AuthStore,
        ttl_seconds: int,
        logger: logging.Logger,
        redis_url: str = "",
        prefix: str = "llmmc:auth:",
        timeout: float = 0.5,
        pushed: bool = True,
        on_redis_error: str = "open",
        on_learned: Callable[[str, float, str], None] | None = None,
        counted: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        # "closed": a check that needs Redis while it is away answers 503
        self.fail_closed = on_redis_error == "closed"
        # (user_id, after, keep): a user revocation learned when Redis came back
        self.on_learned = on_learned
        self.unverified = {"accepted": 0, "refused": 0}  # checks Redis could not answer
        self._counted = counted  # told "accepted" or "refused" for each (a metric)
        self._missed = False  # an outage since the last catch-up: read the database too
        # False: never answer from memory while Redis is configured; every check asks it
        # (the subscription still runs, so /health says whether it would be live)
        self.pushed = pushed
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
        # The subscription: while live (subscribed and caught up with what Redis held when
        # it began), checks use this process's records and versions only.
        self._feed: Feed | None = None
        self._live = False
        self._generation = 0  # counts subscriptions; a catch-up of an older one is void
        self._catch_up: asyncio.Task[None] | None = None
        self._versions: dict[str, int] = {}  # user_id -> version (from Redis)
        self._heard = 0  # messages applied (expired records are swept every SWEEP_EVERY)

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
            self._record_script = self._redis.script(RECORD_SCRIPT)
            self._version_script = self._redis.script(VERSION_SCRIPT)
            self._retry_task = asyncio.create_task(self._retry_loop())
            self._feed = Feed(
                self.redis_url,
                self.prefix + CHANNEL,
                self._on_message,
                self._on_subscribed,
                self._on_unsubscribed,
                self.log,
                timeout=max(self.timeout, 1.0),
            )
            self._feed.start()

    async def stop(self) -> None:
        self._live = False
        self._generation += 1  # a catch-up still running ends at its next step
        if self._catch_up is not None:
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up
            self._catch_up = None
        if self._feed is not None:
            await self._feed.stop()
            self._feed = None
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    @property
    def policy(self) -> str:
        return "closed" if self.fail_closed else "open"

    @property
    def redis_up(self) -> bool:
        return self._redis is None or self._redis_ok

    def status(self) -> tuple[bool, str]:
        """(fine, what is the case); names no host: anyone may read /health (the log has
        Redis's error)."""
        if self._redis is None:
            return True, "in-process revocation list"
        if self._redis_ok and self._live and self.pushed:
            return True, "revocations shared through Redis (subscribed)"
        if self._redis_ok:
            return True, "revocations shared through Redis (checked on each request)"
        if self.fail_closed:
            return False, (
                "Redis unreachable; authenticated requests answer 503 until it is back "
                '(on_redis_error = "closed")'
            )
        return False, (
            "Redis unreachable; tokens are checked against this instance's revocations only "
            'until it is back (on_redis_error = "open")'
        )

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
        channel = self.prefix + CHANNEL
        calls = []
        for kind, subject, after, keep in pending:
            if kind == VERSION:
                calls.append(
                    self._version_script([self._key(VERSION, subject)], [channel, f"v|{subject}|"])
                )
            elif kind == USER:
                value = f"{after!r}|{keep}"
                calls.append(
                    self._record_script(
                        [self._key(kind, subject)],
                        [channel, f"u|{subject}|{value}", value, self.ttl],
                    )
                )
            else:
                calls.append(
                    self._record_script(
                        [self._key(kind, subject)], [channel, f"f|{subject}", "1", self.ttl]
                    )
                )
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [p for p, r in zip(pending, results, strict=True) if isinstance(r, Exception)]
        if failed:
            self._pending = failed + self._pending
            self._mark_down(next(r for r in results if isinstance(r, Exception)))
        else:
            self._redis_ok = True
        for (kind, subject, _, _), result in zip(pending, results, strict=True):
            if kind == VERSION and isinstance(result, int):
                self._apply_version(subject, result)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._pending:
                await self._flush()

    def _mark_down(self, exc: BaseException) -> None:
        if self._redis_ok:
            self.log.warning("revocation store: Redis unreachable: %s", exc)
        self._redis_ok = False
        self._missed = True
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

    # -- the subscription -------------------------------------------------------------------

    def _apply_user(self, user_id: str, after: float, keep: str) -> None:
        # Of two records the later one (larger `after`) holds, as a later SET would in Redis.
        now = time.time()
        current = self._users.get(user_id)
        if current is None or current[2] < now or after >= current[0]:
            self._users[user_id] = (after, keep, now + self.ttl)

    def _apply_version(self, user_id: str, version: int) -> None:
        if version > self._versions.get(user_id, 0):
            self._versions[user_id] = version

    def _on_message(self, message: str) -> None:
        """A record or version published by any instance (this one too); called as the
        message arrives, before any later request is checked."""
        self._heard += 1
        if self._heard % SWEEP_EVERY == 0:
            self._sweep(time.time())
        kind, _, rest = message.partition("|")
        subject, _, value = rest.partition("|")
        try:
            if kind == "u":
                after_text, _, keep = value.partition("|")
                self._apply_user(subject, float(after_text), keep)
            elif kind == "f":
                self._families[subject] = time.time() + self.ttl
            elif kind == "v":
                self._apply_version(subject, int(value))
        except ValueError:
            self.log.warning("revocation store: ignored a malformed message %r", message[:200])

    def _on_subscribed(self) -> None:
        self._generation += 1
        self._catch_up = asyncio.create_task(self._read_all(self._generation))

    def _on_unsubscribed(self, why: str) -> None:
        self._generation += 1
        self._missed = True
        if self._redis_ok:
            self.log.warning("revocation store: Redis unreachable: %s", why)
            self._redis_ok = False
            self._redis_error = why
        if self._live:
            self.log.warning(
                "revocation store: subscription lost (%s); checking Redis on each request", why
            )
        self._live = False

    async def _read_all(self, generation: int) -> None:
        """Read every record and version Redis holds (those made before the subscription
        began), then trust this process's memory. Tried again every second until it
        succeeds or the subscription ends."""
        while generation == self._generation:
            missed = self._missed
            before = {u: r[0] for u, r in self._users.items()}
            try:
                await self._read_records()
                if missed:  # records an instance saved but could not push (it died)
                    await self._read_database()
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # the database away too: Redis's records will do
                self.log.warning("revocation store: could not read the database: %s", exc)
            if generation != self._generation:
                return  # the subscription ended meanwhile: its successor reads again
            self._mark_up()
            self._missed = False
            self._live = True
            self.log.info("revocation store: subscribed to Redis; checks use memory")
            if missed:
                self._report_learned(before)
            return

    async def _read_database(self) -> None:
        now = time.time()
        for kind, subject, after, keep, expires in await self.store.live_revocations(now):
            if kind == USER:
                self._apply_user(subject, after, keep)
            elif self._families.get(subject, 0.0) < expires:
                self._families[subject] = expires

    def _report_learned(self, before: dict[str, float]) -> None:
        learned = [
            (user_id, record[0], record[1])
            for user_id, record in self._users.items()
            if before.get(user_id) != record[0]
        ]
        if learned:
            self.log.warning(
                "revocation store: %d user revocation(s) made while Redis was away are in "
                "force now",
                len(learned),
            )
        if self.on_learned is not None:
            for user_id, after, keep in learned:
                self.on_learned(user_id, after, keep)

    async def _read_records(self) -> None:
        assert self._redis is not None
        start = len(self.prefix) + 2
        for kind in (USER, FAMILY, VERSION):
            cursor = "0"
            while True:
                cursor, keys = await self._redis.call(
                    "SCAN", cursor, "MATCH", self._key(kind, "*"), "COUNT", SCAN_COUNT
                )
                if keys:
                    values = await self._redis.call("MGET", *keys)
                    for key, value in zip(keys, values, strict=True):
                        if value is not None:
                            self._on_message(f"{kind[0]}|{key[start:]}|{value}")
                if str(cursor) == "0":
                    break

    # -- checking ---------------------------------------------------------------------------

    @staticmethod
    def _user_refuses(record: tuple[float, str] | None, iat: float, family: str) -> bool:
        if record is None:
            return False
        after, keep = record
        return iat < after and not (keep and keep == family)

    def check_here(
        self, user_id: str, family_id: str, iat: float
    ) -> tuple[bool, str | None] | None:
        """What :meth:`check` answers, when this process knows it without asking Redis
        (one process, or subscribed and caught up); None when Redis must be asked."""
        now = time.time()
        local = self._users.get(user_id)
        if local is not None:
            if local[2] < now:
                del self._users[user_id]
            elif iat < local[0] and not (local[1] and local[1] == family_id):
                return True, None
        fam_expires = self._families.get(family_id)
        if fam_expires is not None:
            if fam_expires >= now:
                return True, None
            del self._families[family_id]
        if self._redis is None:
            return False, None
        if self._live and self.pushed:
            version_number = self._versions.get(user_id)
            return False, str(version_number) if version_number else ""
        return None

    async def check(self, user_id: str, family_id: str, iat: float) -> tuple[bool, str | None]:
        """(revoked, the user's current version); the version is None when unknown (no
        Redis, or Redis away), "" when the user never changed."""
        known = self.check_here(user_id, family_id, iat)
        if known is not None:
            return known
        assert self._redis is not None
        try:
            user_value, fam_value, version = await self._redis.call(
                "MGET",
                self._key(USER, user_id),
                self._key(FAMILY, family_id),
                self._key(VERSION, user_id),
            )
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            return self._unverified()
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

    def _unverified(self) -> tuple[bool, str | None]:
        """A check Redis could not answer: ``on_redis_error`` decides."""
        outcome = "refused" if self.fail_closed else "accepted"
        self.unverified[outcome] += 1
        if self._counted is not None:
            self._counted(outcome)
        if self.fail_closed:
            raise revocations_unavailable()
        # Keep serving with this instance's own records (docs/auth.md, docs/operations.md).
        return False, None

    async def is_revoked(self, user_id: str, family_id: str, iat: float) -> bool:
        return (await self.check(user_id, family_id, iat))[0]

    async def user_version(self, user_id: str) -> str | None:
        """The user's current version ("" if never changed), None when unknown."""
        if self._redis is None:
            return None
        if self._live and self.pushed:
            version_number = self._versions.get(user_id)
            return str(version_number) if version_number else ""
        try:
            version = await self._redis.call("GET", self._key(VERSION, user_id))
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            self._unverified()
            return None
        self._mark_up()
        return str(version or "")
