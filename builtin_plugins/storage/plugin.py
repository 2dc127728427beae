"""The storage plugin: the database every plugin's store writes to (``sdk.Database``),
on the embedded DuckDB file in ``data_dir`` (the default) or PostgreSQL, the plugins'
schema migrations, and ``llmmultichat db migrate`` / ``db copy``.

Plugins that keep data list ``"storage"`` in their ``requires``; they reach the database
as ``self.context.database``. Before each of them initializes, the kernel asks this
plugin to prepare it (``prepare_plugin``): its missing migrations are applied.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from sdk import CliCommand, Health, Plugin, hookimpl, services
from sdk.database import Migration

from .copy import CopyError, copy_tables, target_database
from .engines import AnyDatabase, DatabaseError, PgDatabase, open_database
from .migrations import LEDGER, LOCK_NAME, MigrationError, migrate, migrate_plugin

DB_FILE = "llmmultichat.duckdb"


class StoragePlugin(Plugin):
    name = "storage"
    version = "0.1.0"
    description = "The database of every plugin: the embedded DuckDB file, or PostgreSQL"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            # no default: unset, the legacy [kernel.database] url applies
            "url": {
                "type": "string",
                "pattern": "^$|^postgres(ql)?://",
                "x-secret": True,
                "description": 'empty: the embedded DuckDB file in data_dir; "postgresql://user[:password]@host[:port]/dbname": PostgreSQL',
            },
            "pool_size": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "connections per process (PostgreSQL); default 10",
            },
        },
    }

    database: AnyDatabase

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(self.config, self.context.kernel_config)
        # plugin -> (its migrations, the versions applied now); and failures
        self.prepared: dict[str, tuple[Sequence[Migration], list[int]]] = {}
        self.failed: dict[str, str] = {}

    @classmethod
    def process_local_settings(
        cls, config: dict[str, Any], kernel_config: dict[str, Any]
    ) -> list[str]:
        if settings_of(config, kernel_config)["url"]:
            return []
        return [
            '[plugins.storage] url (the embedded DuckDB file is one process\'s; use "postgresql://...")'
        ]

    async def initialize(self) -> None:
        self.database = open_database(self.settings, self.context.data_dir, DB_FILE)
        await self.database.open()
        self.context.services.provide(services.DATABASE, self.database)
        self._declare_metrics()

    def _declare_metrics(self) -> None:
        metrics = self.context.metrics
        up = metrics.gauge(
            "database_up",
            "1 while the database answers (PostgreSQL's probe; the embedded file always), else 0",
            aggregate="min",
        )
        outages = metrics.gauge(
            "database_outages",
            "Times this process saw PostgreSQL stop answering since it started",
            aggregate="max",
        )

        def collect() -> None:
            db = getattr(self, "database", None)
            pg = isinstance(db, PgDatabase)
            up.set(0 if pg and not db.available else 1)  # type: ignore[union-attr]
            outages.set(db.outages if pg else 0)  # type: ignore[union-attr]

        metrics.on_collect(collect)

    async def start(self) -> None:
        if isinstance(self.database, PgDatabase):
            self.database.start_probe()

    async def stop(self) -> None:
        if isinstance(self.database, PgDatabase):
            await self.database.stop_probe()

    async def close(self) -> None:
        await self.database.close()

    def not_ready(self) -> str | None:
        db = self.database
        if isinstance(db, PgDatabase) and not db.available:
            return "the database does not answer"
        return None

    async def health(self) -> Health:
        db = self.database
        if not isinstance(db, PgDatabase):
            return Health("ok", "embedded DuckDB")
        checks = {"engine": "postgresql", "answering": db.available, "outages": db.outages}
        if db.available:  # (no host: anyone may read /health; the log names it)
            return Health("ok", "PostgreSQL", checks)
        since = time.time() - (db.down_since or time.time())
        return Health(
            "unavailable",
            f"PostgreSQL does not answer (for {since:.0f} s); routes that need it answer "
            "503 DATABASE_UNAVAILABLE",
            checks,
        )

    @hookimpl
    async def prepare_plugin(self, name: str, migrations: Sequence[Migration]) -> None:
        if not migrations:
            return
        db = self.database
        try:
            async with db.exclusive(LOCK_NAME):
                await db.execute(LEDGER)
                applied = await migrate_plugin(db, name, migrations)
        except MigrationError as exc:
            self.failed[name] = str(exc)
            raise
        self.prepared[name] = (migrations, applied)

    @hookimpl
    def register_cli_commands(self) -> list[CliCommand]:
        return [
            CliCommand(
                "db migrate",
                "apply the plugins' schema migrations, then exit",
                self._cmd_migrate,
                lifecycle="prepared",
            ),
            CliCommand(
                "db copy",
                "copy every plugin's data into another (empty) database",
                self._cmd_copy,
                arguments=[
                    (
                        ("--to",),
                        {
                            "required": True,
                            "metavar": "URL",
                            "help": "postgresql://user@host/dbname",
                        },
                    )
                ],
                lifecycle="initialized",
            ),
        ]

    # A command's ``run`` gets the initialized plugin (``plugin``); ``self`` is the
    # instance that only offered the command.
    async def _cmd_migrate(self, plugin: StoragePlugin, args: argparse.Namespace) -> int:
        print(f"database: {plugin.database.describe()}")
        for name in sorted(plugin.failed):
            print(f"{name}: ERROR: migrate failed: {plugin.failed[name]}")
        for name, (steps, done) in plugin.prepared.items():
            news = f"applied {', '.join(map(str, done))}" if done else "up to date"
            print(f"{name}: schema version {len(steps)} ({news})")
        return 1 if plugin.failed else 0

    async def _cmd_copy(self, plugin: StoragePlugin, args: argparse.Namespace) -> int:
        try:
            return await plugin._copy(args.to)
        except (DatabaseError, CopyError) as exc:
            print(f"llmmultichat: db copy failed: {exc}", file=sys.stderr)
            return 1

    async def _copy(self, url: str) -> int:
        source = self.database
        target = target_database(url)
        await target.open()
        try:
            if target.url == source.url:
                print("llmmultichat: --to names the configured database itself", file=sys.stderr)
                return 1
            report = await migrate(target, [(n, steps) for n, (steps, _) in self.prepared.items()])
            for name, problem in report.failed.items():
                raise CopyError(f"migrating the target failed for plugin {name!r}: {problem}")
            tables: list[tuple[str, str]] = []
            answered = set()
            for name, names in await self.context.hooks.results("copy_tables", target=target):
                tables += [(name, str(t)) for t in names or []]
                answered.add(name)
            for name in self.prepared:
                if name not in answered:
                    print(
                        f"warning: plugin {name!r} keeps tables but has no copy_tables hook: "
                        "its data is not copied",
                        file=sys.stderr,
                    )
            copied = await copy_tables(source, target, tables)
        finally:
            await target.close()
        print(f"copied {source.describe()} -> {target.describe()}")
        width = max([len(c.table) for c in copied] + [5])
        for c in copied:
            print(f"  {c.table:<{width}}  {c.rows:>9} rows  ({c.plugin}, verified)")
        print(f"  {'total':<{width}}  {sum(c.rows for c in copied):>9} rows")
        return 0


def settings_of(config: dict[str, Any], kernel_config: dict[str, Any]) -> dict[str, Any]:
    """``url`` and ``pool_size``: this plugin's table, else the legacy ``[kernel.database]``."""
    legacy = kernel_config.get("database") or {}
    url = str(config.get("url", legacy.get("url", "")) or "").strip()
    pool = int(config.get("pool_size", legacy.get("pool_size", 10)))
    return {"url": url, "pool_size": pool}
