"""``llmmultichat db copy --to URL``: every plugin's data from the configured database
into another one (an embedded deployment moving to PostgreSQL).

The target gets the plugins' migrations first, then each plugin names its tables through
the ``copy_tables`` hook (creating there any table it makes at run time). All rows go in
one transaction on the target, which commits only after every table's row count matched
the source: a copy is whole or absent. The target's tables must be empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engines import AnyDatabase, DatabaseError, redact

_COLUMNS_SQL = (
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
)


class CopyError(Exception):
    pass


@dataclass(frozen=True)
class CopiedTable:
    plugin: str
    table: str
    rows: int


def _portable(value: Any) -> Any:
    # DuckDB hands vectors back as tuples of floats; the contract's vector value is an array.
    if isinstance(value, list | tuple) and value and isinstance(value[0], float):
        return np.asarray(value, dtype=np.float32)
    return value


async def copy_tables(
    source: AnyDatabase, target: AnyDatabase, tables: Sequence[tuple[str, str]]
) -> list[CopiedTable]:
    """Copy ``(plugin, table)`` pairs; raises CopyError and leaves the target unchanged
    when a table is missing or not empty there, or a count does not match."""
    present = set(await target.tables())
    for plugin, table in tables:
        if table not in present:
            raise CopyError(f"table {table!r} of plugin {plugin!r} does not exist in the target")
        n = await target.fetchval(f"SELECT count(*) FROM {table}")
        if n:
            raise CopyError(
                f"table {table!r} already has {n} rows in {target.describe()}: "
                "copy into an empty database"
            )
    copied = []
    async with target.transaction() as tx:
        for plugin, table in tables:
            columns = [str(r[0]) for r in await source.fetchall(_COLUMNS_SQL, [table])]
            rows = await source.fetchall(f"SELECT {', '.join(columns)} FROM {table}")
            await tx.insert_rows(table, columns, [[_portable(v) for v in row] for row in rows])
            expected = int(await source.fetchval(f"SELECT count(*) FROM {table}"))
            got = int(await tx.fetchval(f"SELECT count(*) FROM {table}"))
            if got != expected or got != len(rows):
                raise CopyError(f"table {table!r}: {expected} rows in the source, {got} copied")
            copied.append(CopiedTable(plugin, table, got))
    return copied


def target_database(url: str, pool_size: int = 4) -> AnyDatabase:
    from .engines import PgDatabase

    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise DatabaseError(f"--to {redact(url)!r}: the target must be a postgresql:// URL")
    return PgDatabase(url, pool_size)
