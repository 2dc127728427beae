"""The Plugin base class every plugin subclasses, and what the kernel hands it."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from .errors import ServiceUnavailable
from .metrics import Metrics, NullMetrics

if TYPE_CHECKING:
    from .database import Database, Migration
    from .events import EventBus
    from .hooks import HookCaller
    from .services import Services
    from .tools import ToolRegistry


class PluginState(enum.StrEnum):
    UNINITIALIZED = "UNINITIALIZED"
    INITIALIZED = "INITIALIZED"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


HealthStatus = Literal["ok", "degraded", "unavailable"]


@dataclass(slots=True)
class Health:
    """What a plugin says of itself in ``/health`` and ``/api/v1/plugins``.

    ``degraded``: serving, but part of it is off (a provider without its key, Redis away);
    ``unavailable``: running but unable to serve. ``checks`` names the parts.
    """

    status: HealthStatus = "ok"
    detail: str = ""
    checks: dict[str, Any] = field(default_factory=dict)


EventKind = Literal["tool", "state", "config", "llm"]


@dataclass(slots=True)
class PluginEvent:
    """One entry of a plugin's execution history (``GET /api/v1/admin/plugins/{name}/history``):
    a tool run, a state change, a configuration change, or a failed LLM provider call
    (``llm``). ``at`` is a UNIX time; ``actor_id`` the user who caused it, if any."""

    plugin: str
    kind: EventKind
    outcome: Literal["ok", "error"] = "ok"
    detail: str = ""
    error: str = ""
    duration_ms: float | None = None
    actor_id: str | None = None
    at: float = field(default_factory=time.time)
    # the caller's mistake (a 4xx), not the plugin's: history only, not /health
    caller_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "actor_id": self.actor_id,
            "detail": self.detail,
            "outcome": self.outcome,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


@dataclass(slots=True)
class PluginInfo:
    """One installed or enabled plugin as the kernel sees it (``ServerView.plugin_catalog``).
    ``config`` is the validated configuration in force (secrets not redacted: redact before
    showing it); ``base_config`` its table in ``plugins.toml``."""

    name: str
    version: str
    description: str
    distribution: str
    enabled: bool
    state: PluginState
    required: bool
    requires: tuple[str, ...]
    config: dict[str, Any]
    schema: dict[str, Any]
    error: str
    traceback: str
    routes: list[Any]
    tools: list[Any]
    base_config: dict[str, Any]
    hooks: tuple[str, ...] = ()  # the hooks its class implements


class ServerView(Protocol):
    """What the kernel tells a plugin about the server as a whole (``context.server``)."""

    @property
    def version(self) -> str:
        """The running version of LlmMultiChat."""

    def plugin_states(self) -> dict[str, PluginState]:
        """Every enabled plugin's lifecycle state, by name."""

    def not_ready_reasons(self) -> list[str]:
        """Why ``/readyz`` says 503 now (empty when ready)."""

    def record(self, event: PluginEvent) -> None:
        """Add ``event`` to its plugin's history; failures also show in ``/health`` for a
        while. Cheap and synchronous: call it from any code path."""

    def plugin_catalog(self) -> list[PluginInfo]:
        """Every installed plugin (entry points read afresh) and every enabled one."""

    def rescan(self) -> None:
        """Read the plugins' entry points afresh (distributions installed since start)."""

    def check_plugin_config(self, name: str, table: dict[str, Any]) -> dict[str, Any]:
        """``table`` validated against plugin ``name``'s schema with defaults filled in;
        raises ``ValidationFailed`` (422) naming each bad key."""

    async def apply_plugin(
        self, name: str, enabled: bool, table: dict[str, Any], actor_id: str | None = None
    ) -> None:
        """Enable, disable or reconfigure plugin ``name`` in this process while serving
        (the plugin administration checks requirements and keeps the change)."""

    def recent_failures(self, plugin: str, seconds: float = 300.0) -> list[PluginEvent]:
        """``plugin``'s own failures (not callers' mistakes) of the last ``seconds``, newest
        first, in this process."""


class _NoServer:
    version = ""

    def plugin_states(self) -> dict[str, PluginState]:
        return {}

    def not_ready_reasons(self) -> list[str]:
        return []

    def record(self, event: PluginEvent) -> None:
        return None

    def recent_failures(self, plugin: str, seconds: float = 300.0) -> list[PluginEvent]:
        return []

    def plugin_catalog(self) -> list[PluginInfo]:
        return []

    def rescan(self) -> None:
        return None

    def check_plugin_config(self, name: str, table: dict[str, Any]) -> dict[str, Any]:
        return dict(table)

    async def apply_plugin(
        self, name: str, enabled: bool, table: dict[str, Any], actor_id: str | None = None
    ) -> None:
        raise ServiceUnavailable("no server to change plugins in")


@dataclass(slots=True)
class PluginContext:
    """Everything the kernel offers a plugin. Plugins never import the kernel."""

    name: str
    config: dict[str, Any]
    kernel_config: dict[str, Any]
    data_dir: Path
    logger: logging.Logger
    bus: EventBus
    hooks: HookCaller
    tools: ToolRegistry
    services: Services
    # Prometheus metrics of this plugin (``sdk.metrics``); names get ``llmmc_<plugin>_``.
    metrics: Metrics = field(default_factory=NullMetrics)
    server: ServerView = field(default_factory=_NoServer)

    @property
    def database(self) -> Database:
        """The database the storage plugin opened (``sdk.Database``). A plugin that uses it
        lists ``"storage"`` in its ``requires``."""
        from .services import DATABASE

        db: Database | None = self.services.get(DATABASE)
        if db is None:
            raise ServiceUnavailable(
                f"plugin {self.name!r} needs a database and no plugin provides one: "
                'add "storage" to [plugins] enabled',
                code="DATABASE_UNAVAILABLE",
            )
        return db


class Plugin:
    """Subclass this, set the class attributes, and declare an entry point in the group
    ``llmmultichat.plugins`` (``name = "package.module:MyPlugin"``).

    Lifecycle: ``initialize`` (open stores, publish services; no network needed),
    ``start`` (connect, start background tasks; the server is about to accept requests),
    ``stop`` (release everything ``start`` took). Nothing may happen at import time.
    Hooks are methods decorated with ``@hookimpl``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    # Plugins that must be RUNNING before this one starts; if one fails, this one is not started.
    requires: ClassVar[tuple[str, ...]] = ()
    # Plugins this one works with when they are enabled: ordered before it, but not needed.
    optional: ClassVar[tuple[str, ...]] = ()
    # JSON Schema of this plugin's ``[plugins.<name>]`` table. ``default`` values are filled
    # in; keys marked ``"x-secret": true`` (and any named like a password, key or secret)
    # are redacted wherever the config is shown.
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    # This plugin's schema, as ordered steps (``sdk.Migration``, versions 1, 2, ...): the
    # kernel applies the missing ones before ``initialize`` (docs/database.md).
    migrations: ClassVar[Sequence[Migration]] = ()

    def __init__(self, context: PluginContext) -> None:
        self.context = context
        self.config = context.config
        self.log = context.logger

    async def initialize(self) -> None:
        """Prepare: create tables, publish services. Called once, before routes are mounted."""

    async def start(self) -> None:
        """Begin serving: connect to services, start background tasks."""

    async def drain(self) -> None:
        """The server is shutting down: close long-lived connections (WebSockets, SSE
        streams) so in-flight requests can finish. Called before ``stop``."""

    async def stop(self) -> None:
        """Release what start took. Called in reverse start order, after in-flight requests."""

    async def close(self) -> None:
        """Release what ``initialize`` opened. Called once at the very end, in reverse
        order, after ``stop`` (or instead of it when the plugin never started)."""

    async def reconfigure(self, config: dict[str, Any]) -> bool:
        """A new configuration (validated) while running: return True when this plugin
        applied it itself; the default False has the kernel restart the plugin (and what
        requires it) with it."""
        return False

    async def health(self) -> Health:
        """Report this plugin's health; the default says it is fine."""
        return Health()

    def not_ready(self) -> str | None:
        """Why this running plugin cannot serve yet (a model still loading), or None.
        ``/readyz`` answers 503 with the reason meanwhile; keep it cheap."""
        return None

    def shared_redis_url(self, own: str = "") -> str:
        """Where to keep state that every server instance must share: the plugin's own
        ``redis_url`` setting when given, else the bus's Redis when ``[kernel.bus]``
        runs on Redis, else "" (keep it in process). ``"none"`` opts out of Redis."""
        return shared_redis_url(own, self.context.kernel_config)

    @classmethod
    def process_local_settings(
        cls, config: dict[str, Any], kernel_config: dict[str, Any]
    ) -> list[str]:
        """The settings (as ``[plugins.<name>] key = value`` text) with which this plugin
        keeps state that other server processes would need, given its validated config;
        ``serve --workers N`` refuses to start while any plugin names one. Default: none."""
        return []


def unless_shared_redis(
    config: dict[str, Any], kernel_config: dict[str, Any], setting: str
) -> list[str]:
    """For ``process_local_settings``: ``[setting]`` when the plugin's ``redis_url``
    resolves to no Redis (its state would stay in the process), else ``[]``."""
    return [] if shared_redis_url(str(config.get("redis_url") or ""), kernel_config) else [setting]


def shared_redis_url(own: str, kernel_config: dict[str, Any]) -> str:
    """``Plugin.shared_redis_url`` for code that has the configs but no plugin instance."""
    if own == "none":
        return ""
    if own:
        return own
    bus = kernel_config.get("bus") or {}
    if bus.get("backend") == "redis":
        return str(bus.get("redis_url") or "")
    return ""
