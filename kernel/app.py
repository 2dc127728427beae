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
import contextlib
import gc
import json
import logging
import re
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from sdk import services as service_names
from sdk.cli import CliCommand
from sdk.errors import NotFound, Problem, ValidationFailed
from sdk.events import KERNEL_STARTED, PLUGIN_STATE_CHANGED
from sdk.hooks import HookSpecs
from sdk.llm import check_provider_classes
from sdk.net import ClientIP
from sdk.plugin import Plugin, PluginContext, PluginEvent, PluginInfo, PluginState
from sdk.routes import CATCH_ALL, Route
from sdk.schema import schema_problems
from sdk.services import Services

from . import __version__
from .bus import MemoryBus, PluginBus, make_bus
from .config import ConfigError, LoadedConfig, validate_plugin_config
from .http import HSTS_KEY, LiveRouter, Pipeline, RouteHandler, security_headers_hook
from .metrics import MetricsRegistry
from .openapi import build_openapi
from .plugins import (
    CONTRIBUTING,
    Hooks,
    PluginRecord,
    StartupError,
    dependents_of,
    discover,
    installed_plugins,
    start_order,
)
from .routes import KernelRoutes, PluginsView, StaticFiles, static_directories
from .tools import ToolRegistry

log = logging.getLogger("llmmultichat.kernel")
HOOK_NAMES = tuple(n for n in vars(HookSpecs) if not n.startswith("_"))
IN_FORCE = "plugins-in-force.json"  # in data_dir: what the server there runs now


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
        self.tools = ToolRegistry(self.records, self.record)
        self.services = Services()
        self.metrics = MetricsRegistry()
        self.bus: MemoryBus = make_bus(self.kernel_config["bus"])
        self.kernel_routes: list[Route] = []
        self.llm_types: dict[str, str] = {}  # provider type -> the plugin that registered it
        self.overridden: dict[str, dict[str, Any]] = {}  # run-time changes applied at start
        self.router: LiveRouter | None = None
        self._installed: dict[str, tuple[str, type[Plugin] | None]] | None = None  # not enabled
        self.extra_handlers: dict[tuple[str, str], Any] = {}  # static files, CORS preflight
        self._openapi: dict[str, Any] | None = None
        self.started = False  # every plugin has had its start; cleared again by stop
        self.starting = ""  # the plugin whose start() runs now (for /readyz)
        self.bus_started = False
        self.draining = False  # shutting down: readiness is off for good
        self.events: dict[str, deque[PluginEvent]] = {}  # each plugin's newest first
        self.changing = asyncio.Lock()  # one run-time change at a time

    version = __version__

    @property
    def routes(self) -> list[Route]:
        """The kernel's routes and those of every enabled plugin."""
        plugin_routes = (r for n in self.order for r in self.records[n].routes)
        return [*self.kernel_routes, *plugin_routes]

    @property
    def cli_commands(self) -> list[CliCommand]:
        return [c for n in self.order for c in self.records[n].cli_commands]

    # -- assembly ---------------------------------------------------------------------

    async def load(self, until: str = "initialized", plugin: str = "") -> None:
        """Discover, order and validate, then prepare and initialize every plugin and
        collect contributions; raises StartupError or ConfigError for what must stop the
        server. The changes made at run time (``plugin_overrides``, which the plugin
        administration keeps in the database) apply over ``plugins.toml`` before the
        plugins they concern initialize. ``until="prepared"``: only ``plugin`` (and what it
        requires) initialize; the others are only prepared (``llmmultichat db migrate``)."""
        self.resolve()
        self.kernel_routes = KernelRoutes(self.plugins_view(), self.openapi, self).routes()
        try:
            if until != "prepared":
                await self._apply_stored_overrides()
            keep = self._requirements_of(plugin) if until == "prepared" else set(self.order)
            for name in self.order:
                rec = self.records[name]
                if rec.state is not PluginState.UNINITIALIZED:
                    continue
                if name in keep:
                    await self._initialize(rec)
                else:
                    await self._prepare(rec)
            self._check_required(keep)
            problems = [p for n in self.order for p in await self._collect(self.records[n])]
            if problems:
                raise StartupError("; ".join(problems))
        except BaseException:
            await self.close()
            raise

    async def _apply_stored_overrides(self) -> None:
        """Initialize the plugins that keep run-time changes (and what they require), ask
        them (``plugin_overrides``) and fold the answers into the configuration."""
        keepers = [n for n in self.order if _offers(self.records[n], "plugin_overrides")]
        if not keepers:
            return
        boot = set().union(*(self._requirements_of(n) for n in keepers))
        for name in self.order:
            if name in boot:
                await self._initialize(self.records[name])
        changed = False
        for answer in await self.hooks.call("plugin_overrides"):
            for name, change in (answer or {}).items():
                if name in boot:
                    continue  # what keeps the overrides is configured in plugins.toml only
                self.overridden[name] = change
                keys = change.get("config")
                table = {**self.config.base_table(name), **keys} if keys else None
                changed |= self.config.override(name, change.get("enabled"), table)
        if changed:
            try:
                self.resolve()
            except (ConfigError, StartupError) as exc:
                # a stored change that no longer fits (a plugin uninstalled since): say so
                # and start on plugins.toml alone rather than not at all
                log.error("run-time plugin changes not applied: %s", exc)
                self.config.drop_overrides()
                self.overridden.clear()
                self.resolve()

    def resolve(self) -> None:
        """Discover and order the enabled plugins and validate their configs (nothing is
        opened or initialized); raises StartupError or ConfigError. Records already past
        discovery are kept."""
        enabled = self.config.enabled
        for name in [n for n in self.records if n not in enabled]:
            if self.records[name].state is PluginState.UNINITIALIZED:
                del self.records[name]
        fresh = [n for n in enabled if n not in self.records]
        self.records.update(discover(fresh, self.extra_plugins))
        for name in self.config.required:
            self.records[name].required = True
        self.order = start_order(self.records)
        problems: list[str] = []
        for name in self.order:
            rec = self.records[name]
            if rec.cls is None or rec.state is not PluginState.UNINITIALIZED:
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
                log.debug("[plugins.%s] configures a plugin that is not enabled", key)
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
        with the reason. A server on this data_dir that switched plugins at run time
        left the list it runs (``IN_FORCE``): that list counts, unless plugins.toml is
        newer."""
        enabled = self._in_force() or self.config.enabled
        self.records.update(discover(enabled, self.extra_plugins))
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
        if rec.cls is None or rec.state is not PluginState.UNINITIALIZED:
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

    async def _collect(self, rec: PluginRecord) -> list[str]:
        """The routes, tools, middleware and CLI commands of one initialized plugin;
        returns the problems that must stop a server starting (a route declared twice)."""
        if rec.state is not PluginState.INITIALIZED:
            return []
        name, problems = rec.name, []
        seen = {r.key: r.plugin for r in self.routes}
        op_ids = {r.operation_id for r in self.routes}
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
            for tool in await self._contribution("register_tools", name) or []:
                self.tools.add(name, tool)
                rec.tools.append(tool)
            for mw in await self._contribution("register_middleware", name) or []:
                mw.plugin = name
                rec.middleware.append(mw)
            for cmd in await self._contribution("register_cli_commands", name) or []:
                cmd.plugin = name
                rec.cli_commands.append(cmd)
            check_provider_classes(
                name, await self._contribution("register_llm_providers", name), self.llm_types
            )
        except Exception as exc:
            rec.fail("register", exc)
        return problems

    async def _contribution(self, hook: str, plugin: str) -> Any:
        """One initialized plugin's answer to a ``register_*`` hook (None if it has none)."""
        impls = dict(self.hooks.implementations(hook, states=[PluginState.INITIALIZED]))
        fn = impls.get(plugin)
        return (await _maybe(fn())) if fn else None

    def plugins_view(self) -> PluginsView:
        return PluginsView(self.records, self.hooks, self.tools, self.bus, self.config.required)

    def build_app(self) -> web.Application:
        """The request path, built from what is enabled (and rebuilt by ``refresh`` when
        that changes): each route's handler inside the enabled plugins' middleware
        (outermost first) and the kernel's own layer. No aiohttp middleware runs: a
        request pays for exactly the layers that are enabled."""
        kc = self.kernel_config
        app = web.Application(
            client_max_size=kc["max_body_bytes"], handler_args=connection_args(kc)
        )
        app[HSTS_KEY] = bool(kc["hsts"])
        app.on_response_prepare.append(security_headers_hook(kc["hsts"]))
        self.pipeline = Pipeline(
            self.hooks,
            ClientIP(kc["trusted_proxies"]),
            kc["max_body_bytes"],
            kc["read_timeout_seconds"],
        )
        for prefix, directory in static_directories().items():
            self.extra_handlers["GET", prefix + "/{path:.+}"] = StaticFiles(directory)
        if kc["cors_origins"]:
            cors = Cors(kc["cors_origins"])
            self.extra_handlers["OPTIONS", CATCH_ALL] = cors.preflight
            app.on_response_prepare.append(cors.headers)
        self.router = LiveRouter(app, kc["max_header_bytes"])
        self.refresh()
        app.cleanup_ctx.append(self._lifespan)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def refresh(self) -> None:
        """Rebuild the request path and the OpenAPI document from what is enabled now."""
        self._openapi = None
        if self.router is None:
            return
        enabled = [self.records[n] for n in self.order if self.records[n].enabled]
        middleware = sorted((m for r in enabled for m in r.middleware), key=lambda m: -m.order)
        handlers: dict[tuple[str, str], Any] = {}
        for route in [*self.kernel_routes, *(r for rec in enabled for r in rec.routes)]:
            handler = RouteHandler(route, self.records.get(route.plugin), self.pipeline)
            handlers[route.method, route.path] = handler.handle
        handlers.update(self.extra_handlers)
        self.router.update(handlers, [_new_style(m.handler) for m in middleware])

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            routes = [
                r for r in self.routes if r.plugin == "kernel" or self.records[r.plugin].enabled
            ]
            self._openapi = build_openapi(routes, self.tools.all())
        return self._openapi

    # -- running ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        self.bus_started = True
        for name in self.order:
            await self._start(self.records[name])
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
        self._note_in_force()
        # What start-up built (modules, schemas, plugin state) lives as long as the
        # process: out of the collector's way, a full collection no longer walks it
        # every few thousand requests.
        gc.freeze()
        await self.bus.publish(
            KERNEL_STARTED,
            {"plugins": {n: r.state.value for n, r in self.records.items()}},
            source="kernel",
        )

    async def _start(self, rec: PluginRecord, actor_id: str | None = None) -> None:
        if rec.state is not PluginState.INITIALIZED or rec.instance is None:
            return
        dep = self._blocked_by(rec, (PluginState.RUNNING,))
        if dep is not None:
            rec.fail("start", f"required plugin {dep!r} is not running")
            self.services.set_running(rec.name, False)
            return
        self.starting = rec.name
        try:
            await rec.instance.start()
            rec.state = PluginState.RUNNING
        except Exception as exc:
            rec.fail("start", exc)
            self.services.set_running(rec.name, False)
        finally:
            self.starting = ""
        await self._announce(rec, actor_id)

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
            await self._close(self.records[name])
        self.metrics.detach()

    async def _close(self, rec: PluginRecord) -> None:
        instance, rec.instance = rec.instance, None
        if instance is None:
            return
        self.services.set_running(rec.name, False)
        try:
            await instance.close()
        except Exception:
            log.exception("close of plugin %r failed", rec.name)

    async def _announce(self, rec: PluginRecord, actor_id: str | None = None) -> None:
        failed = rec.state is PluginState.ERROR
        self.record(
            PluginEvent(
                rec.name,
                "state",
                "error" if failed else "ok",
                rec.state.value if rec.enabled else "DISABLED",
                rec.error if failed else "",
                actor_id=actor_id,
            )
        )
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

    # -- plugins at run time (sdk.plugin.ServerView) -------------------------------------

    def plugin_catalog(self) -> list[PluginInfo]:
        """Every installed plugin (as of start or the last ``rescan``) and every enabled
        one, by name."""
        if self._installed is None:
            self.rescan()
        assert self._installed is not None
        names = sorted(set(self._installed) | set(self.records) | set(self.extra_plugins))
        out = []
        for name in names:
            rec = self.records.get(name)
            dist, cls = self._installed.get(name, ("", None))
            cls = rec.cls if rec is not None and rec.cls else cls or self.extra_plugins.get(name)
            out.append(
                PluginInfo(
                    name=name,
                    version=cls.version if cls else "",
                    description=cls.description if cls else "",
                    distribution=(rec.distribution if rec else "") or dist,
                    enabled=rec is not None and rec.enabled,
                    state=rec.state if rec is not None else PluginState.UNINITIALIZED,
                    required=name in self.config.required,
                    requires=tuple(cls.requires) if cls else (),
                    config=rec.config if rec is not None else {},
                    schema=cls.config_schema if cls else {},
                    error=rec.error if rec is not None else "",
                    traceback=rec.traceback if rec is not None else "",
                    routes=list(rec.routes) if rec is not None else [],
                    tools=self.tools.of_plugin(name),
                    base_config=self.config.base_table(name),
                    hooks=_hooks_of(cls),
                )
            )
        return out

    def rescan(self) -> None:
        """Read the entry points afresh: distributions installed since start appear (their
        classes imported, nothing initialized)."""
        installed = [(n, d) for n, _, d in installed_plugins() if n not in self.records]
        found = discover([n for n, _ in installed])
        self._installed = {n: (d, found[n].cls) for n, d in installed}

    def _class_of(self, name: str) -> type[Plugin] | None:
        if name in self.extra_plugins:
            return self.extra_plugins[name]
        if self._installed is None or name not in self._installed:
            self.rescan()
        return (self._installed or {}).get(name, ("", None))[1]

    def check_plugin_config(self, name: str, table: dict[str, Any]) -> dict[str, Any]:
        """``table`` validated against the plugin's schema, defaults filled in; raises
        ConfigError naming each bad key."""
        rec = self.records.get(name)
        cls = rec.cls if rec is not None and rec.cls else self._class_of(name)
        if cls is None:
            raise NotFound(f"No plugin named {name!r} is installed.", code="PLUGIN_NOT_FOUND")
        try:
            return validate_plugin_config(name, table, cls.config_schema)
        except ConfigError as exc:
            prefix = f"plugins.{name}"
            errors = [
                {"path": "/config" + p.split(":")[0][len(prefix) :].replace(".", "/"), "message": p}
                for p in exc.problems
            ]
            raise ValidationFailed(exc.problems[0], errors=errors) from None

    async def apply_plugin(
        self, name: str, enabled: bool, table: dict[str, Any], actor_id: str | None = None
    ) -> None:
        """Bring one plugin to ``enabled`` with ``table`` as its configuration while
        serving: enable, disable, or restart it (with what requires it) on a new
        configuration; nothing happens when both are as they are. The caller checked the
        requirements (``sdk`` leaves that to the plugin administration)."""
        async with self.changing:
            rec = self.records.get(name)
            running = rec is not None and rec.enabled and rec.state is not PluginState.ERROR
            self.config.override(name, enabled, table)
            if not enabled:
                if rec is not None and rec.enabled:
                    await self._disable(rec, actor_id)
                    self._note_in_force()
                return
            config = self.check_plugin_config(name, table)
            if running and rec is not None and config == rec.config:
                return
            if running and rec is not None and rec.instance is not None:
                if await rec.instance.reconfigure(config):
                    rec.config = config
                    return
            dependents = self._dependents(name) if running else []
            for dep in reversed(dependents):
                await self._disable(self.records[dep], actor_id)
            if rec is not None and rec.enabled:
                await self._disable(rec, actor_id)
            await self._enable(name, actor_id)
            for dep in dependents:
                await self._enable(dep, actor_id)
            self._note_in_force()

    def _in_force(self) -> list[str] | None:
        note, source = self.data_dir / IN_FORCE, Path(self.config.source)
        with contextlib.suppress(OSError, ValueError, KeyError):
            if not source.exists() or note.stat().st_mtime >= source.stat().st_mtime:
                return [str(n) for n in json.loads(note.read_text())["enabled"]]
        return None

    def _note_in_force(self) -> None:
        """The plugins this server runs, for the command line (its plugins' commands)."""
        enabled = [n for n in self.order if self.records[n].enabled]
        with contextlib.suppress(OSError):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / IN_FORCE).write_text(json.dumps({"enabled": enabled}))

    def _dependents(self, name: str) -> list[str]:
        """The enabled plugins that need ``name``, directly or not, in start order."""
        found = {name}
        for n in self.order:
            rec = self.records[n]
            if rec.enabled and any(d in found for d in rec.requires):
                found.add(n)
        return [n for n in self.order if n in found and n != name]

    async def _enable(self, name: str, actor_id: str | None) -> None:
        fresh = discover([name], self.extra_plugins)[name]
        self.records[name] = rec = fresh
        if name in self.config.required:
            rec.required = True
        if name in self.order:
            self.order.remove(name)
        self.order.append(name)  # its requirements run already: start order holds
        if rec.cls is not None:
            try:
                rec.config = self.check_plugin_config(name, self.config.plugin_table(name))
            except Problem as exc:
                rec.fail("config", exc.detail)
        await self._initialize(rec)
        problems = await self._collect(rec)
        if problems:
            rec.fail("register", "; ".join(problems))
        if rec.state is PluginState.ERROR:
            await self._withdraw(rec)
        elif self.started:
            await self._start(rec, actor_id)
        self.refresh()
        if rec.state is PluginState.ERROR:
            await self._announce(rec, actor_id)

    async def _disable(self, rec: PluginRecord, actor_id: str | None) -> None:
        """New requests to its routes answer 404 at once; the plugin is told to drain,
        its requests in flight finish (up to the shutdown timeout), then it stops."""
        rec.enabled = False
        self.refresh()
        await self._withdraw(rec)
        if rec.state is PluginState.RUNNING and rec.instance is not None:
            try:
                await rec.instance.drain()
            except Exception:
                log.exception("drain of plugin %r failed", rec.name)
            deadline = time.monotonic() + float(self.kernel_config["shutdown_timeout_seconds"])
            while rec.active and time.monotonic() < deadline:  # noqa: ASYNC110 (a counter, no event)
                await asyncio.sleep(0.02)
            try:
                await rec.instance.stop()
            except Exception as exc:
                rec.fail("stop", exc)
        if rec.state is not PluginState.ERROR:
            rec.state = PluginState.STOPPED
        await self._close(rec)
        rec.routes, rec.middleware, rec.cli_commands = [], [], []
        self.refresh()
        await self._announce(rec, actor_id)

    async def _withdraw(self, rec: PluginRecord) -> None:
        """What others could still reach of the plugin: hooks, tools, event subscriptions,
        services and LLM provider types."""
        self.hooks.unregister(rec.name)
        self.tools.remove(rec.name)
        rec.tools = []
        self.bus.unsubscribe_plugin(rec.name)
        self.metrics.forget(rec.name)
        self.services.set_running(rec.name, False)
        for kind in [k for k, p in self.llm_types.items() if p == rec.name]:
            del self.llm_types[kind]

    # -- readiness and history (sdk.plugin.ServerView) -----------------------------------

    def plugin_states(self) -> dict[str, PluginState]:
        return {n: r.state for n, r in self.records.items() if r.enabled}

    def record(self, event: PluginEvent) -> None:
        """A plugin's history: kept here (the newest 100) and handed to ``plugin_event``."""
        self.events.setdefault(event.plugin, deque(maxlen=100)).appendleft(event)
        for plugin, fn in self.hooks.implementations("plugin_event"):
            try:
                fn(event=event)
            except Exception:
                log.exception("plugin_event hook of %r failed", plugin)

    def recent_failures(self, plugin: str, seconds: float = 300.0) -> list[PluginEvent]:
        since = time.time() - seconds
        events = self.events.get(plugin, ())
        return [e for e in events if e.outcome == "error" and not e.caller_error and e.at >= since]

    def not_ready_reasons(self) -> list[str]:
        """Why ``/readyz`` says 503; empty when the process is ready for traffic."""
        if self.draining:
            reasons = ["draining: the server is shutting down"]
        elif self.starting and not self.started:
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


def _hooks_of(cls: type[Plugin] | None) -> tuple[str, ...]:
    return tuple(h for h in HOOK_NAMES if cls is not None and callable(getattr(cls, h, None)))


def _offers(rec: PluginRecord, hook: str) -> bool:
    return rec.cls is not None and callable(getattr(rec.cls, hook, None))


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
