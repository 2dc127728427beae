"""What the fake tool upstreams share (Open-Meteo, OpenWeatherMap, LibreTranslate, Google
Translation v2, DeepL): a real aiohttp server on a random loopback port, a log of every
request, and failures, slowness and hostile bodies on demand.

    async with FakeOpenMeteo() as fake:
        fake.delay = 2.0                     # every answer waits two seconds
        fake.fail_next(500, times=2)         # the next two requests get the upstream's 500 body
        fake.mode = "garbage"                # every answer: 200 with an HTML page
        fake.count("/v1/forecast")           # requests received on that path

Modes (``fake.mode``, optionally limited to ``fake.mode_paths``): ``None`` (behave),
``"error"`` (HTTP 500 in the upstream's own error format), ``"garbage"`` (200 with a
non-JSON body), ``"hostile"`` (200 with JSON of the wrong shape for that endpoint),
``"nan"`` (200 JSON containing ``NaN``), ``"deep"`` (200 with JSON nested 100 000 deep),
``"huge"`` (200 with a 3 MB JSON document), ``"close"`` (the connection is dropped).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .serving import serve

MODES = (None, "error", "garbage", "hostile", "nan", "deep", "huge", "close")


@dataclass(slots=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON or form (dict), raw text if neither, None if empty


@dataclass(slots=True)
class _Failure:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeUpstream:
    """Base class: subclasses add their routes in :meth:`routes` and say how their
    upstream spells an error (:meth:`error_response`) and a wrong-shaped body
    (:meth:`hostile_body`)."""

    url_suffix = ""

    def __init__(self, *, api_key: str | None = None, delay: float = 0.0) -> None:
        self.api_key = api_key
        self.delay = delay
        self.mode: str | None = None
        self.mode_paths: set[str] | None = None
        self.received: list[Received] = []
        self._failures: deque[_Failure] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.host = "127.0.0.1"
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base + self.url_suffix

    def routes(self, app: web.Application) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def start(self) -> Any:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        self.routes(app)
        self._runner, self.port = await serve(app, self.host)
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- driving it -----------------------------------------------------------------
    def count(self, path: str | None = None) -> int:
        """Requests received (on ``path`` only, when given)."""
        return sum(1 for r in self.received if path is None or r.path == path)

    def last(self, path: str | None = None) -> Received:
        return [r for r in self.received if path is None or r.path == path][-1]

    def fail_next(
        self, status: int = 500, times: int = 1, body: Any = None, *, headers: dict | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and the upstream's own error
        body for it (or ``body`` when given: str/bytes sent raw, anything else as JSON)."""
        for _ in range(times):
            self._failures.append(_Failure(status, body, dict(headers or {})))

    def reset(self) -> None:
        self.received.clear()
        self._failures.clear()
        self.mode = None
        self.mode_paths = None
        self.delay = 0.0

    # ---- for subclasses -------------------------------------------------------------
    def error_response(self, status: int, message: str) -> web.Response:
        raise NotImplementedError

    def hostile_body(self, path: str) -> Any:
        """JSON that parses but has the wrong shape for ``path``."""
        return {"unexpected": True, "data": [1, "two", None]}

    # ---- machinery ------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        await self._record(request)
        if self.delay > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), self.delay)
            except TimeoutError:
                pass
        if self._failures:
            failure = self._failures.popleft()
            if failure.body is None:
                resp = self.error_response(failure.status, f"Injected failure {failure.status}")
            elif isinstance(failure.body, str | bytes):
                resp = web.Response(status=failure.status, body=failure.body)
            else:
                resp = web.json_response(failure.body, status=failure.status)
            resp.headers.update(failure.headers)
            return resp
        mode = self.mode
        if mode is not None and (self.mode_paths is None or request.path in self.mode_paths):
            return await self._broken(request, mode)
        return await handler(request)

    async def _broken(self, request: web.Request, mode: str) -> web.StreamResponse:
        if mode == "error":
            return self.error_response(500, "Internal Server Error")
        if mode == "garbage":
            return web.Response(
                status=200,
                text="<html><body><h1>502 Bad Gateway</h1>nginx</body></html>",
                content_type="text/html",
            )
        if mode == "hostile":
            return web.json_response(self.hostile_body(request.path))
        if mode == "nan":
            return web.Response(
                status=200,
                text='{"value": NaN, "other": Infinity}',
                content_type="application/json",
            )
        if mode == "deep":
            depth = 100_000
            return web.Response(
                status=200, text="[" * depth + "]" * depth, content_type="application/json"
            )
        if mode == "huge":
            blob = json.dumps({"padding": "x" * (3 * 1024 * 1024)})
            return web.Response(status=200, text=blob, content_type="application/json")
        if mode == "close":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200, text="")
        raise ValueError(f"unknown mode {mode!r}")

    async def _record(self, request: web.Request) -> None:
        body: Any = None
        raw = await request.read()
        if raw:
            ctype = request.content_type
            if ctype == "application/x-www-form-urlencoded":
                form = await request.post()
                body = {k: (form.getall(k) if len(form.getall(k)) > 1 else form[k]) for k in form}
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
        self.received.append(
            Received(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
            )
        )
