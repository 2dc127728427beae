"""A lean Redis connection for checks made on every request (revocations, rate limits).

Commands from all the tasks of a process share one connection: those issued in the same
turn of the event loop are written together (auto-pipelining) and hiredis parses the
replies. On a 2-core machine a redis-py asyncio call costs ~80 µs of CPU; a call here
costs ~5 µs, which is what lets an authenticated request that asks Redis three things
cost about what it costs with the in-process backends (figures in docs/scaleout.md).

Failure is fast and explicit: a call raises :class:`RedisUnavailable` when the
connection cannot be made, breaks, or a reply takes longer than ``timeout`` (then the
connection is dropped, since every later reply on it would be late too); for
``retry_seconds`` after a failure calls raise at once instead of waiting on each request,
then the next call connects again. An error reply raises :class:`RedisReplyError`.
Pub/sub and blocking commands are not for this connection (use redis-py for those).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis


class RedisUnavailable(Exception):
    """Redis could not be reached or did not answer in time."""


class RedisReplyError(Exception):
    """Redis answered with an error (a wrong type, a script error...)."""


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: RedisPipe) -> None:
        self.owner = owner
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.transport: asyncio.Transport | None = None
        # (future, time sent) in the order the commands were written
        self.waiters: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(RedisUnavailable(f"protocol error: {exc}"))
                return
            if reply is False:
                return
            if not self.waiters:
                self.abort(RedisUnavailable("a reply nobody asked for"))
                return
            fut, _ = self.waiters.popleft()
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(RedisReplyError(str(reply)))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_all(RedisUnavailable(f"connection lost: {exc or 'closed by the server'}"))
        self.owner._lost(self)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self.waiters.append((fut, time.monotonic()))
        self.out.append(command)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is None or self.closed or not self.out:
            return
        data = b"".join(self.out)
        self.out.clear()
        self.transport.write(data)

    def oldest_age(self, now: float) -> float:
        return now - self.waiters[0][1] if self.waiters else 0.0

    def fail_all(self, exc: Exception) -> None:
        while self.waiters:
            fut, _ = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)
        self.out.clear()

    def abort(self, exc: Exception) -> None:
        self.closed = True
        self.fail_all(exc)
        if self.transport is not None:
            self.transport.abort()


def encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            raw = arg
        elif isinstance(arg, str):
            raw = arg.encode("utf-8")
        elif isinstance(arg, bool):
            raise TypeError("Redis arguments cannot be booleans")
        elif isinstance(arg, int | float):
            raw = repr(arg).encode("ascii")
        else:
            raise TypeError(f"Redis arguments cannot be {type(arg).__name__}")
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


class Script:
    """A Lua script called by its SHA1 (EVALSHA), sent whole once when Redis lacks it."""

    def __init__(self, pipe: RedisPipe, text: str) -> None:
        self.pipe = pipe
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.pipe.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.pipe.call("EVAL", self.text, len(keys), *keys, *args)


class RedisPipe:
    """One auto-pipelined connection to the Redis at ``url``
    (``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
    ``unix:///path?db=N``)."""

    def __init__(self, url: str, *, timeout: float = 0.5, retry_seconds: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._down_until = 0.0
        self.last_error = ""
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    # -- connection -------------------------------------------------------------------

    def _target(self) -> tuple[dict[str, Any], str, str, int]:
        u = urlparse(self.url)
        password = unquote(u.password) if u.password else ""
        username = unquote(u.username) if u.username else ""
        if u.scheme == "unix":
            db = 0
            for part in u.query.split("&"):
                key, _, value = part.partition("=")
                if key == "db" and value:
                    db = int(value)
            return {"path": u.path}, username, password, db
        if u.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {self.url!r}")
        db = int(u.path.strip("/") or 0) if u.path.strip("/").isdigit() else 0
        target: dict[str, Any] = {"host": u.hostname or "127.0.0.1", "port": u.port or 6379}
        if u.scheme == "rediss":
            target["ssl"] = ssl.create_default_context()
        return target, username, password, db

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        target, username, password, db = self._target()
        if "path" in target:
            make = loop.create_unix_connection(lambda: _Protocol(self), target["path"])
        else:
            make = loop.create_connection(lambda: _Protocol(self), **target)
        try:
            async with asyncio.timeout(self.timeout):
                _, proto = await make
                setup = []
                if password:
                    auth = ("AUTH", username, password) if username else ("AUTH", password)
                    setup.append(proto.send(encode(auth)))
                if db:
                    setup.append(proto.send(encode(("SELECT", db))))
                for fut in setup:
                    await fut
        except (OSError, TimeoutError, RedisUnavailable, RedisReplyError) as exc:
            raise self._down(exc) from exc
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name="redispipe-watchdog")
        return proto

    def _down(self, exc: BaseException) -> RedisUnavailable:
        self._down_until = time.monotonic() + self.retry_seconds
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return RedisUnavailable(self.last_error)

    def _lost(self, proto: _Protocol) -> None:
        if self._proto is proto:
            self._proto = None

    async def _watch(self) -> None:
        """Drop a connection whose oldest pending reply is later than ``timeout``."""
        while not self._closed:
            await asyncio.sleep(self.timeout / 4)
            proto = self._proto
            if proto is not None and proto.oldest_age(time.monotonic()) > self.timeout:
                self._proto = None
                exc = self._down(TimeoutError(f"no reply within {self.timeout} s"))
                proto.abort(exc)

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if self._closed:
            raise RedisUnavailable("closed")
        if self._down_until and time.monotonic() < self._down_until:
            raise RedisUnavailable(self.last_error)
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            try:
                self._proto = await self._connecting
                self._down_until = 0.0
                self.last_error = ""
                return self._proto
            finally:
                self._connecting = None
        return await asyncio.shield(self._connecting)

    # -- calls --------------------------------------------------------------------------

    async def call(self, *args: Any) -> Any:
        """Send one command; its reply (``str`` for bulk strings, lists, ints, None)."""
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connection()
        try:
            return await proto.send(encode(args))
        except RedisUnavailable as exc:
            if not self.last_error:
                raise self._down(exc) from exc
            raise

    def script(self, text: str) -> Script:
        return Script(self, text)

    async def ping(self) -> None:
        await self.call("PING")

    @property
    def up(self) -> bool:
        """False from a failure until a call succeeds again."""
        return not self.last_error

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except asyncio.CancelledError:
                pass
            self._watchdog = None
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.abort(RedisUnavailable("closed"))
