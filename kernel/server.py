"""Serving the app: aiohttp's runner with the kernel's answer to requests it cannot parse.

aiohttp answers a request its parser refuses (over-long headers, a broken request line)
with ``text/plain`` that quotes the request back. :class:`KernelRunner` serves with a
protocol whose answer is Problem Details (431 for over-long headers), carries the
security headers and quotes nothing. ``run_app`` is aiohttp's ``run_app`` with that
runner; ``kernel.testing`` uses the same runner, so tests see what production serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sdk.errors import PROBLEM_CONTENT_TYPE, Problem

from .app import KERNEL_KEY
from .http import dumps, security_headers

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
        kernel = self.app.get(KERNEL_KEY)
        kernel_server.hsts = bool(kernel is not None and kernel.kernel_config["hsts"])
        return kernel_server


def run_app(
    app: web.Application | Awaitable[web.Application],
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    print: Callable[[str], None] = print,
    **runner_kwargs: Any,
) -> None:
    """aiohttp's ``run_app`` (one TCP site, signals end it gracefully) with
    :class:`KernelRunner`."""

    async def serve() -> None:
        application = await app if not isinstance(app, web.Application) else app
        runner = KernelRunner(
            application, handle_signals=True, shutdown_timeout=shutdown_timeout, **runner_kwargs
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            print(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
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
