"""The kernel: builds the aiohttp application from the configuration and the plugins.

``build_kernel()`` is the factory ``llmmultichat serve`` runs: ``Kernel.load()``
discovers, orders, validates, prepares and initializes the plugins and collects their
contributions (routes, tools, middleware, CLI commands), and ``Kernel.build_app()`` builds
the request path once from them; starting and stopping happen in the app's
``cleanup_ctx`` (start in dependency order, stop in reverse, only what started).
How a process serves the app while it starts, and drains it on SIGTERM, is
``kernel/server.py``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from sdk import services as service_names
from sdk.cli import CliCommand
from sdk.events import KERNEL_STARTED, PLUGIN_STATE_CHANGED
from sdk.llm import check_provider_classes
from sdk.net import ClientIP
from sdk.plugin import Plugin, PluginContext, PluginState
from sdk.routes import CATCH_ALL, Middleware, Route
from sdk.schema import schema_problems
from sdk.services import Services

from . import __version__
from .bus import MemoryBus, PluginBus, make_bus
from .config import ConfigError, LoadedConfig, validate_plugin_config
from .http import (
    HSTS_KEY,
    Pipeline,
    RouteHandler,
    Unmatched,
    chain,
    security_headers_hook,
)
from .metrics import MetricsRegistry
from .openapi import build_openapi
from .plugins import (
    CONTRIBUTING,
    Hooks,
    PluginRecord,
    StartupError,
    dependents_of,
    discover,
    start_order,
)
from .routes import KernelRoutes, PluginsView, StaticFiles, static_directories
from .tools import ToolRegistry

log = logging.getLogger("llmmultichat.kernel")


class Kernel:
    """The plugins' lifecycle and what they contributed; also the ``sdk.plugin.ServerView``
    that plugins see as ``context.server``."""

    def __init__(
        self, config: LoadedConfig, *, extra_plugins: dict[str, type[Plugin]] | None = None
    ) -> None:
        self.config = config
        self.kernel_config = config.kernel
        self.extra_plugins = extra_plugins or {}
        self.data_dir = Path(self.kernel_config["data_dir"]).resolve()
        self.records: dict[str, PluginRecord] = {}
        self.order: list[str] = []
        self.hooks = Hooks(self.records)
        self.tools = ToolRegistry(self.records)
        self.services = Services()
        self.metrics = MetricsRegistry()
        self.bus: MemoryBus = make_bus(self.kernel_config["bus"])
        self.routes: list[Route] = []
        self.middleware: list[Middleware] = []
        self.cli_commands: list[CliCommand] = []
        self._openapi: dict[str, Any] | None = None
        self.started = False  # every plugin has had its start; cleared again by stop
        self.starting = ""  # the plugin whose start() runs now (for /readyz)
        self.bus_started = False
        self.draining = False  # shutting down: readiness is off for good

    version = __version__

    # -- assembly ---------------------------------------------------------------------

    async def load(self, until: str = "initialized", plugin: str = "") -> None:
        """Discover, order and validate, then prepare and initialize every plugin and
        collect contributions; raises StartupError or ConfigError for what must stop the
        server. ``until="prepared"``: only ``plugin`` (and what it requires) initialize;
        the others are only prepared (``llmmultichat db migrate``)."""
        self.resolve()
        keep = self._requirements_of(plugin) if until == "prepared" else set(self.order)
        try:
            for name in self.order:
                if name in keep:
                    await self._initialize(self.records[name])
                else:
                    await self._prepare(self.records[name])
            self._check_required(keep)
            await self._collect()
        except BaseException:
            await self.close()
            raise

    def resolve(self) -> None:
        """Discover and order the enabled plugins and validate their configs (nothing is
        opened or initialized); raises StartupError or ConfigError."""
        self.records.update(discover(self.config.enabled, self.extra_plugins))
        for name in self.config.required:
            self.records[name].required = True
        self.order = start_order(self.records)
        problems: list[str] = []
        for name in self.order:
            rec = self.records[name]
            if rec.cls is None:
                continue
            broken = schema_problems(rec.cls.config_schema)
            if broken:
                rec.fail("validate", f"the plugin's config schema is invalid: {broken[0]}")
                continue
            try:
                rec.config = validate_plugin_config(
                    name, self.config.plugin_table(name), rec.cls.config_schema
                )
            except ConfigError as exc:
                problems += exc.problems
        for key, value in self.config.raw["plugins"].items():
            if isinstance(value, dict) and key not in self.records:
                log.warning("[plugins.%s] configures a plugin that is not enabled", key)
        if problems:
            raise ConfigError(problems, self.config.source)

    def _requirements_of(self, name: str) -> set[str]:
        found, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current in found or current not in self.records:
                continue
            found.add(current)
            todo += self.records[current].requires
        return found

    def process_local_settings(self) -> list[str]:
        """Settings that keep shared state inside this process (after ``resolve``): with
        any of them, several processes would not act as one server."""
        found = []
        if (self.kernel_config.get("bus") or {}).get("backend", "memory") != "redis":
            found.append('[kernel.bus] backend = "redis"')
        for name in self.order:
            rec = self.records[name]
            if rec.cls is not None and rec.state is not PluginState.ERROR:
                found += rec.cls.process_local_settings(rec.config, self.kernel_config)
        return found

    async def load_cli_commands(self) -> list[CliCommand]:
        """The enabled plugins' subcommands, found without initializing anything (a
        server may hold the data_dir). A plugin that cannot offer them is left in ERROR
        with the reason."""
        self.records.update(discover(self.config.enabled, self.extra_plugins))
        commands: list[CliCommand] = []
        for name, rec in self.records.items():
            if rec.cls is None or not hasattr(rec.cls, "register_cli_commands"):
                continue
            try:
                rec.config = validate_plugin_config(
                    name, self.config.plugin_table(name), rec.cls.config_schema
                )
                found = await _maybe(rec.cls(self._context(rec)).register_cli_commands())  # type: ignore[attr-defined]
            except ConfigError as exc:
                rec.fail("config", "; ".join(exc.problems))
                continue
            except Exception as exc:
                rec.fail("register", exc)
                continue
            for cmd in found or []:
                cmd.plugin = name
                commands.append(cmd)
        return commands

    def _context(self, rec: PluginRecord) -> PluginContext:
        return PluginContext(
            name=rec.name,
            config=rec.config,
            kernel_config=self.kernel_config,
            data_dir=self.data_dir,
            logger=logging.getLogger(f"llmmultichat.plugin.{rec.name}"),
            bus=PluginBus(self.bus, rec.name),
            hooks=self.hooks,
            tools=self.tools,
            services=_PluginServices(self.services, rec.name),
            metrics=self.metrics.for_plugin(rec.name),
            server=self,
        )

    def _blocked_by(self, rec: PluginRecord, ok_states: tuple[PluginState, ...]) -> str | None:
        return next((d for d in rec.requires if self.records[d].state not in ok_states), None)

    async def _prepare(self, rec: PluginRecord) -> bool:
        """What must exist before the plugin initializes: the ``prepare_plugin`` hook of
        the plugins already initialized (the storage plugin applies its migrations)."""
        if rec.cls is None or rec.state is PluginState.ERROR:
            return False
        preparers = self.hooks.implementations("prepare_plugin", states=CONTRIBUTING)
        if rec.cls.migrations and not preparers:
            rec.fail(
                "migrate",
                'it has database migrations but no plugin provides a database: add "storage" to [plugins] enabled',
            )
            return False
        for _, fn in preparers:
            try:
                await _maybe(fn(name=rec.name, migrations=rec.cls.migrations))
            except Exception as exc:
                rec.fail("migrate", str(exc))
                return False
        return True

    async def _initialize(self, rec: PluginRecord) -> None:
        if rec.cls is None or rec.state is PluginState.ERROR:
            return
        dep = self._blocked_by(rec, CONTRIBUTING)
        if dep is not None:
            rec.fail("initialize", f"required plugin {dep!r} failed")
            return
        if not await self._prepare(rec):
            return
        try:
            rec.instance = rec.cls(self._context(rec))
            self.hooks.register(rec.name, rec.instance)
            await rec.instance.initialize()
            rec.state = PluginState.INITIALIZED
            self.services.set_running(rec.name, True)
            backend = self.services.get(service_names.METRICS)
            if backend is not None:
                self.metrics.attach(backend)
        except Exception as exc:
            rec.fail("initialize", exc)

    def _check_required(self, names: set[str]) -> None:
        for name in self.config.required:
            rec = self.records[name]
            if name in names and rec.state is PluginState.ERROR:
                raise StartupError(f"required plugin {name!r} failed: {rec.error}")

    async def _collect(self) -> None:
        """Routes, tools, middleware and CLI commands of every initialized plugin."""
        llm_types: dict[str, str] = {}  # provider type -> the plugin that registered it
        kernel_routes = KernelRoutes(self.plugins_view(), self.openapi, self).routes()
        seen: dict[str, str] = {r.key: "kernel" for r in kernel_routes}
        self.routes = list(kernel_routes)
        problems = []
        op_ids: set[str] = set()
        for name in self.order:
            rec = self.records[name]
            if rec.state is not PluginState.INITIALIZED:
                continue
            try:
                for route in await self._contribution("register_routes", name) or []:
                    route.plugin = name
                    if not route.operation_id:
                        route.operation_id = f"{name}.{route.handler.__name__}"
                        if route.operation_id in op_ids:  # one handler behind several routes
                            route.operation_id = f"{name}.{_slug(route)}"
                    op_ids.add(route.operation_id)
                    if route.key in seen:
                        problems.append(
                            f"duplicate route {route.key}: declared by {seen[route.key]!r} and {name!r}"
                        )
                    seen[route.key] = name
                    rec.routes.append(route)
                    self.routes.append(route)
                for tool in await self._contribution("register_tools", name) or []:
                    self.tools.add(name, tool)
                    rec.tools.append(tool)
                for mw in await self._contribution("register_middleware", name) or []:
                    mw.plugin = name
                    self.middleware.append(mw)
                for cmd in await self._contribution("register_cli_commands", name) or []:
                    cmd.plugin = name
                    self.cli_commands.append(cmd)
                check_provider_classes(
                    name, await self._contribution("register_llm_providers", name), llm_types
                )
            except Exception as exc:
                rec.fail("register", exc)
        if problems:
            raise StartupError("; ".join(problems))

    async def _contribution(self, hook: str, plugin: str) -> Any:
        """One initialized plugin's answer to a ``register_*`` hook (None if it has none)."""
        impls = dict(self.hooks.implementations(hook, states=[PluginState.INITIALIZED]))
        fn = impls.get(plugin)
        return (await _maybe(fn())) if fn else None

    def plugins_view(self) -> PluginsView:
        return PluginsView(self.records, self.hooks, self.tools, self.bus, self.config.required)

    def build_app(self) -> web.Application:
        """The request path, built once: each route's handler inside the enabled
        plugins' middleware (outermost first) and the kernel's own layer. No aiohttp
        middleware runs: a request pays for exactly the layers that are enabled."""
        kc = self.kernel_config
        layers = [_new_style(m.handler) for m in sorted(self.middleware, key=lambda m: -m.order)]
        app = web.Application(
            client_max_size=kc["max_body_bytes"], handler_args=connection_args(kc)
        )
        app[HSTS_KEY] = bool(kc["hsts"])
        app.on_response_prepare.append(security_headers_hook(kc["hsts"]))
        pipeline = Pipeline(
            self.hooks,
            ClientIP(kc["trusted_proxies"]),
            kc["max_body_bytes"],
            kc["read_timeout_seconds"],
        )
        add = app.router.add_route
        for route in self.routes:
            handler = RouteHandler(route, self.records.get(route.plugin), pipeline)
            add(route.method, route.path, chain(handler.handle, layers))
        for prefix, directory in static_directories().items():
            add("GET", prefix + "/{path:.+}", chain(StaticFiles(directory), layers))
        if kc["cors_origins"]:
            cors = Cors(kc["cors_origins"])
            add("OPTIONS", "/{tail:.*}", chain(cors.preflight, layers))
            app.on_response_prepare.append(cors.headers)
        add("*", CATCH_ALL, chain(Unmatched(self.routes), layers))
        app.cleanup_ctx.append(self._lifespan)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = build_openapi(self.routes, self.tools.all())
        return self._openapi

    # -- running ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        self.bus_started = True
        for name in self.order:
            rec = self.records[name]
            if rec.state is not PluginState.INITIALIZED or rec.instance is None:
                continue
            dep = self._blocked_by(rec, (PluginState.RUNNING,))
            if dep is not None:
                rec.fail("start", f"required plugin {dep!r} is not running")
                self.services.set_running(name, False)
                continue
            self.starting = name
            try:
                await rec.instance.start()
                rec.state = PluginState.RUNNING
            except Exception as exc:
                rec.fail("start", exc)
                self.services.set_running(name, False)
            finally:
                self.starting = ""
            await self._announce(rec)
        failed = [
            n for n in self.config.required if self.records[n].state is not PluginState.RUNNING
        ]
        if failed:
            await self.stop()
            raise StartupError(
                "; ".join(f"required plugin {n!r} failed: {self.records[n].error}" for n in failed)
            )
        for name in self.order:
            if self.records[name].state is PluginState.ERROR:
                for dep in dependents_of(name, self.records):
                    log.warning("plugin %r is not running because %r failed", dep, name)
        self.started = True
        # What start-up built (modules, schemas, plugin state) lives as long as the
        # process: out of the collector's way, a full collection no longer walks it
        # every few thousand requests.
        gc.freeze()
        await self.bus.publish(
            KERNEL_STARTED,
            {"plugins": {n: r.state.value for n, r in self.records.items()}},
            source="kernel",
        )

    async def stop(self) -> None:
        self.started = False
        for name in reversed(self.order):
            rec = self.records[name]
            if rec.state is not PluginState.RUNNING or rec.instance is None:
                continue
            try:
                await rec.instance.stop()
                rec.state = PluginState.STOPPED
            except Exception as exc:
                rec.fail("stop", exc)
            await self._announce(rec)
        if self.bus_started:  # stop may run twice: a failed start stops, then its caller
            self.bus_started = False
            await self.bus.stop()

    async def close(self) -> None:
        """Release what the plugins' ``initialize`` opened (the database), in reverse
        order, once everything is stopped."""
        for name in reversed(self.order):
            rec = self.records[name]
            instance, rec.instance = rec.instance, None
            if instance is None:
                continue
            self.services.set_running(name, False)
            try:
                await instance.close()
            except Exception:
                log.exception("close of plugin %r failed", name)
        self.metrics.detach()

    async def _announce(self, rec: PluginRecord) -> None:
        data = {"plugin": rec.name, "state": rec.state.value, "error": rec.error}
        await self.bus.publish(PLUGIN_STATE_CHANGED, data, source="kernel")

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        try:
            await self.start()
        except BaseException:
            # a start cut short (a signal while plugins start) stops what did start
            await self.stop()
            await self.close()
            raise
        yield
        await self.stop()
        await self.close()

    # -- readiness (sdk.plugin.ServerView) -----------------------------------------------

    def plugin_states(self) -> dict[str, PluginState]:
        return {n: r.state for n, r in self.records.items()}

    def not_ready_reasons(self) -> list[str]:
        """Why ``/readyz`` says 503; empty when the process is ready for traffic."""
        if self.draining:
            reasons = ["draining: the server is shutting down"]
        elif self.starting:
            return [f"starting: plugin {self.starting!r} is starting"]
        elif not self.started:
            return ["starting: plugins are not all started"]
        else:
            reasons = []
        for name, rec in self.records.items():
            if rec.required and rec.state is not PluginState.RUNNING:
                reasons.append(f"required plugin {name!r} is {rec.state.value}")
            elif rec.state is PluginState.RUNNING and rec.instance is not None:
                why = rec.instance.not_ready()
                if why:
                    reasons.append(f"{name}: {why}")
        return reasons

    def begin_draining(self, delay: float) -> None:
        """SIGTERM: readiness off for good; the process that serves this kernel keeps
        answering requests for ``delay`` seconds (so load balancers move away) and then
        shuts it down gracefully."""
        if not self.draining:
            self.draining = True
            log.info("SIGTERM: not ready any more; shutting down in %g s", delay)

    async def _on_shutdown(self, app: web.Application) -> None:
        """Before in-flight requests drain: let plugins close long-lived connections."""
        self.draining = True
        for name in reversed(self.order):
            rec = self.records[name]
            if rec.state is PluginState.RUNNING and rec.instance is not None:
                try:
                    await rec.instance.drain()
                except Exception:
                    log.exception("drain of plugin %r failed", name)


class Cors:
    """``[kernel] cors_origins``: preflight for any path, and the answer's headers."""

    def __init__(self, allowed: list[str]) -> None:
        self.allowed = allowed

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-ID",
                "Access-Control-Max-Age": "600",
            },
        )

    async def headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin and ("*" in self.allowed or origin in self.allowed):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Expose-Headers"] = (
                "X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
            )


def connection_args(kernel_config: dict[str, Any]) -> dict[str, Any]:
    """Per-connection settings of the HTTP server (``RequestHandler`` arguments)."""
    read_timeout = float(kernel_config["read_timeout_seconds"])
    # aiohttp's keep-alive timer also runs while a request's headers trickle in, so it is
    # the header read timeout (and the idle timeout between requests); after an early
    # answer (408, 413) the rest of a body is drained no longer
    return {"keepalive_timeout": read_timeout, "lingering_time": min(10.0, read_timeout)}


class _PluginServices(Services):
    """The service registry as one plugin sees it: what it provides carries its name."""

    def __init__(self, shared: Services, plugin: str) -> None:
        self._shared = shared
        self._plugin = plugin

    def provide(self, name: str, obj: Any, *, plugin: str = "") -> None:
        self._shared.provide(name, obj, plugin=plugin or self._plugin)

    def get(self, name: str) -> Any:
        return self._shared.get(name)

    def set_running(self, plugin: str, running: bool) -> None:
        raise PermissionError("only the kernel changes plugin states")


def _new_style(fn: Any) -> Any:
    """aiohttp calls a function without its ``@web.middleware`` mark the old way."""
    if getattr(fn, "__middleware_version__", None) == 1:
        return fn

    @web.middleware
    async def call(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await fn(request, handler)
        return response

    return call


def _slug(route: Route) -> str:
    return route.method.lower() + re.sub(r"[^a-zA-Z0-9]+", "_", route.path).rstrip("_")


async def _maybe(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def build_kernel(
    config: LoadedConfig, *, extra_plugins: dict[str, type[Plugin]] | None = None
) -> tuple[Kernel, web.Application]:
    # Process-wide: the blocking work plugins hand to threads (embedding, DuckDB) begins
    # with the thread taking the interpreter lock, which the event loop holds while it
    # runs; with Python's 5 ms a chat turn's embedding waited 1-2 ms behind the loop.
    sys.setswitchinterval(config.kernel["thread_switch_ms"] / 1000)
    kernel = Kernel(config, extra_plugins=extra_plugins)
    await kernel.load()
    return kernel, kernel.build_app()
