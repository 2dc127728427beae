"""The metrics plugin: ``GET /metrics`` (Prometheus text exposition, from the addresses
in ``allow`` only), the per-request metrics (a middleware, so a deployer who does not
enable this plugin pays nothing for them), and the backend where every plugin's
``context.metrics`` declarations live."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from sdk import Middleware, Plugin, Request, Route, errors, hookimpl, services
from sdk.net import Networks
from sdk.routes import AioHandler, observe, route_template

from .prometheus import MetricsHub, ServerMetrics

LOOPBACK = ["127.0.0.0/8", "::1/128"]
STATE_SECONDS = 0.5  # how often plugin states and readiness are read into the gauges
CIDR = {"type": "string", "pattern": r"^[0-9a-fA-F:.]+(/\d{1,3})?$"}


class MetricsPlugin(Plugin):
    name = "metrics"
    version = "0.1.0"
    description = (
        "Prometheus metrics at /metrics: requests, durations, plugin states, and every plugin's own"
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            # no default: unset, the legacy [kernel.metrics] allow applies (else loopback)
            "allow": {
                "type": "array",
                "items": CIDR,
                "description": "CIDRs that may read GET /metrics (default loopback); others get 403",
            },
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        legacy = self.context.kernel_config.get("metrics") or {}
        cidrs = self.config.get("allow", legacy.get("allow", LOOPBACK))
        self.allow = Networks(cidrs)
        self.hub = MetricsHub()
        self.server = ServerMetrics(self.hub, self.context.server.version)

    async def initialize(self) -> None:
        self.context.services.provide(services.METRICS, self.hub)

    async def start(self) -> None:
        # readiness and plugin states change without a request (SIGTERM, a plugin's
        # start): kept current here, so every worker's gauges are right at any scrape
        self._watch = asyncio.create_task(self._follow_states(), name="llmmc-metrics-states")

    async def stop(self) -> None:
        self._watch.cancel()

    async def _follow_states(self) -> None:
        while True:
            self._read_states()
            await asyncio.sleep(STATE_SECONDS)

    def _read_states(self) -> None:
        server = self.context.server
        self.server.plugin_states(server.plugin_states().items())
        self.server.ready.set(0 if server.not_ready_reasons() else 1)

    @hookimpl
    def register_middleware(self) -> list[Middleware]:
        return [Middleware(self.middleware, order=90)]

    @hookimpl
    def register_routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/metrics",
                self.metrics,
                auth="public",
                rate_limit=None,
                summary="Prometheus metrics (from the addresses in [plugins.metrics] allow)",
                response_content_type="text/plain",
                response_schema={"type": "string"},
                responses={403: "The caller's address is not in [plugins.metrics] allow"},
                tags=["operations"],
            )
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: AioHandler) -> web.StreamResponse:
        self.server.begin()
        return await observe(request, handler, self._answered)

    def _answered(
        self, request: web.Request, response: web.StreamResponse | None, status: int, s: float
    ) -> None:
        # A WebSocket's time is the client's session, not the server's speed.
        seconds = s if status != 101 else None
        self.server.end(route_template(request), request.method, status, seconds)

    async def metrics(self, req: Request) -> web.StreamResponse:
        if req.client_ip not in self.allow:
            raise errors.Forbidden(
                "Metrics are served only to the addresses in [plugins.metrics] allow.",
                code="METRICS_FORBIDDEN",
            )
        self._read_states()
        hub = self.hub
        hub.refresh()
        accept = req.headers.get("Accept", "")
        if hub.multiprocess:  # reads every worker's files
            body, ctype = await asyncio.to_thread(hub.render, accept)
        else:
            body, ctype = hub.render(accept)
        return web.Response(body=body, headers={"Content-Type": ctype})
