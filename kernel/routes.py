"""The kernel's own routes: index, health, ping, liveness and readiness, OpenAPI and its
viewers, the plugin registry and the tool execute route. Declared as sdk Routes like any
plugin's."""

from __future__ import annotations

import asyncio
import glob
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sdk.errors import NotFound
from sdk.plugin import Health, PluginState, ServerView
from sdk.routes import Request, Response, Route
from sdk.schema import redact
from sdk.tools import ToolCall

from . import __version__

if TYPE_CHECKING:
    from .bus import MemoryBus
    from .plugins import Hooks, PluginRecord
    from .tools import ToolRegistry

STATIC = Path(__file__).parent / "static"
HEALTH_TIMEOUT = 2.0

PLUGIN_SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["name", "version", "state", "status", "error"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "description": {"type": "string"},
        "state": {"enum": [s.value for s in PluginState]},
        "status": {"enum": ["ok", "degraded", "unavailable"]},
        "detail": {"type": "string"},
        "error": {"type": "string"},
        "required": {"type": "boolean"},
        "requires": {"type": "array", "items": {"type": "string"}},
        "distribution": {"type": "string"},
    },
}


def swagger_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    base = Path(swagger_ui_bundle.__file__).parent / "vendor"
    found = sorted(glob.glob(str(base / "swagger-ui-*")))
    return Path(found[-1]) if found else None


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>LlmMultiChat API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init/swagger-init.js"></script>
</body></html>"""

REDOC_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>LlmMultiChat API</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/redoc/static/redoc.standalone.js"></script></body></html>"""


def _quality(accept: str, media: str) -> float | None:
    """The q value ``accept`` gives ``media`` by name (None when it is not listed)."""
    for part in accept.split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() != media:
            continue
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return max(0.0, min(1.0, float(value)))
                except ValueError:
                    return 0.0
        return 1.0
    return None


def prefers_html(accept: str) -> bool:
    """A browser navigating names text/html; API clients send JSON, ``*/*`` or nothing."""
    html = _quality(accept, "text/html")
    if not html:
        return False
    json_q = _quality(accept, "application/json")
    return json_q is None or html > json_q


class PluginsView:
    """What the kernel's routes read of the plugins: their records, tools, and the bus."""

    def __init__(
        self,
        records: dict[str, PluginRecord],
        hooks: Hooks,
        tools: ToolRegistry,
        bus: MemoryBus,
        required: list[str],
    ) -> None:
        self.records = records
        self.hooks = hooks
        self.tools = tools
        self.bus = bus
        self.required = required


class KernelRoutes:
    def __init__(
        self,
        plugins: PluginsView,
        openapi: Callable[[], dict[str, Any]],
        server: ServerView,
    ) -> None:
        self.plugins = plugins
        self.records = plugins.records
        self._openapi = openapi
        self.server = server
        self.hooks = plugins.hooks

    def routes(self) -> list[Route]:
        r = [
            Route(
                "GET",
                "/",
                self.index,
                auth="public",
                rate_limit=None,
                summary="Name, version and links",
                description="A browser (an Accept header preferring text/html) is redirected "
                "to the page a plugin offers through the `browser_home` hook, if any.",
                response_schema={"type": "object", "required": ["name", "version"]},
                responses={302: "Redirect of a browser to the web client"},
            ),
            Route(
                "GET",
                "/ping",
                self.ping,
                auth="public",
                rate_limit=None,
                summary="Liveness",
                response_schema={
                    "type": "object",
                    "required": ["pong"],
                    "properties": {"pong": {"const": True}},
                },
            ),
            Route(
                "GET",
                "/health",
                self.health,
                auth="public",
                rate_limit=None,
                summary="Overall status and each plugin's state (200 healthy/degraded, 503 unhealthy)",
                response_schema=HEALTH_SCHEMA,
                responses={503: "Unhealthy: a required plugin is not running"},
            ),
            Route(
                "GET",
                "/openapi.json",
                self.openapi,
                auth="public",
                rate_limit=None,
                summary="This document",
                response_schema={"type": "object"},
            ),
            Route(
                "GET",
                "/docs",
                self.docs,
                auth="public",
                rate_limit=None,
                summary="Swagger UI",
                response_content_type="text/html",
                response_schema={"type": "string"},
            ),
            Route(
                "GET",
                "/redoc",
                self.redoc,
                auth="public",
                rate_limit=None,
                summary="ReDoc",
                response_content_type="text/html",
                response_schema={"type": "string"},
            ),
            Route(
                "GET",
                "/api/v1/plugins",
                self.list_plugins,
                auth="public",
                summary="Enabled plugins and their states",
                response_schema={
                    "type": "object",
                    "required": ["plugins"],
                    "properties": {"plugins": {"type": "array", "items": PLUGIN_SUMMARY}},
                },
            ),
            Route(
                "GET",
                "/api/v1/plugins/{name}",
                self.get_plugin,
                auth="public",
                summary="One plugin: version, state, error, routes, tools; for admins also its "
                "config with secrets redacted",
                response_schema=PLUGIN_DETAIL,
            ),
            Route(
                "POST",
                "/api/v1/plugins/{name}/execute",
                self.execute,
                auth="user",
                summary="Run one of a plugin's tools",
                request_schema=EXECUTE_SCHEMA,
                response_schema={"type": "object", "required": ["plugin", "tool", "result"]},
                responses={502: "Upstream failed", 504: "Upstream timed out"},
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
                summary="Readiness: 200 while every required plugin runs, every running plugin "
                "can serve and the process is not draining",
                response_schema=READYZ_SCHEMA,
                responses={503: "Not ready: starting, draining, or a plugin cannot serve"},
            ),
        ]
        for route in r:
            route.plugin = "kernel"
            route.tags = ["kernel"]
        return r

    async def livez(self, req: Request) -> Any:
        return {"status": "alive"}

    async def readyz(self, req: Request) -> Response:
        reasons = self.server.not_ready_reasons()
        if reasons:
            return Response({"status": "not ready", "reasons": reasons}, status=503)
        return Response({"status": "ready", "reasons": []})

    async def index(self, req: Request) -> Any:
        vary = {"Vary": "Accept"}
        if prefers_html(req.headers.get("Accept", "")) and self.hooks.has("browser_home"):
            home = await self.hooks.first("browser_home")
            # only a path on this server: "//host", "/\\host" or "http:..." would be an open redirect
            if isinstance(home, str) and home[:1] == "/" and home[1:2] not in ("/", "\\"):
                return web.Response(status=302, headers={**vary, "Location": home})
        body = {
            "name": "LlmMultiChat",
            "version": __version__,
            "links": {
                "health": "/health",
                "openapi": "/openapi.json",
                "docs": "/docs",
                "redoc": "/redoc",
                "plugins": "/api/v1/plugins",
            },
        }
        return Response(body, headers=vary)

    async def ping(self, req: Request) -> Any:
        return {"pong": True}

    async def _health_of(self, name: str) -> Health:
        rec = self.records[name]
        if rec.state is not PluginState.RUNNING or rec.instance is None:
            return Health("unavailable", rec.error or rec.state.value)
        try:
            return await asyncio.wait_for(rec.instance.health(), HEALTH_TIMEOUT)
        except TimeoutError:
            return Health("degraded", "health check timed out")
        except Exception as exc:
            return Health("degraded", f"health check failed: {exc!r}")

    async def health(self, req: Request) -> Response:
        """Everyone sees the states, the checks and what is impaired; the bus's error (a
        host and port) is for administrators only."""
        admin = req.identity is not None and req.identity.is_admin
        names = [n for n, r in self.records.items() if r.enabled]
        reports = await asyncio.gather(*(self._health_of(n) for n in names))
        plugins = {}
        status = "healthy"
        problems: list[str] = []  # what a user would notice, one line each
        for name, h in zip(names, reports, strict=True):
            rec = self.records[name]
            plugins[name] = {
                "state": rec.state.value,
                "status": h.status,
                "detail": h.detail,
                "required": rec.required,
                **({"checks": h.checks} if h.checks else {}),
            }
            failures = self.server.recent_failures(name)
            if failures:  # a plugin that says it is fine but keeps failing calls
                last = failures[0]
                plugins[name]["recent_failures"] = {
                    "count": len(failures),
                    "last": {"at": last.at, "kind": last.kind, "error": last.error},
                }
                if h.status == "ok":
                    h = Health("degraded", f"{len(failures)} failure(s) in 5 min: {last.error}")
                    plugins[name].update(status=h.status, detail=h.detail)
            if h.status != "ok":
                problems.append(f"{name}: {h.detail or h.status}")
            if rec.required and rec.state is not PluginState.RUNNING:
                status = "unhealthy"
            elif status == "healthy" and (h.status != "ok"):
                status = "degraded"
        bus = self.plugins.bus.health()
        if bus.get("status") != "ok":
            why = f" ({bus.get('error') or bus.get('status')})" if admin else ""
            problems.append(f"event bus: Redis unreachable{why}; events stay in this process")
            if status == "healthy":
                status = "degraded"
        if not admin:
            bus.pop("error", None)
        body = {
            "status": status,
            "problems": problems,
            "version": __version__,
            "bus": bus,
            "plugins": plugins,
        }
        return Response(body, status=503 if status == "unhealthy" else 200)

    async def openapi(self, req: Request) -> Any:
        return self._openapi()

    async def docs(self, req: Request) -> web.StreamResponse:
        return web.Response(text=DOCS_HTML, content_type="text/html")

    async def redoc(self, req: Request) -> web.StreamResponse:
        return web.Response(text=REDOC_HTML, content_type="text/html")

    async def _summary(self, name: str) -> dict[str, Any]:
        rec = self.records[name]
        h = await self._health_of(name)
        return {
            "name": name,
            "version": rec.version,
            "description": rec.cls.description if rec.cls else "",
            "state": rec.state.value,
            "status": h.status,
            "detail": h.detail,
            "error": rec.error,
            "required": rec.required,
            "requires": list(rec.requires),
            "distribution": rec.distribution,
        }

    async def list_plugins(self, req: Request) -> Any:
        return {"plugins": [await self._summary(n) for n, r in self.records.items() if r.enabled]}

    def _enabled(self, name: str) -> PluginRecord:
        rec = self.records.get(name)
        if rec is None or not rec.enabled:
            raise NotFound(f"No plugin named {name!r} is enabled.", code="PLUGIN_NOT_FOUND")
        return rec

    async def get_plugin(self, req: Request) -> Any:
        name = req.match_info["name"]
        rec = self._enabled(name)
        body = await self._summary(name)
        is_admin = req.identity is not None and req.identity.is_admin
        if is_admin:  # even redacted, it names hosts and URLs: for administrators only
            schema = rec.cls.config_schema if rec.cls else {}
            body["config"] = redact(rec.config, schema)
        body["routes"] = [{"method": r.method, "path": r.path, "auth": r.auth} for r in rec.routes]
        body["tools"] = [
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "result": t.result,
            }
            for t in self.plugins.tools.of_plugin(name)
        ]
        if is_admin and rec.traceback:
            body["traceback"] = rec.traceback
        return body

    async def execute(self, req: Request) -> Any:
        name = req.match_info["name"]
        self._enabled(name)
        tool_name = req.body["tool"]
        tool = next((t for t in self.plugins.tools.of_plugin(name) if t.name == tool_name), None)
        if tool is None:
            raise NotFound(f"Plugin {name!r} has no tool {tool_name!r}.", code="TOOL_NOT_FOUND")
        result = await self.plugins.tools.call(
            tool_name,
            req.body.get("params", {}),
            ToolCall(identity=req.identity, request_id=req.request_id, origin="api"),
        )
        return {"plugin": name, "tool": tool_name, "result": result}


EXECUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tool"],
    "additionalProperties": False,
    "properties": {
        "tool": {"type": "string", "minLength": 1, "maxLength": 100},
        "params": {"type": "object", "default": {}},
    },
}

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

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "plugins"],
    "properties": {
        "status": {"enum": ["healthy", "degraded", "unhealthy"]},
        "problems": {
            "type": "array",
            "items": {"type": "string"},
            "description": "what is impaired, one line each ('<plugin>: <what>'); empty when healthy",
        },
        "version": {"type": "string"},
        "bus": {"type": "object"},
        "plugins": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["state", "status"],
                "properties": {
                    "state": {"type": "string"},
                    "status": {"enum": ["ok", "degraded", "unavailable"]},
                },
            },
        },
    },
}

PLUGIN_DETAIL: dict[str, Any] = {
    **PLUGIN_SUMMARY,
    "required": [*PLUGIN_SUMMARY["required"], "routes", "tools"],
    "properties": {
        **PLUGIN_SUMMARY["properties"],
        "config": {"type": "object"},
        "routes": {"type": "array", "items": {"type": "object"}},
        "tools": {"type": "array", "items": {"type": "object"}},
        "traceback": {"type": "string"},
    },
}


def static_directories() -> dict[str, Path]:
    """URL prefix -> folder of the API viewers' files (served offline)."""
    found = {"/docs/init": STATIC / "docs", "/redoc/static": STATIC / "redoc"}
    sw = swagger_dir()
    if sw is not None:
        found["/docs/static"] = sw
    return found


class StaticFiles:
    """Files of one folder, under ``{path}``; nothing outside it is ever served."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        target = (self.directory / request.match_info["path"]).resolve()
        if not target.is_relative_to(self.directory) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)
