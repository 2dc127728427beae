"""What operators see: the per-request metrics and access-log line (one middleware,
outermost, so it sees the final status of every answer, errors included), and the
routes ``/metrics``, ``/livez`` and ``/readyz``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sdk.errors import Forbidden
from sdk.request_context import set_request_id
from sdk.routes import Request, Response, Route

from .http import REQUEST_ID_KEY, ROUTE_REQUEST_KEY, Networks
from .logs import ACCESS_LOGGER
from .metrics import UNMATCHED_ROUTE

if TYPE_CHECKING:
    from .app import Kernel

# Status logged for a request whose client went away before it was answered (nginx's).
CLIENT_CLOSED = 499


class Observer:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.metrics = kernel.kernel_metrics
        self.access_log = logging.getLogger(ACCESS_LOGGER)

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        metrics = self.metrics
        metrics.begin()
        response: web.StreamResponse | None = None
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # redirects, which the kernel lets through
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self._record(request, response, status, time.perf_counter() - started)
            set_request_id("")  # the connection's next request gets its own

    def _record(
        self,
        request: web.Request,
        response: web.StreamResponse | None,
        status: int,
        seconds: float,
    ) -> None:
        routed: Request | None = request.get(ROUTE_REQUEST_KEY)
        if routed is not None:
            route = routed.route.path
        else:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else UNMATCHED_ROUTE
        # A WebSocket's time is the client's session, not the server's speed.
        self.metrics.end(route, request.method, status, seconds if status != 101 else None)
        if not self.access_log.isEnabledFor(logging.INFO):
            return
        identity = routed.identity if routed is not None else None
        fields: dict[str, Any] = {
            "method": request.method,
            "route": route,
            "path": request.path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "bytes": _bytes_sent(response),
            "user_id": identity.user_id if identity is not None else None,
            "client_ip": routed.client_ip if routed is not None else self.kernel.client_ip(request),
        }
        if routed is not None and routed.log_fields:
            fields.update(routed.log_fields)
        self.access_log.info(
            "websocket closed" if status == 101 else "request",
            extra={"access": fields, "request_id": request.get(REQUEST_ID_KEY, "")},
        )


def _bytes_sent(response: web.StreamResponse | None) -> int | None:
    if response is None:
        return None
    if response.prepared:
        return response.body_length
    body = response.body if isinstance(response, web.Response) else None
    return len(body) if isinstance(body, bytes | bytearray) else None


class OpsRoutes:
    """``/metrics`` (from ``[kernel.metrics] allow`` only), ``/livez`` and ``/readyz``."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.allow = Networks(kernel.kernel_config["metrics"]["allow"])

    def routes(self) -> list[Route]:
        r = [
            Route(
                "GET",
                "/metrics",
                self.metrics,
                auth="public",
                rate_limit=None,
                summary="Prometheus metrics (from the addresses in [kernel.metrics] allow)",
                response_content_type="text/plain",
                response_schema={"type": "string"},
                responses={403: "The caller's address is not in [kernel.metrics] allow"},
            ),
            Route(
                "GET",
                "/livez",
                self.livez,
                auth="public",
                rate_limit=None,
                summary="Liveness: the process answers",
                response_schema=LIVEZ_SCHEMA,
            ),
            Route(
                "GET",
                "/readyz",
                self.readyz,
                auth="public",
                rate_limit=None,
                summary="Readiness: 200 while every required plugin runs and the process is not draining",
                response_schema=READYZ_SCHEMA,
                responses={503: "Not ready: starting, draining, or a required plugin is down"},
            ),
        ]
        for route in r:
            route.plugin = "kernel"
            route.tags = ["operations"]
        return r

    async def metrics(self, req: Request) -> web.StreamResponse:
        if req.client_ip not in self.allow:
            raise Forbidden(
                "Metrics are served only to the addresses in [kernel.metrics] allow.",
                code="METRICS_FORBIDDEN",
            )
        kernel = self.kernel
        kernel.sync_plugin_metrics()
        hub = kernel.metrics_hub
        hub.refresh()
        accept = req.headers.get("Accept", "")
        if hub.multiprocess:  # reads every worker's files
            loop = asyncio.get_running_loop()
            body, ctype = await loop.run_in_executor(None, hub.render, accept)
        else:
            body, ctype = hub.render(accept)
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def livez(self, req: Request) -> Any:
        return {"status": "alive"}

    async def readyz(self, req: Request) -> Response:
        reasons = self.kernel.not_ready_reasons()
        if reasons:
            return Response({"status": "not ready", "reasons": reasons}, status=503)
        return Response({"status": "ready", "reasons": []})


LIVEZ_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "alive"}},
}
READYZ_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "reasons"],
    "properties": {
        "status": {"enum": ["ready", "not ready"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}
