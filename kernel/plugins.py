"""Plugin discovery, ordering, lifecycle and hook calls.

Discovery is stevedore over the ``llmmultichat.plugins`` entry-point group, importing
only what ``plugins.enabled`` names. Order is a topological sort of ``requires`` (and
``optional``, when enabled). Every phase is isolated per plugin: a failure puts that
plugin, and the plugins that require it, in ERROR with the error kept, and the rest go on.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import traceback
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

from sdk import ENTRY_POINT_GROUP
from sdk.errors import Problem, ServiceUnavailable
from sdk.hooks import PROJECT, HookSpecs
from sdk.plugin import Plugin, PluginState

log = logging.getLogger("llmmultichat.plugins")

# Hooks whose answers are decisions: an implementation that crashes must not let a
# request through, so the kernel refuses (503) instead of skipping it.
DECISION_HOOKS = frozenset({"authenticate", "permission_allowed", "before_request"})


CONTRIBUTING = (PluginState.INITIALIZED, PluginState.RUNNING)
RUNNING = (PluginState.RUNNING,)


class StartupError(Exception):
    """The server cannot start (bad dependency graph, required plugin failed, ...)."""


class PluginRecord:
    """One enabled plugin: its class, instance, state and contributions. Every state
    change bumps ``generation``, so per-request lookups can keep answers until then."""

    generation = 0  # of all records: bumped on any state change

    def __init__(self, name: str, cls: type[Plugin] | None = None) -> None:
        self.name = name
        self.cls = cls
        self.instance: Plugin | None = None
        self._state = PluginState.UNINITIALIZED
        self.error = ""
        self.traceback = ""
        self.required = False
        self.distribution = ""
        self.routes: list[Any] = []
        self.tools: list[Any] = []
        self.middleware: list[Any] = []
        self.cli_commands: list[Any] = []
        self.config: dict[str, Any] = {}
        self.enabled = True  # False once disabled at run time
        self.active = 0  # requests its routes are serving now

    @property
    def state(self) -> PluginState:
        return self._state

    @state.setter
    def state(self, value: PluginState) -> None:
        self._state = value
        PluginRecord.generation += 1

    @property
    def version(self) -> str:
        return self.cls.version if self.cls else ""

    @property
    def requires(self) -> tuple[str, ...]:
        return tuple(self.cls.requires) if self.cls else ()

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(self.cls.optional) if self.cls else ()

    def fail(self, phase: str, exc: BaseException | str) -> None:
        self.state = PluginState.ERROR
        if isinstance(exc, BaseException):
            self.error = f"{phase} failed: {type(exc).__name__}: {exc}"
            self.traceback = "".join(traceback.format_exception(exc))
        else:
            self.error = f"{phase} failed: {exc}"
        log.error("plugin %r: %s", self.name, self.error)


def discover(
    names: list[str], extra: dict[str, type[Plugin]] | None = None
) -> dict[str, PluginRecord]:
    """Load the classes of the enabled plugins, in config order."""
    extra = extra or {}
    records = {name: PluginRecord(name=name) for name in names}
    from_entry_points = [n for n in names if n not in extra]
    failures: dict[str, BaseException] = {}

    def on_failure(_manager: Any, entrypoint: Any, exc: BaseException) -> None:
        failures[entrypoint.name] = exc

    if from_entry_points:
        importlib.invalidate_caches()
        manager = _FreshEntryPoints(
            ENTRY_POINT_GROUP,
            names=from_entry_points,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
            name_order=True,
            warn_on_missing_entrypoint=False,
        )
        dists = {name: dist for name, _, dist in installed_plugins()}
        for ext in manager.extensions:
            records[ext.name].cls = ext.plugin
            records[ext.name].distribution = dists.get(ext.name, "")
    for name in names:
        rec = records[name]
        if name in extra:
            rec.cls = extra[name]
            rec.distribution = "(test instance)"
        if name in failures:
            rec.fail("import", failures[name])
        elif rec.cls is None:
            rec.fail(
                "discovery",
                f"no plugin named {name!r} is installed (entry-point group {ENTRY_POINT_GROUP!r})",
            )
        elif not (isinstance(rec.cls, type) and issubclass(rec.cls, Plugin)):
            rec.fail("import", f"{rec.cls!r} is not a subclass of sdk.Plugin")
            rec.cls = None
    return records


class _FreshEntryPoints(NamedExtensionManager):  # type: ignore[type-arg]
    """stevedore's manager, reading the entry points afresh each time it is built: stevedore
    keeps per-process copies that never expire, and a distribution installed since this
    process started (a plugin added with pip) must be found too."""

    def list_entry_points(self) -> list[Any]:
        return list(entry_points(group=self.namespace))


def installed_plugins() -> list[tuple[str, str, str]]:
    """(name, value, distribution) of every entry point in the group, imported or not."""
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        out.append((ep.name, ep.value, dist.name if dist else ""))
    return sorted(out)


def start_order(records: dict[str, PluginRecord]) -> list[str]:
    """Topological order of ``requires``/``optional``; raises StartupError on a missing
    requirement or a cycle, naming the plugins."""
    enabled = set(records)
    problems = []
    for rec in records.values():
        for dep in rec.requires:
            if dep not in enabled:
                problems.append(f"plugin {rec.name!r} requires {dep!r}, which is not enabled")
    if problems:
        raise StartupError("; ".join(problems))
    deps = {
        name: [d for d in (*rec.requires, *rec.optional) if d in enabled and d != name]
        for name, rec in records.items()
    }
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise StartupError("plugin dependency cycle: " + " -> ".join(cycle))
        state[name] = 1
        for dep in deps[name]:
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in records:  # config order among independent plugins
        visit(name, [])
    return order


def dependents_of(name: str, records: dict[str, PluginRecord]) -> list[str]:
    return [r.name for r in records.values() if name in r.requires]


class Hooks:
    """pluggy's registry, called one implementation at a time (``sdk.hooks.HookCaller``).

    pluggy is synchronous and aborts a whole call when one implementation raises, so
    the kernel walks the implementations itself: async results are awaited, and a
    failing plugin is logged by name while the others still answer. ``call`` asks
    initialized and running plugins (contributions are collected before plugins start);
    ``first`` and ``has`` are per-request and ask running plugins only.
    """

    def __init__(self, records: dict[str, PluginRecord]) -> None:
        self.records = records
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(HookSpecs)
        self._impls: dict[str, list[tuple[str, Any]]] = {}
        # (hook, states) -> (generation, implementations of plugins in those states)
        self._live: dict[tuple[str, tuple[PluginState, ...]], tuple[int, list[Any]]] = {}

    def register(self, name: str, instance: Plugin) -> None:
        self.pm.register(instance, name=name)
        self._impls.clear()
        self._live.clear()

    def unregister(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self._impls.clear()
        self._live.clear()

    def implementations(
        self, hook: str, *, states: Iterable[PluginState] | None = None
    ) -> list[tuple[str, Any]]:
        wanted = tuple(states) if states is not None else RUNNING
        key = (hook, wanted)
        live = self._live.get(key)
        if live is not None and live[0] == PluginRecord.generation:
            return live[1]
        impls = self._impls.get(hook)
        if impls is None:
            caller = getattr(self.pm.hook, hook)
            impls = [(i.plugin_name, i.function) for i in reversed(caller.get_hookimpls())]
            self._impls[hook] = impls
        records = self.records
        found = [(n, f) for n, f in impls if n in records and records[n].state in wanted]
        self._live[key] = (PluginRecord.generation, found)
        return found

    def has(self, hook: str) -> bool:
        """Whether a running plugin implements ``hook`` (asked on every request)."""
        return bool(self.implementations(hook))

    async def call(self, name: str, **kwargs: Any) -> list[Any]:
        return [r for _, r in await self.results(name, **kwargs)]

    async def results(self, name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        out = []
        for plugin, fn in self.implementations(name, states=CONTRIBUTING):
            result = await self._one(name, plugin, fn, kwargs)
            if result is not None:
                out.append((plugin, result))
        return out

    async def call_running(self, name: str, **kwargs: Any) -> list[Any]:
        """``call`` for a per-request hook: running plugins only."""
        out = []
        for plugin, fn in self.implementations(name):
            result = await self._one(name, plugin, fn, kwargs)
            if result is not None:
                out.append(result)
        return out

    async def first(self, name: str, **kwargs: Any) -> Any:
        for plugin, fn in self.implementations(name):
            result = await self._one(name, plugin, fn, kwargs)
            if result is not None:
                return result
        return None

    async def _one(self, hook: str, plugin: str, fn: Any, kwargs: dict[str, Any]) -> Any:
        try:
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Problem:
            raise
        except Exception as exc:
            log.exception("hook %s of plugin %r failed", hook, plugin)
            if hook in DECISION_HOOKS:
                raise ServiceUnavailable(
                    f"plugin {plugin!r} could not decide on this request",
                    code="PLUGIN_FAILED",
                ) from exc
            return None
