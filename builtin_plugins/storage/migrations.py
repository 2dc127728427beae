"""Applies the plugins' versioned schema migrations (``Plugin.migrations``).

The ledger ``kernel_migrations`` keeps one row per applied step. Everything happens under
the database's exclusive lock (a PostgreSQL advisory lock), so processes starting at once
on one fresh database apply each step exactly once: the others wait, then find it done.
Each step and its ledger row commit in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sdk.database import Migration, check_migrations

from .engines import AnyDatabase

log = logging.getLogger("llmmultichat.plugin.storage")
LOCK_NAME = "llmmultichat:migrations"
LEDGER = """CREATE TABLE IF NOT EXISTS kernel_migrations (
    plugin TEXT NOT NULL,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (plugin, version)
)"""


class MigrationError(Exception):
    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


@dataclass
class MigrationReport:
    applied: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)


async def applied_versions(db: AnyDatabase, plugin: str) -> set[int]:
    rows = await db.fetchall("SELECT version FROM kernel_migrations WHERE plugin = $1", [plugin])
    return {int(r[0]) for r in rows}


async def migrate_plugin(db: AnyDatabase, plugin: str, steps: Sequence[Migration]) -> list[int]:
    """Apply the steps of one plugin that the ledger lacks; return their versions.
    The caller holds the exclusive lock and has created the ledger."""
    try:
        check_migrations(plugin, steps)
    except ValueError as exc:
        raise MigrationError(plugin, str(exc)) from exc
    done = await applied_versions(db, plugin)
    unknown = sorted(v for v in done if v > len(steps))
    if unknown:
        raise MigrationError(
            plugin,
            f"the database has schema version {unknown[-1]} of plugin {plugin!r}, newer than "
            f"this release knows ({len(steps)}): it was written by a newer version",
        )
    applied = []
    for step in steps:
        if step.version in done:
            continue
        try:
            async with db.transaction() as tx:
                for statement in step.statements:
                    await tx.execute(statement)
                if step.run is not None:
                    await step.run(tx)
                await tx.execute(
                    "INSERT INTO kernel_migrations (plugin, version, description, applied_at) "
                    "VALUES ($1, $2, $3, $4)",
                    [plugin, step.version, step.description, time.time()],
                )
        except Exception as exc:
            raise MigrationError(
                plugin, f"migration {step.version} ({step.description}) failed: {exc}"
            ) from exc
        log.info("plugin %r: applied migration %d (%s)", plugin, step.version, step.description)
        applied.append(step.version)
    return applied


async def migrate(
    db: AnyDatabase, plans: Sequence[tuple[str, Sequence[Migration]]]
) -> MigrationReport:
    """Apply every plugin's missing steps, in the given (start) order. A plugin whose step
    fails is reported in ``failed`` and the others still go on."""
    report = MigrationReport()
    async with db.exclusive(LOCK_NAME):
        await db.execute(LEDGER)
        for plugin, steps in plans:
            if not steps:
                continue
            try:
                report.applied[plugin] = await migrate_plugin(db, plugin, steps)
                report.current[plugin] = len(steps)
            except MigrationError as exc:
                report.failed[plugin] = str(exc)
    return report
