"""The embedded store: one DuckDB file in ``data_dir``, opened once per process by the
kernel and shared by every plugin through ``self.context.database``.

DuckDB calls block, so every method here runs in a worker thread (each thread with its
own cursor) and never on the event loop. Keep a plugin's SQL in its ``store.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Database(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """Run one statement."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows, in one transaction."""

    async def fetchall(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""

    async def fetchone(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        """Run a query and return its first row, or None."""

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Call ``fn(cursor)`` in a worker thread (a DuckDB cursor): for transactions and batches."""
