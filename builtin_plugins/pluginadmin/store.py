"""What the plugin administration keeps in the database: the run-time overrides (one row
per plugin, read by every instance) and each plugin's history (the newest rows kept)."""

from __future__ import annotations

import json
from typing import Any

from sdk import Database, Migration, PluginEvent

MIGRATIONS = [
    Migration(
        1,
        "run-time plugin overrides and plugin history",
        [
            """CREATE TABLE plugin_overrides (
                name TEXT PRIMARY KEY,
                enabled BOOLEAN,
                config TEXT,
                actor_id TEXT,
                updated_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE plugin_events (
                plugin TEXT NOT NULL,
                happened_at DOUBLE PRECISION NOT NULL,
                kind TEXT NOT NULL,
                outcome TEXT NOT NULL,
                detail TEXT NOT NULL,
                error TEXT NOT NULL,
                duration_ms DOUBLE PRECISION,
                actor_id TEXT,
                instance TEXT NOT NULL)""",
            "CREATE INDEX plugin_events_by_plugin ON plugin_events (plugin, happened_at)",
        ],
    )
]
EVENT_COLUMNS = (
    "plugin",
    "happened_at",
    "kind",
    "outcome",
    "detail",
    "error",
    "duration_ms",
    "actor_id",
    "instance",
)


class Override(dict[str, Any]):
    """``{"enabled": bool | None, "config": {key: value} | None}`` of one plugin."""


class AdminStore:
    def __init__(self, db: Database, keep_events: int) -> None:
        self.db = db
        self.keep_events = keep_events

    async def overrides(self) -> dict[str, Override]:
        rows = await self.db.fetchall("SELECT name, enabled, config FROM plugin_overrides")
        found = {}
        for name, enabled, config in rows:
            if enabled is None and config is None:
                continue  # reset: plugins.toml alone
            found[name] = Override(enabled=enabled, config=json.loads(config) if config else None)
        return found

    async def set_override(
        self,
        name: str,
        enabled: bool | None,
        config: dict[str, Any] | None,
        actor: str | None,
        at: float,
    ) -> None:
        await self.db.execute(
            """INSERT INTO plugin_overrides (name, enabled, config, actor_id, updated_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (name) DO UPDATE SET enabled = $2, config = $3, actor_id = $4,
               updated_at = $5""",
            [name, enabled, json.dumps(config) if config else None, actor, at],
        )

    async def add_events(self, events: list[PluginEvent], instance: str) -> None:
        rows = [
            (
                e.plugin,
                e.at,
                e.kind,
                e.outcome,
                e.detail[:500],
                e.error[:2000],
                e.duration_ms,
                e.actor_id,
                instance,
            )
            for e in events
        ]
        with self.db.background():
            await self.db.insert_rows("plugin_events", EVENT_COLUMNS, rows)
            for plugin in {e.plugin for e in events}:
                # the newest keep_events of each plugin stay
                await self.db.execute(
                    """DELETE FROM plugin_events WHERE plugin = $1 AND happened_at < (
                         SELECT happened_at FROM plugin_events WHERE plugin = $1
                         ORDER BY happened_at DESC LIMIT 1 OFFSET $2)""",
                    [plugin, self.keep_events - 1],
                )

    async def events(self, plugin: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            """SELECT happened_at, kind, actor_id, detail, outcome, duration_ms, error, instance
               FROM plugin_events WHERE plugin = $1 ORDER BY happened_at DESC LIMIT $2""",
            [plugin, limit],
        )
        keys = ("at", "kind", "actor_id", "detail", "outcome", "duration_ms", "error", "instance")
        return [dict(zip(keys, row, strict=True)) for row in rows]
