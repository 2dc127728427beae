"""The plugin administration: what the routes, the command line and other instances go
through. A change is checked (requirements, locks, the plugin's schema) before anything
changes, stored, applied here, and announced on the bus; every instance also compares the
stored overrides with what it runs once a second, so one that missed the event catches up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sdk import PluginEvent, PluginInfo, PluginState
from sdk.errors import Conflict, NotFound, ValidationFailed
from sdk.plugin import ServerView
from sdk.schema import REDACTED, redact

from .store import AdminStore, Override

CHANGED = "plugins.changed"  # {name}: a run-time change was stored; every instance syncs
# What keeps the overrides is configured in plugins.toml only.
SELF = "pluginadmin"
BOOT = frozenset({SELF, "storage"})

log = logging.getLogger("llmmultichat.plugin.pluginadmin")


class PluginAdmin:
    def __init__(
        self, server: ServerView, store: AdminStore, announce: Callable[[str], Awaitable[None]]
    ) -> None:
        self.server = server
        self.store = store
        self.announce = announce  # tells the other instances (the bus)
        self.lock = asyncio.Lock()  # one sync or change at a time in this process
        self.overrides: dict[str, Override] = {}
        self.failed: dict[str, Any] = {}  # name -> the wanted state that failed to apply

    # -- reading ------------------------------------------------------------------------

    def info(self, name: str) -> PluginInfo:
        found = next((p for p in self.server.plugin_catalog() if p.name == name), None)
        if found is None:
            raise NotFound(f"No plugin named {name!r} is installed.", code="PLUGIN_NOT_FOUND")
        return found

    def describe(self, p: PluginInfo) -> dict[str, Any]:
        change = self.overrides.get(p.name) or {}
        overridden = sorted((change.get("config") or {}).keys())
        if change.get("enabled") is not None:
            overridden = ["enabled", *overridden]
        config = p.config if p.enabled else {**p.base_config, **(change.get("config") or {})}
        return {
            "name": p.name,
            "version": p.version,
            "description": p.description,
            "distribution": p.distribution,
            "enabled": p.enabled,
            "state": p.state.value if p.enabled else "DISABLED",
            "required": p.required,
            "requires": list(p.requires),
            "locked": p.required or p.name in BOOT,
            "config": redact(config, p.schema),
            "schema": p.schema,
            "error": p.error,
            "overridden": overridden,
        }

    def catalog(self) -> list[dict[str, Any]]:
        return [self.describe(p) for p in self.server.plugin_catalog()]

    # -- changing -----------------------------------------------------------------------

    async def change(
        self,
        name: str,
        enabled: bool | None,
        config: dict[str, Any] | None,
        actor: str | None,
        *,
        apply: bool = True,
    ) -> dict[str, Any]:
        """``PATCH /api/v1/admin/plugins/{name}``: check, store, apply, announce. Without
        ``apply`` (the command line, no server running) only check and store."""
        async with self.lock:
            plugins = {p.name: p for p in self.server.plugin_catalog()}
            p = plugins.get(name)
            if p is None:
                raise NotFound(f"No plugin named {name!r} is installed.", code="PLUGIN_NOT_FOUND")
            previous = self.overrides.get(name) or Override(enabled=None, config=None)
            want_enabled = p.enabled if enabled is None else enabled
            keys = dict(previous.get("config") or {})
            if config is not None:
                if name in BOOT:
                    raise Conflict(
                        f"{name!r} is configured in plugins.toml only: it keeps the run-time changes.",
                        code="PLUGIN_LOCKED",
                    )
                keys.update(_unredacted(config, p.config))
            table = {**p.base_config, **keys}
            if want_enabled or config is not None:
                self.server.check_plugin_config(name, table)  # 422 naming the key
            _check_switch(p, want_enabled, plugins)
            if apply:
                await self._apply_or_undo(p, want_enabled, table, actor)
            change = Override(
                enabled=(enabled if enabled is not None else previous.get("enabled")),
                config=keys or None,
            )
            self.overrides[name] = change
            await self.store.set_override(
                name, change["enabled"], change["config"], actor, time.time()
            )
            if config is not None:
                self.server.record(
                    PluginEvent(
                        name, "config", detail="set " + ", ".join(sorted(config)), actor_id=actor
                    )
                )
            if not apply:
                return {**self.describe(p), "enabled": want_enabled}
        await self.announce(name)
        return self.describe(self.info(name))

    async def _apply_or_undo(
        self, p: PluginInfo, enabled: bool, table: dict[str, Any], actor: str | None
    ) -> None:
        """Apply here; when the plugin (or one that requires it) fails on the change, put
        back what ran before and refuse (422): a change never leaves a plugin broken, nor
        is it stored for the next start."""

        def failing() -> list[PluginInfo]:
            catalog = self.server.plugin_catalog()
            return [q for q in catalog if q.enabled and q.state is PluginState.ERROR]

        before = {q.name for q in failing()} - {p.name}
        await self.server.apply_plugin(p.name, enabled, table, actor)
        broken = [q for q in failing() if q.name not in before]
        if not broken:
            return
        await self.server.apply_plugin(
            p.name, p.enabled, p.config if p.enabled else p.base_config, actor
        )
        why = "; ".join(f"{q.name}: {q.error}" for q in broken)
        raise ValidationFailed(
            f"{p.name!r} failed with this change, which was undone: {why}",
            code="PLUGIN_START_FAILED",
        )

    async def reset(self, name: str, actor: str | None, *, apply: bool = True) -> dict[str, Any]:
        """Drop the run-time overrides: ``plugins.toml`` alone again."""
        async with self.lock:
            plugins = {p.name: p for p in self.server.plugin_catalog()}
            p = plugins.get(name)
            if p is None:
                raise NotFound(f"No plugin named {name!r} is installed.", code="PLUGIN_NOT_FOUND")
            enabled = name in self._base_enabled(plugins)
            _check_switch(p, enabled, plugins)
            if apply:
                await self._apply_or_undo(p, enabled, p.base_config, actor)
            self.overrides.pop(name, None)
            await self.store.set_override(name, None, None, actor, time.time())
            self.server.record(
                PluginEvent(name, "config", detail="reset to plugins.toml", actor_id=actor)
            )
            if not apply:
                return {**self.describe(p), "enabled": enabled}
        await self.announce(name)
        return self.describe(self.info(name))

    def _base_enabled(self, plugins: dict[str, PluginInfo]) -> set[str]:
        """What plugins.toml enables: the running set without the run-time switches."""
        found = {n for n, p in plugins.items() if p.enabled}
        for name, change in self.overrides.items():
            if change.get("enabled") is True:
                found.discard(name)
            elif change.get("enabled") is False:
                found.add(name)
        return found

    # -- every instance -----------------------------------------------------------------

    async def sync(self) -> None:
        """Bring this process to the stored overrides (after the bus said so, or on the
        poll). Disables first (dependents before what they need), then enables in
        dependency order; a change that fails here is not retried until it changes."""
        async with self.lock:
            stored = await self.store.overrides()
            plugins = {p.name: p for p in self.server.plugin_catalog()}
            base = self._base_enabled(plugins)
            self.overrides = stored
            wanted: dict[str, tuple[bool, dict[str, Any]]] = {}
            for name, p in plugins.items():
                if name in BOOT:
                    continue
                change = stored.get(name) or {}
                enabled = change["enabled"] if change.get("enabled") is not None else name in base
                table = {**p.base_config, **(change.get("config") or {})}
                if enabled == p.enabled and (not enabled or _same(self.server, name, table, p)):
                    self.failed.pop(name, None)
                    continue
                if self.failed.get(name) == (enabled, table):
                    continue
                wanted[name] = (enabled, table)
            for name in _apply_order(wanted, plugins):
                enabled, table = wanted[name]
                try:
                    await self.server.apply_plugin(name, enabled, table)
                except Exception as exc:
                    self.failed[name] = (enabled, table)
                    log.error("plugin %r: the stored change could not be applied: %s", name, exc)


def _same(server: ServerView, name: str, table: dict[str, Any], p: PluginInfo) -> bool:
    try:
        return server.check_plugin_config(name, table) == p.config
    except ValidationFailed:
        return True  # an invalid stored table is never applied (the API refused it)


def _apply_order(
    wanted: dict[str, tuple[bool, dict[str, Any]]], plugins: dict[str, PluginInfo]
) -> list[str]:
    off = [n for n, (on, _) in wanted.items() if not on]
    on = [n for n, (on, _) in wanted.items() if on]

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        p = plugins.get(name)
        if p is None or name in seen:
            return 0
        return 1 + max((depth(d, seen | {name}) for d in p.requires), default=0)

    return sorted(off, key=depth, reverse=True) + sorted(on, key=depth)


def _check_switch(p: PluginInfo, enabled: bool, plugins: dict[str, PluginInfo]) -> None:
    """The 409s: a locked plugin, a missing requirement, a plugin others need."""
    if enabled == p.enabled:
        return
    if not enabled and (p.required or p.name in BOOT):
        raise Conflict(
            f"{p.name!r} cannot be disabled: it is "
            + ("in plugins.required" if p.required else "what keeps the run-time changes"),
            code="PLUGIN_LOCKED",
            extra={"plugins": [p.name]},
        )
    if not enabled and "authenticate" in p.hooks:
        others = [
            o for n, o in plugins.items() if n != p.name and o.enabled and "authenticate" in o.hooks
        ]
        if not others:
            raise Conflict(
                f"{p.name!r} cannot be disabled: it is what authenticates requests, and "
                "without it no administrator could switch it back on",
                code="PLUGIN_LOCKED",
                extra={"plugins": [p.name]},
            )
    if enabled:
        missing = [d for d in p.requires if not (d in plugins and plugins[d].enabled)]
        if missing:
            raise Conflict(
                f"{p.name!r} requires {', '.join(map(repr, missing))}: enable "
                + ("it" if len(missing) == 1 else "them")
                + " first",
                code="PLUGIN_REQUIRES",
                extra={"plugins": missing},
            )
    else:
        needing = [n for n, o in plugins.items() if o.enabled and p.name in o.requires]
        if needing:
            raise Conflict(
                f"{p.name!r} is required by {', '.join(map(repr, needing))}: disable "
                + ("it" if len(needing) == 1 else "them")
                + " first",
                code="PLUGIN_REQUIRED_BY",
                extra={"plugins": needing},
            )


def _unredacted(config: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A settings form sends secrets back as shown (redacted): those keep their value."""
    return {k: current.get(k) if v == REDACTED else v for k, v in config.items()}


__all__ = ["CHANGED", "PluginAdmin", "PluginState"]
