"""The accesslog plugin: one line per request (time, request id, method, route, path,
status, duration, bytes, user id, client IP), as text or JSON.

A line must cost the server little beside the request it describes, so it skips the
logging machinery: the middleware formats the line itself (the time's seconds are
formatted once per second) and appends it to a buffer that one write empties every
``flush_seconds`` (and when it holds ``FLUSH_LINES``), instead of a locked handler write
per request. Lines therefore reach the log up to ``flush_seconds`` late, in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from typing import IO, Any

from aiohttp import web

from sdk import Middleware, Plugin, hookimpl
from sdk.routes import REQUEST_ID_KEY, ROUTE_REQUEST_KEY, AioHandler, observe, route_template

LOGGER = "llmmultichat.access"
FLUSH_LINES = 256


class AccessLogPlugin(Plugin):
    name = "accesslog"
    version = "0.1.0"
    description = "One line per request (text or JSON), written in buffered batches"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "format": {
                "enum": ["", "text", "json"],
                "default": "",
                "description": 'text or JSON lines; "" follows [kernel] log_format',
            },
            "path": {
                "type": "string",
                "default": "",
                "description": "append the lines to this file; empty: standard error, beside the server's log",
            },
            "flush_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 10,
                "default": 0.2,
                "description": "the longest a line waits in the buffer",
            },
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        fmt = self.config["format"] or self.context.kernel_config.get("log_format", "text")
        self.json = fmt == "json"
        self.lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._stream: IO[str] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        path = self.config["path"]
        if path:
            self._stream = await asyncio.to_thread(open, path, "a", encoding="utf-8")
        else:
            self._stream = sys.stderr
        self._flusher = asyncio.create_task(self._flush_every(), name="llmmc-accesslog")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self.flush()
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()
        self._stream = None

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.config["flush_seconds"])
            self.flush()

    def flush(self) -> None:
        """Write what the buffer holds (the flusher does this every ``flush_seconds``)."""
        if not self.lines or self._stream is None:
            return
        text, self.lines = "".join(self.lines), []
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full stream must never fail a request

    @hookimpl
    def register_middleware(self) -> list[Middleware]:
        return [Middleware(self.middleware, order=100)]

    @web.middleware
    async def middleware(self, request: web.Request, handler: AioHandler) -> web.StreamResponse:
        return await observe(request, handler, self._answered)

    def _answered(
        self, request: web.Request, response: web.StreamResponse | None, status: int, s: float
    ) -> None:
        self.lines.append(self.line(request, response, status, s))
        if len(self.lines) >= FLUSH_LINES:
            self.flush()

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int(now * 1000) % 1000:03d}+00:00"

    def line(
        self,
        request: web.Request,
        response: web.StreamResponse | None,
        status: int,
        seconds: float,
    ) -> str:
        """One line, written out by hand: a dict and a general encoder per request
        cost several times more."""
        state = request._state  # the request's own dict: Mapping.get costs two calls more
        routed = state.get(ROUTE_REQUEST_KEY)
        if routed is not None:
            route = routed.route.path
            identity = routed.identity
            client_ip = routed.client_ip
            extra = routed.log_fields
            rid = routed.request_id
        else:
            route = route_template(request)
            identity, client_ip, extra = None, request.remote or "", None
            rid = state.get(REQUEST_ID_KEY, "")
        user_id = identity.user_id if identity is not None else None
        if response is None:
            size: Any = None
        elif response.prepared:
            size = response.body_length
        else:
            body = getattr(response, "_body", None)  # web.Response's bytes, if any
            size = len(body) if isinstance(body, bytes | bytearray) else None
        message = "websocket closed" if status == 101 else "request"
        path = request.path
        if self.json:
            line = (
                f'{{"time": "{self._time()}", "level": "INFO", "logger": "{LOGGER}", '
                f'"message": "{message}", "request_id": {_js(rid)}, '
                f'"method": {_js(request.method)}, "route": {_js(route)}, '
                f'"path": {_js(path)}, "status": {status}, "duration_ms": {seconds * 1000:.2f}, '
                f'"bytes": {"null" if size is None else size}, "user_id": {_js(user_id)}, '
                f'"client_ip": {_js(client_ip)}'
            )
            if extra:
                line += "".join(f", {_js(k)}: {_dumps(v)}" for k, v in extra.items())
            return line + "}\n"
        if not (path.isprintable() and " " not in path and '"' not in path):
            path = _encode_str(path)
        line = (
            f"{self._time()} INFO {LOGGER} [{rid or '-'}] {message} "
            f"method={request.method} route={route} path={path} "
            f"status={status} duration_ms={seconds * 1000:.2f} "
            f"bytes={'-' if size is None else size} "
            f"user_id={user_id or '-'} client_ip={client_ip or '-'}"
        )
        if extra:
            line += "".join(f" {k}={_text(v)}" for k, v in extra.items())
        return line + "\n"


def _js(value: str | None) -> str:
    return "null" if not value else _encode_str(value)


_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode
_encode_str = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C, quotes included


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and " " not in text and '"' not in text:
        return text
    return _encode_str(text)
