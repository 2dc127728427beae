"""The database contract every plugin store writes to (``self.context.database``).

One SQL text runs on both engines the kernel offers: the embedded DuckDB file (the
default) and PostgreSQL (``[kernel.database] url = "postgresql://..."``). Write it so:

- placeholders are ``$1, $2, ...`` (a number may repeat); parameters are a sequence;
- types are the ones both know: ``TEXT``, ``BIGINT``, ``INTEGER``, ``DOUBLE PRECISION``,
  ``BOOLEAN``, ``TIMESTAMP`` (naive UTC ``datetime``), ``TIMESTAMPTZ`` (aware),
  ``BYTEA``, ``TEXT[]`` parameters (``col = ANY($1::TEXT[])``); an embedding column is
  ``db.vector_type(dim)`` and takes a 1-D ``numpy.float32`` array as its parameter;
- upserts are ``INSERT ... ON CONFLICT (...) DO UPDATE/NOTHING``; ``RETURNING`` works;
- several statements that must hold together go in ``async with db.transaction() as tx``
  (committed when the block ends, rolled back if it raises).

While the database does not answer (PostgreSQL down or cut off), every call raises
``sdk.errors.ServiceUnavailable`` with code :data:`DATABASE_UNAVAILABLE` and a
``Retry-After`` header: let it propagate and the client gets 503, never 500. A plugin
that can serve without its store (a cache, a background job) may catch it.

Schemas are not created by hand: a plugin lists its :class:`Migration` steps in its
``migrations`` class attribute and the kernel applies the missing ones, in order, before
the plugin initializes (see ``docs/database.md``). No engine object (DuckDB cursor,
asyncpg connection) is ever handed to a plugin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

Params = Sequence[Any] | None
# The code of the 503 a statement raises while the database does not answer.
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
Engine = Literal["duckdb", "postgresql"]


class Queries(Protocol):
    """What runs a statement: the database itself (each call its own transaction) or an
    open transaction."""

    @property
    def engine(self) -> Engine:
        """``"duckdb"`` or ``"postgresql"``, for the rare statement that must differ."""

    def vector_type(self, dim: int) -> str:
        """The column type of a float32 embedding of ``dim`` numbers."""

    async def execute(self, sql: str, params: Params = None) -> None:
        """Run one statement."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row (all of them or none)."""

    async def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""

    async def fetchone(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        """Run a query and return its first row, or None."""

    async def fetchval(self, sql: str, params: Params = None) -> Any:
        """The first column of the first row, or None when there is no row."""

    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert many rows at once, the fastest way the engine has (all or none)."""

    async def fetch_vectors(
        self, sql: str, params: Params, dim: int
    ) -> tuple[list[tuple[Any, ...]], np.ndarray]:
        """Run a query whose last column is a ``vector_type(dim)`` column: the other
        columns of each row, and the vectors as one ``(rows, dim)`` float32 matrix."""


class Transaction(Queries, Protocol):
    """An open transaction (``async with db.transaction() as tx``)."""


class Database(Queries, Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction, Any]:
        """Statements that commit together: ``async with db.transaction() as tx: ...``."""

    def background(self) -> AbstractContextManager[None]:
        """``with db.background(): ...``: the statements of the current task, and of the
        tasks it starts, are work nobody waits for (recording, extraction, compaction).
        The embedded DuckDB runs them on threads of lower CPU priority, so they never slow
        a reply; PostgreSQL, whose server does the work, runs them as any other."""

    async def tables(self, prefix: str = "") -> list[str]:
        """Names of the tables (in the store's schema) that start with ``prefix``."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a plugin's schema. ``version`` numbers start at 1 and go up by one;
    a released step is never edited, a change is a new step. ``statements`` run in one
    transaction, then ``run`` (for data moves) in the same one."""

    version: int
    description: str
    statements: Sequence[str] = ()
    run: Callable[[Transaction], Awaitable[None]] | None = None


def check_migrations(plugin: str, migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions are 1, 2, 3, ... in order."""
    for i, step in enumerate(migrations, start=1):
        if step.version != i:
            raise ValueError(
                f"plugin {plugin!r}: migration #{i} has version {step.version}, expected {i}"
            )
