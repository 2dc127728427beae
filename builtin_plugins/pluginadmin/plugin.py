"""The plugin administration: the admin API and command line of plugins at run time, the
overrides kept in the database and applied over ``plugins.toml`` at start, the sync of
every instance, and each plugin's history. The kernel does the lifecycle work
(``ServerView.apply_plugin``); this plugin decides what may change and keeps it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

from sdk import CliCommand, Event, Plugin, PluginEvent, Route, control, hookimpl

from . import cli
from .routes import build_routes
from .service import CHANGED, PluginAdmin
from .store import MIGRATIONS, AdminStore


class PluginAdminPlugin(Plugin):
    name = "pluginadmin"
    version = "0.1.0"
    description = (
        "Plugins at run time: enable, disable and configure them while serving, with history"
    )
    requires = ("storage",)
    migrations = MIGRATIONS
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "poll_seconds": {
                "type": "number",
                "minimum": 0.2,
                "maximum": 60,
                "default": 1.0,
                "description": "how often each instance compares the stored changes with what it runs (catches up a missed event)",
            },
            "keep_events": {
                "type": "integer",
                "minimum": 100,
                "maximum": 100000,
                "default": 200,
                "description": "history entries kept per plugin",
            },
            "admin_socket": {
                "type": "boolean",
                "default": True,
                "description": "serve `llmmultichat plugins enable|disable|reset` on data_dir/plugins-admin.sock (mode 0600)",
            },
        },
    }

    async def initialize(self) -> None:
        self.store = AdminStore(self.context.database, self.config["keep_events"])
        self.admin = PluginAdmin(self.context.server, self.store, self.announce)
        self.pending: list[PluginEvent] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.control: control.ControlServer | None = None

    @hookimpl
    async def plugin_overrides(self) -> dict[str, dict[str, Any]]:
        self.admin.overrides = await self.store.overrides()
        return dict(self.admin.overrides)

    @hookimpl
    def plugin_event(self, event: PluginEvent) -> None:
        self.pending.append(event)

    @hookimpl
    def register_routes(self) -> list[Route]:
        return build_routes(self.admin, self.history)

    @hookimpl
    def register_cli_commands(self) -> list[CliCommand]:
        return cli.commands()

    async def start(self) -> None:
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.unsubscribe = self.context.bus.subscribe(CHANGED, self._on_changed)
        self.tasks = [
            asyncio.create_task(self._poll(), name="llmmc-pluginadmin-poll"),
            asyncio.create_task(self._flush_every(0.5), name="llmmc-pluginadmin-history"),
        ]
        if self.config["admin_socket"]:
            self.control = control.ControlServer(
                self.context.data_dir / cli.SOCKET_NAME, self._control, self.log
            )
            await self.control.start()

    async def stop(self) -> None:
        self.unsubscribe()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.control is not None:
            await self.control.stop()
        await self.flush()

    async def _on_changed(self, event: Event) -> None:
        await self.admin.sync()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config["poll_seconds"])
            try:
                await self.admin.sync()
            except Exception as exc:  # the database away: the next round tries again
                self.log.warning("plugin sync failed: %s", exc)

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.flush()
            except Exception as exc:
                self.log.warning("plugin history not written: %s", exc)

    async def flush(self) -> None:
        events, self.pending = self.pending, []
        if events:
            await self.store.add_events(events, self.instance)

    async def history(self, plugin: str, limit: int) -> list[dict[str, Any]]:
        await self.flush()
        rows = await self.store.events(plugin, limit)
        for row in rows:
            row.pop("instance", None)
        return rows

    async def announce(self, name: str) -> None:
        await self.context.bus.publish(CHANGED, {"name": name})

    async def _control(self, message: dict[str, Any]) -> dict[str, Any]:
        return await cli.execute(self, message)
