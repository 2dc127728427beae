"""A Redis pub/sub subscription whose messages are applied the moment they arrive.

Messages are handed to ``on_message`` inside ``data_received``, i.e. before any request
that reaches this process afterwards runs its handler: Redis sends a ``PUBLISH``'s
message to the subscribers before it answers the publisher, so a revocation published by
another instance before its response is in force here before any later request is
checked. The connection sends a ``PING`` every ``timeout`` seconds; when a reply is late,
the connection breaks or cannot be made, ``on_down`` is called (the owner then stops
trusting what it was told) and it connects again after a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import hiredis

from sdk.redispipe import RedisPipe, encode


class _Protocol(asyncio.Protocol):
    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.transport: asyncio.Transport | None = None
        self.replies: asyncio.Queue[Any] = asyncio.Queue()  # replies before SUBSCRIBE
        self.subscribed = False
        self.last_pong = time.monotonic()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(f"protocol error: {exc}")
                return
            if reply is False:
                return
            if not self.subscribed:
                self.replies.put_nowait(reply)
                if isinstance(reply, list) and reply[:1] == ["subscribe"]:
                    self.subscribed = True
                continue
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                self.feed.on_message(str(reply[2]))
            elif isinstance(reply, list) and reply[:1] == ["pong"]:
                self.last_pong = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(str(exc or "closed by the server"))

    def send(self, *args: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(args))

    def close(self, why: str) -> None:
        if not self.lost.done():
            self.lost.set_result(why)
        if self.transport is not None:
            self.transport.abort()


class Feed:
    """Subscribes to ``channel`` on the Redis at ``url`` and keeps subscribed."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[str], None],
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
        logger: logging.Logger,
        timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.on_message = on_message
        self.on_up = on_up
        self.on_down = on_down
        self.log = logger
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._proto: _Protocol | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="auth-revocation-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._proto is not None:
            self._proto.close("stopped")
            self._proto = None

    async def _run(self) -> None:
        while True:
            try:
                why = await self._session()
            except (OSError, TimeoutError, ValueError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            self._proto = None
            self.on_down(why)
            await asyncio.sleep(1.0)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        # the same URL forms as sdk.redispipe (redis://, rediss://, unix://)
        target, username, password, db = RedisPipe(self.url)._target()
        if "path" in target:
            _, proto = await loop.create_unix_connection(lambda: _Protocol(self), target["path"])
        else:
            _, proto = await loop.create_connection(lambda: _Protocol(self), **target)
        if password:
            proto.send(*(("AUTH", username, password) if username else ("AUTH", password)))
            self._check(await proto.replies.get())
        if db:
            # pub/sub channels ignore the database; the channel name carries the prefix
            proto.send("SELECT", db)
            self._check(await proto.replies.get())
        proto.send("SUBSCRIBE", self.channel)
        self._check(await proto.replies.get())
        return proto

    @staticmethod
    def _check(reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise ValueError(str(reply))

    async def _session(self) -> str:
        async with asyncio.timeout(self.timeout * 2):
            proto = await self._connect()
        self._proto = proto
        proto.last_pong = time.monotonic()
        self.on_up()
        while not proto.lost.done():
            proto.send("PING")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.lost), self.timeout)
            if time.monotonic() - proto.last_pong > self.timeout * 2:
                proto.close(f"no answer to PING within {self.timeout * 2:g} s")
        return proto.lost.result()  # type: ignore[no-any-return]
