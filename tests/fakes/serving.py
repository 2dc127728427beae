"""Start an aiohttp app on a free loopback port: what every fake upstream server does."""

from __future__ import annotations

from aiohttp import web


async def serve(
    app: web.Application, host: str = "127.0.0.1", shutdown_timeout: float = 0.2
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[union-attr]
    return runner, int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
