"""The kernel: builds the aiohttp application from the configuration and the plugins.

``build_kernel()`` is the factory ``llmmultichat serve`` runs: ``Kernel.load()``
discovers, orders, validates and initializes the plugins and collects their routes, and
``Kernel.build_app()`` mounts them; starting and stopping happen in the app's
``cleanup_ctx`` (start in dependency order, stop in reverse, only what started).
How a process serves the app while it starts, and drains it on SIGTERM, is
``kernel/server.py`` (one process) and ``kernel/workers.py`` (``--workers N``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from sdk.cli import CliCommand
from sdk.errors import ServiceUnavailable
from sdk.events import KERNEL_STARTED, PLUGIN_STATE_CHANGED
from sdk.llm import provider_class_problem
from sdk.plugin import Plugin, PluginContext, PluginState
from sdk.routes import Route
from sdk.services import Services
from sdk.tools import Tool

from .bus import MemoryBus, PluginBus, make_bus
from .compression import compression_middleware
from .config import ConfigError, LoadedConfig, schema_problems, validate_plugin_config
from .database import DatabaseError, open_database
from .http import ClientIP, RouteHandler, request_middleware, security_headers_hook
from .metrics import KernelMetrics, MetricsHub
from .migrations import migrate
from .observe import Observer, OpsRoutes
from .openapi import build_openapi
from .plugins import Hooks, PluginRecord, StartupError, dependents_of, discover, start_order
from .routes import KernelRoutes, static_routes
from .tools import ToolRegistry

log = logging.getLogger("llmmultichat.kernel")
DB_FILE = "llmmultichat.duckdb"


class Kernel:
    def __init__(
        self,
        config: LoadedConfig,
        *,
        extra_plugins: dict[str, type[Plugin]] | None = None,
    ) -> None:
        self.config = config
        self.kernel_config = config.kernel
        self.extra_plugins = extra_plugins or {}
        self.data_dir = Path(self.kernel_config["data_dir"]).resolve()
        self.max_body_bytes: int = self.kernel_config["max_body_bytes"]
        self.read_timeout: float = float(self.kernel_config["read_timeout_seconds"])
        self.client_ip = ClientIP(self.kernel_config["trusted_proxies"])
        self.records: dict[str, PluginRecord] = {}
        self.order: list[str] = []
        self.hooks = Hooks(self.records)
        self.tools = ToolRegistry(self.records)
        self.services = Services()
        self.bus: MemoryBus = make_bus(self.kernel_config["bus"])
        self.database = open_database(self.kernel_config["database"], self.data_dir, DB_FILE)
        self.routes: list[Route] = []
        self.cli_commands: list[CliCommand] = []
        self._openapi: dict[str, Any] | None = None
        self.metrics_hub = MetricsHub()
        self.kernel_metrics = KernelMetrics(self.metrics_hub)
        self.started = False  # every plugin has had its start; cleared again by stop
        self.starting = ""  # the plugin whose start() runs now (for /readyz)
        self.bus_started = False
        self.draining = False  # shutting down: readiness is off for good

    # -- assembly ---------------------------------------------------------------------

    async def load(self) -> None:
        """Discover, order, validate configs, migrate and initialize; raises StartupError
        or ConfigError for what must stop the server."""
        await self.prepare()
        await self.migrate()
        for name in self.order:
            await self._initialize(self.records[name])
        self._check_required()
        await self._collect()

    async def prepare(self) -> None:
        """``resolve``, then open the database (enough for ``llmmultichat db migrate``)."""
        self.resolve()
        try:
            await self.database.open()
        except DatabaseError as exc:
            raise StartupError(str(exc)) from exc

    def resolve(self) -> None:
        """Discover and order the enabled plugins and validate their configs (nothing is
        opened or initialized); raises StartupError or ConfigError."""
        enabled = self.config.enabled
        self.records.update(discover(enabled, self.extra_plugins))
        for name in self.config.required:
            self.records[name].required = True
        self.order = start_order({n: r for n, r in self.records.items()})
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
        extra_tables = [
            k
            for k, v in self.config.raw["plugins"].items()
            if isinstance(v, dict) and k not in self.records
        ]
        for key in extra_tables:
            log.warning("[plugins.%s] configures a plugin that is not enabled", key)
        if problems:
            raise ConfigError(problems, self.config.source)

    def process_local_settings(self) -> list[str]:
        """Settings that keep shared state inside this process (after ``resolve``): with
        any of them, several processes would not act as one server."""
        found = []
        if not str((self.kernel_config.get("database") or {}).get("url") or ""):
            found.append(
                '[kernel.database] url (the embedded DuckDB file is one process\'s; use "postgresql://...")'
            )
        if (self.kernel_config.get("bus") or {}).get("backend", "memory") != "redis":
            found.append('[kernel.bus] backend = "redis"')
        for name in self.order:
            rec = self.records[name]
            if rec.cls is not None and rec.state is not PluginState.ERROR:
                found += rec.cls.process_local_settings(rec.config, self.kernel_config)
        return found

    async def migrate(self) -> dict[str, list[int]]:
        """Apply every loaded plugin's missing schema migrations (a plugin whose step
        fails goes to ERROR); return the versions applied, by plugin."""
        plans = [
            (name, rec.cls.migrations)
            for name in self.order
            if (rec := self.records[name]).cls is not None and rec.state is not PluginState.ERROR
        ]
        report = await migrate(self.database, plans)
        for name, problem in report.failed.items():
            self.records[name].fail("migrate", problem)
        return report.applied

    async def load_cli_commands(self) -> list[CliCommand]:
        """The enabled plugins' subcommands, found without opening the database or
        initializing anything (a server may hold the data_dir). A plugin that cannot
        offer them is left in ERROR with the reason."""
        self.records.update(discover(self.config.enabled, self.extra_plugins))
        commands: list[CliCommand] = []
        for name, rec in self.records.items():
            if rec.cls is None or not hasattr(rec.cls, "register_cli_commands"):
                continue
            try:
                rec.config = validate_plugin_config(
                    name, self.config.plugin_table(name), rec.cls.config_schema
                )
                instance = rec.cls(self._context(rec))
                fn = getattr(instance, "register_cli_commands", None)
                found: list[CliCommand] = (await _maybe(fn())) if fn else []
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
            database=self.database,
            metrics=self.metrics_hub.for_plugin(rec.name),
        )

    def _blocked_by(self, rec: PluginRecord, ok_states: set[PluginState]) -> str | None:
        for dep in rec.requires:
            if self.records[dep].state not in ok_states:
                return dep
        return None

    async def _initialize(self, rec: PluginRecord) -> None:
        if rec.cls is None or rec.state is PluginState.ERROR:
            return
        dep = self._blocked_by(rec, {PluginState.INITIALIZED})
        if dep is not None:
            rec.fail("initialize", f"required plugin {dep!r} failed")
            return
        try:
            rec.instance = rec.cls(self._context(rec))
            self.hooks.register(rec.name, rec.instance)
            await rec.instance.initialize()
            rec.state = PluginState.INITIALIZED
        except Exception as exc:
            rec.fail("initialize", exc)

    def _check_required(self) -> None:
        for name in self.config.required:
            rec = self.records[name]
            if rec.state is PluginState.ERROR:
                raise StartupError(f"required plugin {name!r} failed: {rec.error}")

    async def _collect(self) -> None:
        """Routes, tools and CLI commands of every initialized plugin."""
        llm_types: dict[str, str] = {}  # provider type -> the plugin that registered it
        kernel_routes = KernelRoutes(self).routes() + OpsRoutes(self).routes()
        seen: dict[str, str] = {r.key: "kernel" for r in kernel_routes}
        self.routes = list(kernel_routes)
        problems = []
        op_ids: set[str] = set()
        for name in self.order:
            rec = self.records[name]
            if rec.state is not PluginState.INITIALIZED:
                continue
            try:
                routes: list[Route] = await self._contribution("register_routes", name)
                for route in routes or []:
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
                tools: list[Tool] = await self._contribution("register_tools", name)
                for tool in tools or []:
                    self.tools.add(name, tool)
                    rec.tools.append(tool)
                commands: list[CliCommand] = await self._contribution("register_cli_commands", name)
                for cmd in commands or []:
                    cmd.plugin = name
                    self.cli_commands.append(cmd)
                check_llm_providers(
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

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[Observer(self).middleware, compression_middleware, request_middleware],
            client_max_size=self.max_body_bytes,
            handler_args=connection_args(self.kernel_config),
        )
        app[KERNEL_KEY] = self
        app.on_response_prepare.append(security_headers_hook(self.kernel_config["hsts"]))
        for route in self.routes:
            app.router.add_route(route.method, route.path, RouteHandler(self, route).handle)
        static_routes(app)
        app.cleanup_ctx.append(self._lifespan)
        app.on_shutdown.append(self._on_shutdown)
        if self.kernel_config["cors_origins"]:
            app.router.add_route("OPTIONS", "/{tail:.*}", self._preflight)
            app.on_response_prepare.append(self._cors)
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
            dep = self._blocked_by(rec, {PluginState.RUNNING})
            if dep is not None:
                rec.fail("start", f"required plugin {dep!r} is not running")
                continue
            self.starting = name
            try:
                await rec.instance.start()
                rec.state = PluginState.RUNNING
                self.services.set_running(name, True)
            except Exception as exc:
                rec.fail("start", exc)
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
            rec = self.records[name]
            if rec.state is PluginState.ERROR:
                for dep in dependents_of(name, self.records):
                    log.warning("plugin %r is not running because %r failed", dep, name)
        self.started = True
        self.sync_plugin_metrics()
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
            self.services.set_running(name, False)
            try:
                await rec.instance.stop()
                rec.state = PluginState.STOPPED
            except Exception as exc:
                rec.fail("stop", exc)
            await self._announce(rec)
        self.sync_plugin_metrics()
        if self.bus_started:  # stop may run twice: a failed start stops, then its caller
            self.bus_started = False
            await self.bus.stop()

    async def _announce(self, rec: PluginRecord) -> None:
        await self.bus.publish(
            PLUGIN_STATE_CHANGED,
            {"plugin": rec.name, "state": rec.state.value, "error": rec.error},
            source="kernel",
        )

    async def close(self) -> None:
        """Release what ``load`` opened (the database), once everything is stopped."""
        await self.database.close()

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

    # -- readiness ----------------------------------------------------------------------

    def not_ready_reasons(self) -> list[str]:
        """Why ``/readyz`` says 503; empty when the process is ready for traffic."""
        reasons = []
        if self.draining:
            reasons.append("draining: the server is shutting down")
        elif self.starting:
            return [f"starting: plugin {self.starting!r} is starting"]
        elif not self.started:
            return ["starting: plugins are not all started"]
        for name in self.config.required:
            rec = self.records.get(name)
            if rec is not None and rec.state is not PluginState.RUNNING:
                reasons.append(f"required plugin {name!r} is {rec.state.value}")
        return reasons

    def sync_plugin_metrics(self) -> None:
        self.kernel_metrics.plugin_states((n, r.state) for n, r in self.records.items())
        self.kernel_metrics.ready.set(0 if self.not_ready_reasons() else 1)

    def begin_draining(self, delay: float) -> None:
        """SIGTERM: readiness off for good; the process that serves this kernel keeps
        answering requests for ``delay`` seconds (so load balancers move away) and then
        shuts it down gracefully."""
        if self.draining:
            return
        self.draining = True
        self.sync_plugin_metrics()
        log.info("SIGTERM: not ready any more; shutting down in %g s", delay)

    async def _on_shutdown(self, app: web.Application) -> None:
        """Before in-flight requests drain: let plugins close long-lived connections."""
        self.draining = True
        self.sync_plugin_metrics()
        for name in reversed(self.order):
            rec = self.records[name]
            if rec.state is PluginState.RUNNING and rec.instance is not None:
                try:
                    await rec.instance.drain()
                except Exception:
                    log.exception("drain of plugin %r failed", name)

    async def _preflight(self, request: web.Request) -> web.Response:
        """CORS preflight for any path; the origin check happens in ``_cors``."""
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-ID",
                "Access-Control-Max-Age": "600",
            },
        )

    async def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        allowed = self.kernel_config["cors_origins"]
        if origin and ("*" in allowed or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Expose-Headers"] = (
                "X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
            )


KERNEL_KEY: web.AppKey[Kernel] = web.AppKey("kernel", Kernel)


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
        raise ServiceUnavailable("only the kernel changes plugin states")


def check_llm_providers(plugin: str, classes: Any, registered: dict[str, str]) -> None:
    """What ``register_llm_providers`` returned must be a list of distinct provider
    classes; raises (failing that plugin) with a message naming it."""
    if classes is None:
        return
    if not isinstance(classes, list | tuple):
        raise TypeError(
            f"register_llm_providers of plugin {plugin!r} returned {type(classes).__name__}, "
            "not a list of sdk.LLMProvider subclasses"
        )
    for cls in classes:
        problem = provider_class_problem(cls)
        if problem:
            raise TypeError(f"register_llm_providers of plugin {plugin!r}: {problem}")
        owner = registered.setdefault(cls.type, plugin)
        if owner != plugin:
            raise ValueError(
                f"plugin {plugin!r} registers LLM provider type {cls.type!r}, "
                f"which plugin {owner!r} already registered"
            )


def _slug(route: Route) -> str:
    return route.method.lower() + re.sub(r"[^a-zA-Z0-9]+", "_", route.path).rstrip("_")


async def _maybe(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value


async def build_kernel(
    config: LoadedConfig,
    *,
    extra_plugins: dict[str, type[Plugin]] | None = None,
) -> tuple[Kernel, web.Application]:
    # Process-wide: the blocking work plugins hand to threads (embedding, DuckDB) begins
    # with the thread taking the interpreter lock, which the event loop holds while it
    # runs; with Python's 5 ms a chat turn's embedding waited 1-2 ms behind the loop.
    sys.setswitchinterval(config.kernel["thread_switch_ms"] / 1000)
    kernel = Kernel(config, extra_plugins=extra_plugins)
    try:
        await kernel.load()
    except BaseException:
        await kernel.database.close()
        raise
    return kernel, kernel.build_app()
