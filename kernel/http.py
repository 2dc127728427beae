"""What every request goes through: X-Request-ID, Problem Details for every error,
security headers, valid Unicode in headers, query and path, and the per-route pipeline
(plugin state, authentication, permissions, ``before_request`` hooks, body limits, a
read timeout, JSON depth and text checks, and JSON Schema validation)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from itertools import chain as chain_iter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jsonschema import Draft202012Validator

from sdk.errors import (
    PROBLEM_CONTENT_TYPE,
    ErrorShape,
    Forbidden,
    PayloadTooLarge,
    Problem,
    RequestTimeout,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    problem_for_status,
)
from sdk.identity import Identity
from sdk.net import ClientIP
from sdk.plugin import PluginState
from sdk.request_context import set_request_id
from sdk.routes import CATCH_ALL, REQUEST_ID_KEY, ROUTE_REQUEST_KEY, Request, Response, Route
from sdk.schema import DefaultingValidator, schema_errors
from sdk.untrusted import check_strings, loads

if TYPE_CHECKING:
    from .plugins import Hooks, PluginRecord

log = logging.getLogger("llmmultichat.http")
REQUEST_ID = "X-Request-ID"
# Whether answers carry Strict-Transport-Security (also for requests aiohttp cannot parse).
HSTS_KEY = web.AppKey("llmmc_hsts", bool)
# One encoder built once: json.dumps(..., default=...) would build a new one per call.
dumps = json.JSONEncoder(default=str).encode
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# `Server` names the product, not the versions an attacker would look up.
SERVER_NAME = "LlmMultiChat"
# An API answer is never a page: it loads nothing and may not be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# HTML pages (/docs, /redoc) load only their own files and run no inline script. ReDoc
# injects its styles at run time, hence 'unsafe-inline' for styles (never for scripts).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


def security_headers(content_type: str, *, hsts: bool = False) -> dict[str, str]:
    """The headers every answer carries (a handler's own CSP is kept)."""
    headers = {
        "Server": SERVER_NAME,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": PAGE_CSP if content_type == "text/html" else API_CSP,
    }
    if hsts:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def security_headers_hook(
    hsts: bool,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` handler: it reaches every answer, streamed ones too."""

    api = security_headers("application/json", hsts=hsts)
    page = security_headers("text/html", hsts=hsts)
    csp = "Content-Security-Policy"

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        own = headers.get(csp)  # a handler's own CSP is kept
        html = headers.get("Content-Type", "").startswith("text/html")
        headers.update(page if html else api)  # Server too: aiohttp put its versions there
        if own is not None:
            headers[csp] = own

    return add


def problem_response(problem: Problem, request: web.Request | None = None) -> web.Response:
    body = problem.to_dict(instance=request.path if request is not None else None)
    resp = web.Response(text=dumps(body), status=problem.status, content_type=PROBLEM_CONTENT_TYPE)
    for k, v in problem.headers.items():
        resp.headers[k] = v
    return resp


def shaped_error(problem: Problem, shape: ErrorShape) -> web.Response:
    """An error in the shape a route's clients expect (its status and headers kept)."""
    return json_response(shape.render(problem), problem.status, dict(problem.headers) or None)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    if status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(
        text=dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def query_value(values: list[str], schema: Any) -> Any:
    """One query parameter as the type its schema declares: all its values for an array,
    else the first. A value that does not parse stays a string, for the validator to name."""
    declared = schema.get("type") if isinstance(schema, dict) else None
    kinds = [declared] if isinstance(declared, str) else list(declared or [])
    if "array" in kinds:
        items = schema.get("items") if isinstance(schema, dict) else None
        return [query_value([v], items) for v in values]
    value = values[0]
    for kind in kinds:
        if kind == "integer" and _INTEGER.fullmatch(value):
            return int(value)
        if kind == "number" and _NUMBER.fullmatch(value):
            return float(value)
        if kind == "boolean" and value in ("true", "false"):
            return value == "true"
    return value


_INTEGER = re.compile(r"[+-]?\d{1,18}")
_NUMBER = re.compile(r"[+-]?(\d{1,18}(\.\d{0,18})?|\.\d{1,18})([eE][+-]?\d{1,3})?")


async def request_layer(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    max_header_bytes: int = 65536,
) -> web.StreamResponse:
    """The kernel's own layer, innermost around every handler: X-Request-ID on every
    answer, and every error as Problem Details."""
    rid = request_id_of(request)
    request[REQUEST_ID_KEY] = rid
    set_request_id(rid)
    try:
        check_edge_text(request, max_header_bytes)
        response = await handler(request)
    except Problem as problem:
        response = problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        http_problem = problem_for_status(
            exc.status,
            exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason,
        )
        for k, v in exc.headers.items():
            if k.lower() in ("allow", "www-authenticate", "retry-after"):
                http_problem.headers[k] = v
        response = problem_response(http_problem, request)
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, rid)
        response = problem_response(
            Problem("An unexpected error occurred; it has been logged.", code="INTERNAL_ERROR"),
            request,
        )
    finally:
        set_request_id("")  # the connection's next request gets its own
    if not response.prepared:
        response.headers[REQUEST_ID] = rid
        if response.status in (408, 431):  # the rest may still be on its way; free it
            response.force_close()
    return response


def chain(handler: Any, layers: list[Any], max_header_bytes: int = 65536) -> Any:
    """``handler`` inside ``layers`` (outermost first) and the kernel's own layer, built
    once per route: a request pays a call per enabled layer and nothing else."""
    wrapped = partial(request_layer, handler=handler, max_header_bytes=max_header_bytes)
    for layer in reversed(layers):
        wrapped = partial(layer, handler=wrapped)
    return wrapped


class Unmatched:
    """What answers a path no running route takes: 405 with ``Allow`` when the path is a
    route's with another method, else 404 (both through the same layers as every answer)."""

    def __init__(self, keys: Iterable[tuple[str, str]]) -> None:
        methods: dict[str, set[str]] = {}
        for method, path in keys:
            methods.setdefault(path, set()).add(method)
        self.table = [(_template_regex(path), m) for path, m in methods.items()]

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        allowed = set().union(*(m for rx, m in self.table if rx.fullmatch(path)))
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Slot:
    """What aiohttp calls for one route it knows: the route's current handler (already in
    its layers), or, while no running plugin serves it, the fallback."""

    __slots__ = ("handler", "router")

    def __init__(self, router: LiveRouter) -> None:
        self.handler: Handler | None = None
        self.router = router

    async def call(self, request: web.Request) -> web.StreamResponse:
        handler = self.handler or self.router.fallback
        return await handler(request)


class LiveRouter:
    """The routes of what runs now. aiohttp freezes its router when the app starts, but
    plugins are enabled, disabled and reconfigured while serving: each route aiohttp knows
    calls a slot that ``update`` refills or empties (the path then answers like an unknown
    one), and routes that appear later are found by the catch-all in a router of their own.
    The request path is rebuilt on each change, never looked up per request."""

    def __init__(self, app: web.Application, max_header_bytes: int = 65536) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.slots: dict[tuple[str, str], _Slot] = {}
        self.late: web.UrlDispatcher | None = None
        self.unmatched = Unmatched(())
        self.fallback: Handler = self.unmatched

    def update(self, handlers: dict[tuple[str, str], Handler], layers: list[Any]) -> None:
        """``handlers``: (method, path) -> the route's handler, outside any layer."""
        frozen = self.app.router.frozen
        late = web.UrlDispatcher()
        for key, handler in handlers.items():
            slot = self.slots.get(key)
            if slot is None and frozen:
                late.add_route(*key, handler)  # the catch-all's layers wrap it
                continue
            if slot is None:
                slot = self.slots[key] = _Slot(self)
                self.app.router.add_route(*key, slot.call)
            slot.handler = chain(handler, layers, self.max_header_bytes)
        for key, slot in self.slots.items():
            if key not in handlers:
                slot.handler = None
        self.late = late if late.routes() else None
        self.unmatched = Unmatched(k for k in handlers if k[1] != CATCH_ALL)
        self.fallback = chain(self._unmatched, layers, self.max_header_bytes)
        if not frozen and (CATCH_ALL_KEY not in self.slots):
            slot = self.slots[CATCH_ALL_KEY] = _Slot(self)
            self.app.router.add_route(*CATCH_ALL_KEY, slot.call)

    async def _unmatched(self, request: web.Request) -> web.StreamResponse:
        if self.late is not None:
            match = await self.late.resolve(request)
            if match.http_exception is None:
                match.add_app(request.app)
                request._match_info = match  # the late route's {parameters}
                return await match.handler(request)
        return await self.unmatched(request)


CATCH_ALL_KEY = ("*", CATCH_ALL)


def _template_regex(path: str) -> re.Pattern[str]:
    """A route template (``/a/{id}``, ``/f/{name:.+}``) as a regex of the paths it takes."""
    parts, last = [], 0
    for m in re.finditer(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})*))?\}", path):
        parts += [re.escape(path[last : m.start()]), f"(?:{m.group(2) or '[^{}/]+'})"]
        last = m.end()
    return re.compile("".join([*parts, re.escape(path[last:])]))


def request_id_of(request: web.BaseRequest) -> str:
    """The client's ``X-Request-ID`` when it is printable and at most 200 characters,
    else a new random one."""
    rid = request.headers.get(REQUEST_ID, "")
    if not rid or len(rid) > 200 or not rid.isprintable():
        rid = os.urandom(16).hex()  # uuid4's randomness without building a UUID
    return rid


def check_edge_text(request: web.Request, max_header_bytes: int = 65536) -> None:
    """No plugin sees a lone surrogate: the HTTP parser decodes header bytes with
    ``surrogateescape``, and decoded query strings and path parameters are checked too.
    An all-ASCII request without NUL (the usual case) is cleared by one C-level check of
    each part. The parser limits each header line (8 KB) and their number (128); the
    headers together are limited here (``[kernel] max_header_bytes``), 431 beyond."""
    raw = b"".join(chain_iter.from_iterable(request.raw_headers))
    if len(raw) > max_header_bytes:
        raise Problem(
            f"The request's headers are {len(raw)} bytes; the limit is {max_header_bytes}.",
            status=431,
            code="HEADERS_TOO_LARGE",
            title="Request Header Fields Too Large",
        )
    if not raw.isascii() or b"\x00" in raw:
        check_strings(request.headers.items(), "header")
    query = request.query_string
    if query and (not query.isascii() or "%00" in query or "\x00" in query):
        check_strings(request.query.items(), "query parameter")
    path = request.path
    if not path.isascii() or "\x00" in path:
        check_strings(request.match_info.items(), "path parameter")


class Pipeline:
    """What every route's handler shares: the hooks it asks, how it finds the client's
    address, and the body limits."""

    def __init__(
        self, hooks: Hooks, client_ip: ClientIP, max_body_bytes: int, read_timeout: float
    ) -> None:
        self.hooks = hooks
        self.client_ip = client_ip
        self.max_body_bytes = max_body_bytes
        self.read_timeout = float(read_timeout)


class RouteHandler:
    """The kernel's wrapper around one plugin route."""

    def __init__(self, route: Route, record: PluginRecord | None, pipeline: Pipeline) -> None:
        self.route = route
        self.record = record
        self.pipeline = pipeline
        self.hooks = pipeline.hooks
        self.validator = (
            Draft202012Validator(route.request_schema) if route.request_schema is not None else None
        )
        # fills the schema's defaults in, so handlers read every declared parameter
        self.query_validator = (
            DefaultingValidator(route.query_schema) if route.query_schema is not None else None
        )
        limit = pipeline.max_body_bytes
        self.max_body = min(limit, route.max_body_bytes) if route.max_body_bytes else limit

    async def handle(self, raw: web.Request) -> web.StreamResponse:
        record = self.record
        if record is None:
            return await self._shaped(raw)
        record.active += 1  # a plugin disabled at run time waits for these
        try:
            return await self._shaped(raw)
        finally:
            record.active -= 1

    async def _shaped(self, raw: web.Request) -> web.StreamResponse:
        shape = self.route.error_shape
        if shape is None:
            return await self._handle(raw)
        try:
            return await self._handle(raw)
        except Problem as problem:
            return shaped_error(problem, shape)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", raw.method, raw.path)
            internal = Problem("An unexpected error occurred; it has been logged.")
            return shaped_error(internal, shape)

    async def _handle(self, raw: web.Request) -> web.StreamResponse:
        route = self.route
        hooks = self.hooks
        if self.record is not None and self.record.state is not PluginState.RUNNING:
            raise ServiceUnavailable(
                f"plugin {route.plugin!r} is {self.record.state.value}"
                + (f": {self.record.error}" if self.record.error else ""),
                code="PLUGIN_UNAVAILABLE",
            )
        # a public route called without credentials needs no authentication round
        auth_error: Unauthorized | None = None
        if route.auth == "public" and "Authorization" not in raw.headers:
            identity = None
        else:
            try:
                identity = await self.identify(raw)
            except Unauthorized as exc:  # refused below, after the request is counted
                identity, auth_error = None, exc
        request = Request(
            raw,
            identity=identity,
            body=None,
            route=route,
            client_ip=self.pipeline.client_ip,
            request_id=raw.get(REQUEST_ID_KEY, ""),
        )
        raw[ROUTE_REQUEST_KEY] = request
        # Rate limits come first, so floods of bad tokens and bad bodies are counted too.
        asked = route.rate_limit is not None and hooks.has("before_request")
        try:
            if asked:
                for headers in await hooks.call_running("before_request", request=request):
                    request.response_headers.update(headers)
            if auth_error is not None:
                raise auth_error
            if route.auth != "public":
                await self.authorize(identity, raw)
            if self.query_validator is not None:
                request.params = self.read_query(raw)
            if raw.method in _BODY_METHODS:
                request.body = await self.read_body(raw)
            result = await route.handler(request)
        except Problem as problem:
            if asked:  # every limited answer carries RateLimit-*, errors included
                problem.headers = {**request.response_headers, **problem.headers}
            raise
        if isinstance(result, web.StreamResponse):
            response = result
        elif isinstance(result, Response):
            response = json_response(result.body, result.status, result.headers or None)
        else:
            response = json_response(result, route.status)
        if asked and not response.prepared:
            response.headers.update(request.response_headers)
        return response

    async def authorize(self, identity: Identity | None, raw: web.Request) -> None:
        """401 without an identity, 403 for a non-admin on an admin route or when any
        ``permission_allowed`` implementation says no."""
        route = self.route
        if identity is None:
            raise Unauthorized("Authentication required", code="AUTH_REQUIRED")
        if route.auth == "admin" and not identity.is_admin:
            raise Forbidden("This route is for administrators", code="ADMIN_REQUIRED")
        if self.hooks.has("permission_allowed"):
            answers = await self.hooks.call_running(
                "permission_allowed",
                identity=identity,
                action=route.operation_id or route.key,
                resource=dict(raw.match_info),
            )
            if any(a is False for a in answers):
                raise Forbidden("Not allowed", code="FORBIDDEN")

    async def identify(self, raw: web.Request) -> Identity | None:
        hooks = self.hooks
        if not hooks.has("authenticate"):
            return None
        try:
            identity: Identity | None = await hooks.first("authenticate", request=raw)
        except Unauthorized:
            if self.route.auth == "public":
                return None  # a public route serves anyone; a bad token gets no identity
            raise
        return identity

    def read_query(self, raw: web.Request) -> dict[str, Any]:
        """The query parameters, typed and checked against ``query_schema`` (422 naming
        each bad one). An empty value of a non-string parameter counts as absent."""
        assert self.query_validator is not None
        properties = (self.route.query_schema or {}).get("properties") or {}
        params: dict[str, Any] = {}
        for name in dict.fromkeys(raw.query.keys()):
            schema = properties.get(name)
            values = raw.query.getall(name)
            if values == [""] and isinstance(schema, dict) and schema.get("type") != "string":
                continue
            params[name] = query_value(values, schema)
        errors = schema_errors(self.query_validator, params)
        if errors:
            first = errors[0]
            where = f"query parameter {first['path'][1:]}" if first["path"] != "/" else "query"
            raise ValidationFailed(
                f"The {where} is not valid: {first['message'][:200]}", errors=errors
            )
        return params

    async def read_body(self, raw: web.Request) -> Any:
        length = raw.content_length
        if length is not None and length > self.max_body:
            raise PayloadTooLarge(f"The body is {length} bytes; the limit is {self.max_body}.")
        if not raw.body_exists:
            if self.validator is not None:
                errors = schema_errors(self.validator, None)
                raise ValidationFailed("A JSON body is required.", errors=errors or None)
            return None
        ctype = raw.content_type
        if ctype != "application/json" and not ctype.endswith("+json"):
            if ctype in self.route.raw_content_types:
                return None  # an upload the handler reads itself (req.raw), within max_body
            if self.validator is None and not ctype:
                return None
            raise UnsupportedMediaType(f"Send application/json, not {ctype or 'no content type'}.")
        data = bytearray()
        try:
            async with asyncio.timeout(self.pipeline.read_timeout):
                async for chunk in raw.content.iter_chunked(65536):
                    data.extend(chunk)
                    if len(data) > self.max_body:
                        raise PayloadTooLarge(
                            f"The body is over the limit of {self.max_body} bytes."
                        )
        except TimeoutError:
            raise RequestTimeout(
                f"The body did not arrive within {self.pipeline.read_timeout:g} seconds."
            ) from None
        if not data:
            if self.validator is not None:
                raise ValidationFailed(
                    "A JSON body is required.", errors=schema_errors(self.validator, None)
                )
            return None
        body = loads(data)
        if self.validator is not None:
            errors = schema_errors(self.validator, body)
            if errors:
                raise ValidationFailed(
                    "The body does not match the schema: " + errors[0]["message"][:200],
                    errors=errors,
                )
        return body
