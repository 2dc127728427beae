"""WebSocket ``/ws/chat``.

Client → server: ``{"type": "auth", "token"}``, ``{"type": "chat", "message",
"session_id"?, "character"?, "request_id"?, "client_message_id"?, "token"?}``,
``{"type": "regenerate", "message_id", "character"?, "request_id"?}`` (a new reply in
place of that reply, streamed like a chat message), ``{"type": "cancel", "request_id"}``,
``{"type": "ping"}``.

A chat message whose ``client_message_id`` the user already sent within 24 hours starts no
second turn: its stored replies come back as ``start``/``chunk``/``complete`` frames
(``complete`` has ``replayed: true``), or an ``error`` with code ``TURN_IN_PROGRESS``
while that turn still runs. A cancelled reply is stored with status ``stopped`` and the
text streamed so far.

Server → client: ``{"type": "auth_ok", "user_id"}``, ``{"type": "start", "request_id",
"session_id", "character"}``, ``{"type": "chunk", "request_id", "character", "data"}``,
``{"type": "tool", "request_id", "character", "name", "arguments", "ok"}`` (a tool call
a character made, once it has run; like SSE's ``tool`` event), ``{"type": "complete", "request_id", "session_id", "message_id", "replies",
"cancelled"}``, ``{"type": "pong"}``, ``{"type": "error", "code", "message",
"request_id"?}``.

A message without ``type`` that has ``message`` (the seed's clients: ``{"message",
"token"?, "session_id"?, "character"?}``) is a chat message. Text is checked like a
REST body (``sdk.untrusted``): a lone surrogate, NUL or nesting past 64 levels is
``BAD_MESSAGE`` and the socket goes on.

A socket stays authenticated only as long as what authenticated it: when the access
token expires (a fresh ``auth`` message before then renews it), or the auth plugin
announces on the bus that its login ended (logout, password change or reset, disabling,
deletion, API key revoked), an ``error`` frame is sent and the socket closes with code
4401 and the reason, on whichever instance holds it.

Several requests may be in flight at once, told apart by ``request_id``. Each connection
has one bounded send queue drained by one writer task: a reader too slow to take frames
for ``send_timeout`` seconds is disconnected rather than letting memory grow. A reply in
progress when the client leaves is still finished and stored; ``cancel`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sdk import Identity, Request, Route, Services, credentials, errors, events, services
from sdk.hooks import HookCaller
from sdk.request_context import request_id_scope
from sdk.untrusted import loads, repair

from .graph import Turn
from .metrics import ChatMetrics
from .service import ChatService, turn_problem

log = logging.getLogger("llmmultichat.chat.ws")

# Close codes: 1008 policy (authentication), 1001 going away (shutdown), 1013 try later
# (slow reader), 1011 the server could not send, 4401 the authentication ended, 4429 too
# many sockets of one user
CLOSE_POLICY = WSCloseCode.POLICY_VIOLATION
CLOSE_AWAY = WSCloseCode.GOING_AWAY
CLOSE_SLOW = WSCloseCode.TRY_AGAIN_LATER
CLOSE_BROKEN = WSCloseCode.INTERNAL_ERROR
CLOSE_AUTH_ENDED = 4401
CLOSE_TOO_MANY = 4429  # the user holds max_per_user sockets on this instance already


def error_code(problem: errors.Problem) -> str:
    if problem.status in (401,):
        return "INVALID_TOKEN" if problem.code == "INVALID_TOKEN" else "AUTH_REQUIRED"
    if problem.status == 429:
        return "RATE_LIMITED"
    if problem.status in (502, 503, 504):
        return "UPSTREAM_ERROR"
    if 400 <= problem.status < 500:
        return "BAD_MESSAGE"
    return "WEBSOCKET_ERROR"


class Connection:
    def __init__(self, hub: WebSocketHub, req: Request, ws: web.WebSocketResponse) -> None:
        self.hub = hub
        self.service = hub.service
        self.req = req
        self.ws = ws
        cfg = hub.settings
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=int(cfg["send_queue"]))
        self.max_bytes = int(cfg["max_message_bytes"])
        self.max_in_flight = int(cfg["max_in_flight"])
        self.identity: Identity | None = None
        self.counted_user: str | None = None  # whose socket this counts as (hub.per_user)
        self._expiry: asyncio.TimerHandle | None = None
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.closed = False
        self.messages_seen = 0
        self.messages_sent = 0
        self.writer = asyncio.create_task(self._write())

    # ---- sending --------------------------------------------------------------------
    async def _write(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    return
                await self.ws.send_str(frame)
        except asyncio.CancelledError:
            self.closed = True
        except Exception as exc:
            # A socket nobody can write to is closed, never left open and silent.
            if not isinstance(exc, (ConnectionError, RuntimeError)):
                log.exception("closing a chat WebSocket whose writer failed")
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code=CLOSE_BROKEN, message=b"could not send")

    async def send(self, data: dict[str, Any]) -> None:
        if self.closed or self.ws.closed:
            return
        # an upstream's reply may hold lone surrogates, which have no UTF-8 form
        frame = json.dumps(repair(data), ensure_ascii=False)
        self.messages_sent += 1
        self.hub.sent.inc()  # as it happens: a scrape during a long session sees it
        # Not wait_for(put): on Python 3.11 it swallows a cancellation that arrives just as
        # the put finishes, so a client's cancel landing while a chunk was queued was lost
        # and the reply ran on. Only a full queue waits, under asyncio.timeout.
        try:
            self.queue.put_nowait(frame)
            return
        except asyncio.QueueFull:
            pass
        try:
            async with asyncio.timeout(self.hub.send_timeout):
                await self.queue.put(frame)
        except TimeoutError:
            log.info("closing a WebSocket whose reader is too slow")
            await self.close(CLOSE_SLOW, "reader too slow")

    async def error(
        self, code: str, message: str, request_id: str | None = None, **extra: Any
    ) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if request_id is not None:
            frame["request_id"] = request_id
        frame.update(extra)
        await self.send(frame)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        # let frames already queued (e.g. the error explaining the close) go out first
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self.writer), timeout=1.0)
        self.writer.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode()[:120])

    # ---- how long the authentication lasts --------------------------------------------
    async def adopt(self, identity: Identity | None, request_id: str | None = None) -> bool:
        """Count the socket as the user's and trust ``identity``; False (after an error
        frame and a 4429 close) when the user holds ``max_per_user`` sockets here already."""
        user = identity.user_id if identity is not None else None
        if user != self.counted_user:
            if user is not None and not self.hub.claim(user):
                limit = self.hub.max_per_user
                await self.error(
                    "TOO_MANY_CONNECTIONS",
                    f"at most {limit} WebSockets per user; close another one first",
                    request_id,
                    status=429,
                )
                await self.close(CLOSE_TOO_MANY, "too many WebSockets of this user")
                return False
            if self.counted_user is not None:
                self.hub.release(self.counted_user)
            self.counted_user = user
        self.authenticated(identity)
        return True

    def authenticated(self, identity: Identity | None) -> None:
        """Trust ``identity`` from now on, until its credential expires."""
        self.identity = identity
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        expires = credentials.expires_at(identity) if identity is not None else None
        if expires is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, expires - time.time())
            self._expiry = loop.call_later(
                delay, lambda: asyncio.ensure_future(self.end_auth("token expired"))
            )

    async def end_auth(self, reason: str) -> None:
        """What authenticated the socket has ended: say so, close with 4401."""
        if self.closed:
            return
        await self.error("INVALID_TOKEN", f"authentication ended: {reason}")
        await self.close(CLOSE_AUTH_ENDED, reason)

    # ---- receiving ------------------------------------------------------------------
    async def authenticate(self, token: str | None) -> Identity | None:
        raw = self.req.raw
        if token is not None:
            raw = raw.clone(headers={**raw.headers, "Authorization": f"Bearer {token}"})
        elif "Authorization" not in raw.headers:
            return None
        identity: Identity | None = await self.hub.hooks.first("authenticate", request=raw)
        if identity is None:
            raise errors.InvalidCredentials("the token was not accepted")
        return identity

    async def run(self) -> None:
        try:
            try:
                if not await self.adopt(await self.authenticate(None)):
                    return
            except errors.Unauthorized as exc:
                await self.error("INVALID_TOKEN", exc.detail)
            timeout = float(self.hub.settings["auth_timeout_seconds"])
            while True:
                try:
                    msg = await (
                        self.ws.receive()
                        if self.identity is not None
                        else self.ws.receive(timeout=timeout)
                    )
                except TimeoutError:
                    await self.error("AUTH_REQUIRED", "authenticate first")
                    await self.close(CLOSE_POLICY, "authentication required")
                    return
                if msg.type == WSMsgType.TEXT:
                    await self.handle_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.error("BAD_MESSAGE", "send JSON text frames")
                    if self.identity is None:
                        await self.close(CLOSE_POLICY, "authentication required")
                elif msg.type == WSMsgType.ERROR:
                    # e.g. a frame over the hard size cap: aiohttp has closed the socket
                    return
                else:  # CLOSE, CLOSING, CLOSED
                    return
                if self.closed:
                    return
        finally:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(asyncio.QueueFull):
                    self.queue.put_nowait(None)
            # The expiry timer holds this connection (and its socket's buffers): left
            # running, every closed socket stayed in memory until its token expired.
            if self._expiry is not None:
                self._expiry.cancel()
                self._expiry = None
            if self.counted_user is not None:
                self.hub.release(self.counted_user)
                self.counted_user = None
            # replies in progress are left to finish and be stored
            self.writer.cancel()

    async def handle_text(self, text: str) -> None:
        self.messages_seen += 1
        self.hub.received.inc()
        if len(text.encode("utf-8")) > self.max_bytes:
            await self.error("BAD_MESSAGE", f"message larger than {self.max_bytes} bytes")
            return await self._unauthenticated_close()
        try:
            data = loads(text)
        except errors.Problem as problem:
            await self.error("BAD_MESSAGE", problem.detail)
            return await self._unauthenticated_close()
        if isinstance(data, dict) and "type" not in data and "message" in data:
            data["type"] = "chat"  # the seed's clients send chat messages without a type
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self.error("BAD_MESSAGE", "expected a JSON object with a 'type'")
            return await self._unauthenticated_close()
        kind = data["type"]
        if kind == "ping":
            await self.send({"type": "pong"})
            return None
        if kind == "auth":
            token = data.get("token")
            if not isinstance(token, str) or not token:
                await self.error("BAD_MESSAGE", "'token' must be a non-empty string")
                return await self._unauthenticated_close()
            try:
                if not await self.adopt(await self.authenticate(token)):
                    return None
            except errors.Unauthorized as exc:
                await self.error("INVALID_TOKEN", exc.detail)
                return await self._unauthenticated_close()
            assert self.identity is not None
            await self.send({"type": "auth_ok", "user_id": self.identity.user_id})
            return None
        if kind in ("chat", "regenerate"):
            return await self.handle_chat(data)
        if kind == "cancel":
            if self.identity is None:
                return await self._unauthenticated_close(error=True)
            rid = data.get("request_id")
            task = self.tasks.get(rid) if isinstance(rid, str) else None
            if task is None:
                await self.error(
                    "BAD_MESSAGE",
                    "no request in flight with that request_id",
                    rid if isinstance(rid, str) else None,
                )
                return None
            task.cancel()
            return None
        await self.error("BAD_MESSAGE", f"unknown message type {kind[:40]!r}")
        return await self._unauthenticated_close()

    async def _unauthenticated_close(self, error: bool = False) -> None:
        if self.identity is None:
            if error:
                await self.error("AUTH_REQUIRED", "authenticate first")
            await self.close(CLOSE_POLICY, "authentication required")

    async def handle_chat(self, data: dict[str, Any]) -> None:
        rid = data.get("request_id")
        if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 200):
            await self.error("BAD_MESSAGE", "'request_id' must be a short string")
            return await self._unauthenticated_close()
        request_id = rid or uuid.uuid4().hex
        token = data.get("token")
        if token is not None:
            if not isinstance(token, str) or not token:
                await self.error("BAD_MESSAGE", "'token' must be a non-empty string", request_id)
                return await self._unauthenticated_close()
            try:
                if not await self.adopt(await self.authenticate(token), request_id):
                    return None
            except errors.Unauthorized as exc:
                await self.error("INVALID_TOKEN", exc.detail, request_id)
                return await self._unauthenticated_close()
        if self.identity is None:
            await self.error("AUTH_REQUIRED", "authenticate first", request_id)
            return await self._unauthenticated_close()
        kind = data["type"]
        message = data.get("message")
        session_id = data.get("session_id")
        character = data.get("character")
        client_message_id = data.get("client_message_id")
        message_id = data.get("message_id")
        if kind == "regenerate":
            if not isinstance(message_id, str) or not 0 < len(message_id) <= 200:
                return await self.error(
                    "BAD_MESSAGE", "'message_id' must name the reply to regenerate", request_id
                )
        elif not isinstance(message, str) or not message.strip():
            return await self.error(
                "BAD_MESSAGE", "'message' must be a non-empty string", request_id
            )
        if session_id is not None and not isinstance(session_id, str):
            return await self.error("BAD_MESSAGE", "'session_id' must be a string", request_id)
        if character is not None and not isinstance(character, str):
            return await self.error("BAD_MESSAGE", "'character' must be a string", request_id)
        if client_message_id is not None and (
            not isinstance(client_message_id, str) or not 0 < len(client_message_id) <= 64
        ):
            return await self.error(
                "BAD_MESSAGE", "'client_message_id' must be 1 to 64 characters", request_id
            )
        if request_id in self.tasks:
            return await self.error(
                "BAD_MESSAGE", "that request_id is already in flight", request_id
            )
        if len(self.tasks) >= self.max_in_flight:
            return await self.error(
                "RATE_LIMITED",
                f"at most {self.max_in_flight} requests in flight per socket",
                request_id,
            )
        limiter = self.hub.services.get(services.RATELIMIT)
        identity = self.identity
        # this message's work (its log lines, the upstream calls) carries its request_id
        with request_id_scope(request_id):
            try:
                if kind == "chat" and client_message_id is not None:
                    replay = await self.service.replay(identity, client_message_id)
                    if replay is not None:
                        return await self._replay(request_id, replay)
                if limiter is not None:
                    await limiter.check(
                        "POST /api/v1/chat", identity, self.req.client_ip, quota=True
                    )
                if kind == "regenerate":
                    assert isinstance(message_id, str)
                    turn = await self.service.prepare_regenerate(
                        identity, message_id, character=character, request_id=request_id
                    )
                else:
                    assert isinstance(message, str)
                    turn, _created = await self.service.prepare_turn(
                        identity,
                        message,
                        session_id=session_id,
                        character=character,
                        request_id=request_id,
                        client_message_id=client_message_id,
                    )
            except errors.Problem as exc:
                extra: dict[str, Any] = {"status": exc.status}
                if exc.status == 429 and "Retry-After" in exc.headers:
                    extra["retry_after"] = int(exc.headers["Retry-After"])
                code = "TURN_IN_PROGRESS" if exc.code == "TURN_IN_PROGRESS" else error_code(exc)
                return await self.error(code, exc.detail, request_id, **extra)

        async def emit(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "chunk":
                await self.send(
                    {
                        "type": "chunk",
                        "request_id": request_id,
                        "character": event["character"],
                        "data": event["delta"],
                    }
                )
            elif kind == "start":
                await self.send(
                    {
                        "type": "start",
                        "request_id": request_id,
                        "session_id": turn.session_id,
                        "character": event["character"],
                    }
                )
            elif kind == "tool":
                await self.send(
                    {
                        "type": "tool",
                        "request_id": request_id,
                        "character": event["character"],
                        "name": event["name"],
                        "arguments": event["arguments"],
                        "ok": event["ok"],
                    }
                )

        turn.emit = emit
        with request_id_scope(request_id):
            task = self.service.launch(turn)
        self.tasks[request_id] = task
        task.add_done_callback(lambda t: asyncio.ensure_future(self._finished(request_id, turn, t)))
        return None

    async def _replay(self, request_id: str, answer: dict[str, Any]) -> None:
        """A resent chat message (same client_message_id): the stored turn, framed as
        when it ran, with ``replayed: true`` on its ``complete``."""
        sid = answer["session_id"]
        for reply in answer["replies"]:
            character = reply["character"]
            await self.send(
                {
                    "type": "start",
                    "request_id": request_id,
                    "session_id": sid,
                    "character": character,
                }
            )
            if reply["content"]:
                await self.send(
                    {
                        "type": "chunk",
                        "request_id": request_id,
                        "character": character,
                        "data": reply["content"],
                    }
                )
        await self.send(
            {
                "type": "complete",
                "request_id": request_id,
                "session_id": sid,
                "message_id": answer["replies"][0]["message_id"] if answer["replies"] else None,
                "replies": [
                    {
                        "message_id": r["message_id"],
                        "character": r["character"],
                        "usage": r["usage"],
                        "status": r["status"],
                    }
                    for r in answer["replies"]
                ],
                "cancelled": False,
                "replayed": True,
            }
        )

    async def _finished(self, request_id: str, turn: Turn, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(request_id, None)
        if task.cancelled():
            await self.send(
                {
                    "type": "complete",
                    "request_id": request_id,
                    "session_id": turn.session_id,
                    "message_id": turn.replies[0]["message_id"] if turn.replies else None,
                    "replies": [
                        {
                            "message_id": r["message_id"],
                            "character": r["character"],
                            "status": r.get("status", "stopped"),
                        }
                        for r in turn.replies
                    ],
                    "cancelled": True,
                }
            )
            return
        exc = task.exception()
        if exc is not None:
            problem = turn_problem(exc)
            await self.error(
                error_code(problem),
                problem.detail,
                request_id,
                status=problem.status,
                **turn.where(),
            )
            return
        await self.send(
            {
                "type": "complete",
                "request_id": request_id,
                "session_id": turn.session_id,
                "message_id": turn.replies[0]["message_id"] if turn.replies else None,
                "replies": [
                    {
                        "message_id": r["message_id"],
                        "character": r["character"],
                        "usage": r["usage"],
                        "status": r.get("status", "complete"),
                    }
                    for r in turn.replies
                ],
                "cancelled": False,
            }
        )


class WebSocketHub:
    """Every open chat socket, so they can be closed on shutdown or user deletion."""

    def __init__(
        self,
        service: ChatService,
        *,
        settings: dict[str, Any],
        hooks: HookCaller,
        services: Services,
        metrics: ChatMetrics,
    ) -> None:
        self.service = service
        self.open_sockets = metrics.websockets
        self.received = metrics.websocket_messages.labels(direction="received")
        self.sent = metrics.websocket_messages.labels(direction="sent")
        # [plugins.chat.websocket], defaults filled by the kernel
        self.settings = settings
        self.send_timeout = float(settings["send_timeout_seconds"])
        self.hooks = hooks
        self.services = services
        self.connections: set[Connection] = set()
        self.accepting = False
        # authenticated sockets per user on this instance, and how many one user may hold
        self.per_user: dict[str, int] = {}
        self.max_per_user = int(settings.get("max_per_user", 20))

    def claim(self, user_id: str) -> bool:
        held = self.per_user.get(user_id, 0)
        if held >= self.max_per_user:
            return False
        self.per_user[user_id] = held + 1
        return True

    def release(self, user_id: str) -> None:
        held = self.per_user.get(user_id, 0) - 1
        if held > 0:
            self.per_user[user_id] = held
        else:
            self.per_user.pop(user_id, None)

    def open(self) -> None:
        self.accepting = True

    async def handle(self, req: Request) -> web.WebSocketResponse:
        if not self.accepting:
            raise errors.ServiceUnavailable("the server is shutting down", code="SHUTTING_DOWN")
        ws = web.WebSocketResponse(
            heartbeat=float(self.settings["heartbeat_seconds"]),
            # hard cap: anything over the soft limit gets an error frame, up to 4x it
            max_msg_size=int(self.settings["max_message_bytes"]) * 4,
        )
        if not ws.can_prepare(req.raw).ok:
            raise errors.BadRequest(
                "this route expects a WebSocket upgrade", code="WEBSOCKET_REQUIRED"
            )
        await ws.prepare(req.raw)
        conn = Connection(self, req, ws)
        self.connections.add(conn)
        self.open_sockets.inc()
        try:
            await conn.run()
        finally:
            self.open_sockets.dec()
            self.connections.discard(conn)
            req.add_log_fields(messages_in=conn.messages_seen, messages_out=conn.messages_sent)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    async def close_all(self) -> None:
        """Shutdown: refuse new sockets, close the open ones."""
        self.accepting = False
        conns = list(self.connections)
        await asyncio.gather(
            *(c.close(CLOSE_AWAY, "server shutting down") for c in conns), return_exceptions=True
        )

    async def on_credentials_event(self, event: events.Event) -> None:
        """A bus event from the auth plugin (this instance or another): end the sockets
        whose authentication it ends."""
        ending = []
        for conn in list(self.connections):
            if conn.identity is None:
                continue
            reason = credentials.ended_by(conn.identity, event.topic, event.data)
            if reason is not None:
                ending.append(conn.end_auth(reason))
        await asyncio.gather(*ending, return_exceptions=True)


def websocket_routes(hub: WebSocketHub) -> list[Route]:
    return [
        Route(
            "GET",
            "/ws/chat",
            hub.handle,
            auth="public",
            rate_limit=None,
            summary="Chat over a WebSocket",
            description=(__doc__ or "").strip(),
            tags=["chat"],
            operation_id="chat_websocket",
            responses={101: "Switching Protocols", 400: "Not a WebSocket upgrade request"},
        )
    ]
