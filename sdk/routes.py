"""Declaring HTTP routes.

A plugin returns :class:`Route` objects from its ``register_routes`` hook. The kernel
mounts them, authenticates, checks permissions and rate limits, validates the JSON body
against ``request_schema`` and the query against ``query_schema`` (400/415/422 as Problem
Details) and documents everything in
``/openapi.json`` from these same declarations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

if TYPE_CHECKING:
    from .errors import ErrorShape
    from .identity import Identity

AuthLevel = Literal["public", "user", "admin"]
JSONSchema = dict[str, Any]


class Request:
    """What a handler receives: the aiohttp request plus what the kernel learned about it."""

    __slots__ = (
        "_client_ip",
        "_client_ip_of",
        "body",
        "identity",
        "log_fields",
        "params",
        "raw",
        "request_id",
        "response_headers",
        "route",
    )

    def __init__(
        self,
        raw: web.Request,
        *,
        identity: Identity | None,
        body: Any,
        route: Route,
        client_ip: str | Callable[[web.Request], str],
        request_id: str,
    ) -> None:
        self.raw = raw
        self.identity = identity
        self.body = body  # parsed and validated JSON body, or None
        # the query parameters checked against the route's query_schema, typed as it
        # declares, with its defaults filled in ({} for a route without one)
        self.params: dict[str, Any] = {}
        self.route = route
        self.request_id = request_id
        # Headers the answer must carry (X-Request-ID, RateLimit-*). The kernel adds them to
        # what a handler returns; a handler that prepares its own StreamResponse (SSE) must
        # copy them in before ``prepare``.
        self.response_headers: dict[str, str] = {"X-Request-ID": request_id} if request_id else {}
        # the kernel passes a function: the address is worked out only when asked for
        self._client_ip: str | None = client_ip if isinstance(client_ip, str) else None
        self._client_ip_of = None if isinstance(client_ip, str) else client_ip
        self.log_fields: dict[str, Any] | None = None

    def add_log_fields(self, **fields: Any) -> None:
        """Fields for this request's access-log line (a WebSocket's message counts)."""
        if self.log_fields is None:
            self.log_fields = {}
        self.log_fields.update(fields)

    @property
    def client_ip(self) -> str:
        """The client's address (X-Forwarded-For believed only from trusted proxies)."""
        if self._client_ip is None:
            assert self._client_ip_of is not None
            self._client_ip = self._client_ip_of(self.raw)
        return self._client_ip

    @property
    def match_info(self) -> Mapping[str, str]:
        return self.raw.match_info

    @property
    def query(self) -> Mapping[str, str]:
        return self.raw.query

    @property
    def headers(self) -> Mapping[str, str]:
        return self.raw.headers

    def query_int(self, name: str, default: int, lo: int, hi: int) -> int:
        """An integer query parameter within [lo, hi]; 422 naming it otherwise."""
        raw = self.raw.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = lo - 1
        if not lo <= value <= hi:
            from .errors import ValidationFailed

            raise ValidationFailed(
                f"{name} must be an integer from {lo} to {hi}",
                errors=[{"path": f"/{name}", "message": f"an integer from {lo} to {hi}"}],
            )
        return value

    def require_identity(self) -> Identity:
        """The caller's identity; routes with auth 'user'/'admin' always have one."""
        if self.identity is None:
            from .errors import Unauthorized

            raise Unauthorized("Authentication required", code="AUTH_REQUIRED")
        return self.identity


@dataclass(slots=True)
class Response:
    """Return this from a handler to choose the status or headers of a JSON answer."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Any]]


@dataclass(slots=True)
class Route:
    """One HTTP route a plugin serves.

    A handler returns a JSON-serialisable value (sent with ``status``), a
    :class:`Response`, or any aiohttp ``StreamResponse``/``WebSocketResponse`` it
    prepared itself (SSE, WebSocket).
    """

    method: str
    path: str
    handler: Handler
    auth: AuthLevel = "user"
    # Rate-limit class: "default" uses the per-route or default limit of the ratelimit
    # plugin; None exempts the route (health checks, docs, WebSocket upgrades that count
    # their messages themselves). "chat" routes are also subject to token quotas.
    rate_limit: str | None = "default"
    request_schema: JSONSchema | None = None
    response_schema: JSONSchema | None = None
    # object schema of the query parameters: validated (422 naming each bad one), typed and
    # defaulted into ``Request.params``, and documented
    query_schema: JSONSchema | None = None
    status: int = 200
    summary: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    operation_id: str = ""
    # Extra documented responses: {status: description}; Problem responses are added
    # automatically from auth level, request schema and rate limit.
    responses: dict[int, str] = field(default_factory=dict)
    # Content type of a successful answer (e.g. "text/event-stream" for SSE).
    response_content_type: str = "application/json"
    # Upper bound for this route's body, when lower than the kernel's max_body_bytes.
    max_body_bytes: int | None = None
    # Content types other than JSON the handler reads itself from ``req.raw`` (an
    # upload: "image/png"); the kernel checks only Content-Length against the limit and
    # leaves ``req.body`` None. Any other type is 415.
    raw_content_types: tuple[str, ...] = ()
    # Errors in another shape than Problem Details, for clients that expect one.
    error_shape: ErrorShape | None = None
    # Set by the kernel: the plugin that declared the route.
    plugin: str = ""

    def __post_init__(self) -> None:
        self.method = self.method.upper()

    @property
    def key(self) -> str:
        """``"POST /api/v1/chat"``: how config (rate limits) names a route."""
        return f"{self.method} {self.path}"


# What the kernel leaves on the aiohttp request for middleware: the request id it answers
# with, and the route's view of the request (identity, route template) once routed.
REQUEST_ID_KEY = web.RequestKey("llmmc_request_id", str)
ROUTE_REQUEST_KEY = web.RequestKey("llmmc_route_request", Request)

AioHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Status recorded for a request whose client went away before it was answered (nginx's).
CLIENT_CLOSED = 499
Answered = Callable[[web.Request, "web.StreamResponse | None", int, float], None]


async def observe(request: web.Request, handler: AioHandler, done: Answered) -> web.StreamResponse:
    """For middleware that records answers (metrics, the access log): ``handler(request)``,
    then ``done(request, response, status, seconds)`` however it ended: the response's
    status, a redirect's, ``CLIENT_CLOSED`` when the client went away, 500 otherwise
    (``response`` is None unless a response came back)."""
    started = time.perf_counter()
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
        done(request, response, status, time.perf_counter() - started)


# The kernel's last route, taking what no other route did (answered 404 or 405).
CATCH_ALL = "/{tail:.*}"
UNMATCHED = "(unmatched)"


def route_template(request: web.Request) -> str:
    """The route template a request went to (``/api/v1/things/{id}``), for labels and
    logs; ``UNMATCHED`` for what no route took. Never the path: a client must not mint
    label values."""
    routed = request.get(ROUTE_REQUEST_KEY)
    if routed is not None:
        return str(routed.route.path)
    resource = request.match_info.route.resource
    if resource is None or resource.canonical == "/{tail}":
        return UNMATCHED
    return resource.canonical


@dataclass(slots=True)
class Middleware:
    """Code that wraps every request, contributed through ``register_middleware``.

    ``handler`` is an aiohttp middleware: ``async def handler(request, handler)`` that
    awaits ``handler(request)`` and returns the response. The kernel builds the request
    path once at start from the enabled plugins' middleware, so a plugin that is not
    enabled costs a request nothing. ``order``: larger wraps outside smaller; the kernel's
    own layer (request id, Problem Details) is innermost, so every middleware sees the
    final status. The access log uses 100, metrics 90, compression 50.
    """

    handler: Callable[[web.Request, AioHandler], Awaitable[web.StreamResponse]]
    order: int = 0
    # set by the kernel: the plugin that contributed it
    plugin: str = ""
