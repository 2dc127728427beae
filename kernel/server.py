"""Serving the app: the listener opens first, and aiohttp's runner answers with the
kernel's Problem Details even for requests it cannot parse.

``run_app`` (``llmmultichat serve``, one process) and the ``--workers`` worker
(``kernel/workers.py``) open the port before the plugins load, through a
:class:`GatedRunner`: while they load and start, its :class:`StartupGate` answers
``/livez`` 200, ``/readyz`` 503 "starting" and everything else 503 Problem Details with
``Retry-After``, so a load balancer sees a process that is alive but not ready instead of
a refused connection. Once every plugin has started the gate hands each request to the
app. aiohttp freezes an app's router when the app starts, and a connection keeps the
handler it was accepted with, so the gate is the server's one handler and looks the app
up on each request.

aiohttp answers a request its parser refuses (over-long headers, a broken request line)
with ``text/plain`` that quotes the request back. :class:`KernelServer` serves with a
protocol whose answer is Problem Details (431 for over-long headers), carries the
security headers and quotes nothing. ``kernel.testing`` serves through
:class:`KernelRunner` (the app already started), so tests see what production serves.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sdk.errors import PROBLEM_CONTENT_TYPE, Problem
from sdk.net import ClientIP
from sdk.plugin import ServerView

from .app import Kernel, connection_args
from .http import HSTS_KEY, REQUEST_ID, dumps, request_id_of, security_headers
from .logs import ACCESS_LOGGER

log = logging.getLogger("llmmultichat.http")


def unparsable_request_problem(exc: BaseException | None, status: int) -> Problem:
    """What a client gets for a request the HTTP parser refused (never an echo of it)."""
    too_long = isinstance(exc, LineTooLong) or "too many headers" in str(exc).lower()
    if too_long:
        return Problem(
            "The request's headers (or its request line) are too large.",
            status=431,
            code="HEADERS_TOO_LARGE",
            title="Request Header Fields Too Large",
        )
    if status == 413:
        return Problem("The request is too large.", status=413, code="PAYLOAD_TOO_LARGE")
    if status >= 500:
        return Problem("An unexpected error occurred; it has been logged.")
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return Problem(
        "The request is not valid HTTP.", status=status, code="BAD_HTTP_REQUEST", title=phrase
    )


class KernelProtocol(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:  # a client's broken request is not the server's error
            log.debug("unparsable request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; cannot send an error")
        problem = unparsable_request_problem(exc, status)
        resp = web.Response(
            text=dumps(problem.to_dict()),
            status=problem.status,
            content_type=PROBLEM_CONTENT_TYPE,
            headers=security_headers(PROBLEM_CONTENT_TYPE, hsts=self._hsts),
        )
        resp.force_close()
        return resp

    @property
    def _hsts(self) -> bool:
        return bool(getattr(self._manager, "hsts", False))


class KernelServer(web.Server):
    hsts = False

    def __call__(self) -> RequestHandler:
        return KernelProtocol(self, loop=self._loop, **self._kwargs)


class KernelRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use :class:`KernelProtocol`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        kernel_server = KernelServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,
        )
        kernel_server.hsts = bool(self.app.get(HSTS_KEY, False))
        return kernel_server


# Route of the access-log lines written for requests answered while the server starts.
STARTING_ROUTE = "(starting)"
# What a client answered "starting" is told to wait before it tries again (seconds).
STARTING_RETRY_AFTER = 2

Build = Callable[[], Awaitable[tuple[Kernel, web.Application]]]


class StartupGate:
    """The request handler of a :class:`GatedRunner`'s server: answers by itself until
    :meth:`open`, then hands every request to the app."""

    def __init__(self, kernel_config: dict[str, Any]) -> None:
        self.hsts = bool(kernel_config["hsts"])
        self.client_max_size = int(kernel_config["max_body_bytes"])
        self.client_ip = ClientIP(kernel_config["trusted_proxies"])
        self.server: ServerView | None = None  # once loaded, it says what is starting
        self.access_log = logging.getLogger(ACCESS_LOGGER)
        self._handler: Any = None
        self._factory: Any = None

    def open(self, app_server: web.Server) -> None:
        """From now on requests go to the app behind ``app_server`` (an ``AppRunner``'s)."""
        self._factory = app_server.request_factory
        self._handler = app_server.request_handler

    def make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> BaseRequest:
        """The server's request factory: the app's ``web.Request`` once open, a bare
        ``BaseRequest`` before."""
        if self._factory is not None:
            request: BaseRequest = self._factory(message, payload, protocol, writer, task)
            return request
        loop = asyncio.get_running_loop()
        return BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=self.client_max_size
        )

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        # a request that arrived before the gate opened is answered as it arrived
        if self._handler is not None and isinstance(request, web.Request):
            response: web.StreamResponse = await self._handler(request)
            return response
        return self.starting(request)

    def reasons(self) -> list[str]:
        if self.server is None:
            return ["starting: loading the plugins"]
        return self.server.not_ready_reasons() or ["starting: opening the routes"]

    def starting(self, request: BaseRequest) -> web.Response:
        started = time.perf_counter()
        rid = request_id_of(request)
        probe = request.method in ("GET", "HEAD")
        body: dict[str, Any]
        headers: dict[str, str] = {}
        if probe and request.path == "/livez":
            status, ctype, body = 200, "application/json", {"status": "alive"}
        elif probe and request.path == "/readyz":
            status, ctype = 503, "application/json"
            body = {"status": "not ready", "reasons": self.reasons()}
        else:
            problem = Problem(
                "The server is starting; try again in a moment.",
                status=503,
                code="STARTING",
                title="Service Unavailable",
            )
            status, ctype, body = 503, PROBLEM_CONTENT_TYPE, problem.to_dict()
            headers = {"Retry-After": str(STARTING_RETRY_AFTER)}
        headers.update(security_headers(ctype, hsts=self.hsts))
        headers[REQUEST_ID] = rid
        text = dumps(body)
        response = web.Response(text=text, status=status, content_type=ctype, headers=headers)
        if self.access_log.isEnabledFor(logging.INFO):
            fields = {
                "method": request.method,
                "route": STARTING_ROUTE,
                "path": request.path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "bytes": len(text),
                "user_id": None,
                "client_ip": self.client_ip(request),
            }
            self.access_log.info("request", extra={"access": fields, "request_id": rid})
        return response


class GatedRunner(web.BaseRunner):
    """A runner whose server answers from ``setup()`` on, through a
    :class:`StartupGate`; :meth:`start` then builds the kernel, starts its app (the
    plugins' ``start``) and opens the gate. ``cleanup()`` takes the app down as
    ``web.AppRunner`` does: its ``on_shutdown`` (plugins drain) before in-flight requests
    are waited for, its cleanup (plugins stop) after."""

    def __init__(self, kernel_config: dict[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)  # the kernel writes its own access log
        super().__init__(**{**connection_args(kernel_config), **kwargs})
        self.gate = StartupGate(kernel_config)
        self.app: web.Application | None = None  # once started

    async def _make_server(self) -> web.Server:
        server = KernelServer(
            self.gate.handle,
            request_factory=self.gate.make_request,
            loop=asyncio.get_running_loop(),
            **self._kwargs,
        )
        server.hsts = self.gate.hsts
        return server

    async def start(self, build: Build) -> Kernel:
        """Build the kernel (``build``), start its app and open the gate; raises what
        ``build`` or a plugin's start raises (``StartupError`` for a required one)."""
        kernel, app = await build()
        self.gate.server = kernel
        # AppRunner.setup runs the app's startup (the plugins start) and makes the
        # server whose handler the gate delegates to; that server never gets a
        # connection of its own, so its runner is never cleaned up
        inner = web.AppRunner(app)
        await inner.setup()
        self.app = app
        assert inner.server is not None
        self.gate.open(inner.server)
        return kernel

    async def shutdown(self) -> None:
        if self.app is not None:
            await self.app.shutdown()

    async def _cleanup_server(self) -> None:
        if self.app is not None:
            app, self.app = self.app, None
            await app.cleanup()


def run_app(
    build: Build,
    *,
    kernel_config: dict[str, Any],
    host: str,
    port: int,
    print: Callable[[str], None] = print,
) -> None:
    """Serve on one TCP port until a signal: the port opens first (the gate answers
    while ``build`` loads and starts the plugins). SIGINT shuts down gracefully at once;
    SIGTERM once ready turns readiness off, keeps serving ``drain_delay_seconds``, then
    shuts down gracefully (a second SIGTERM, or SIGINT, cuts the delay short)."""

    async def serve() -> None:
        runner = GatedRunner(
            kernel_config,
            handle_signals=True,  # until ready: SIGTERM and SIGINT end it at once
            shutdown_timeout=float(kernel_config["shutdown_timeout_seconds"]),
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            print(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
            kernel = await runner.start(build)
            drain_on_sigterm(kernel, float(kernel_config["drain_delay_seconds"]))
            print("llmmultichat: every plugin has started; ready")
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    loop = asyncio.new_event_loop()
    main_task = loop.create_task(serve())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main_task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main_task.done():
                main_task.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main_task)
        finally:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def drain_on_sigterm(kernel: Kernel, delay: float) -> None:
    """SIGTERM: readiness off at once, requests still served for ``delay`` seconds, then
    aiohttp's graceful shutdown (``GracefulExit``). A second SIGTERM shuts down at once."""
    loop = asyncio.get_running_loop()

    def shut_down() -> None:
        raise web.GracefulExit()

    def on_sigterm() -> None:
        if kernel.draining:
            shut_down()
        kernel.begin_draining(delay)
        loop.call_later(delay, shut_down)

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
        pass
