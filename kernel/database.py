"""One DuckDB file per process, shared by every plugin (``sdk.database.Database``).

DuckDB blocks, so each call runs in a small thread pool; each worker thread keeps its own
cursor (a DuckDB connection is not safe to share between threads).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any] | None


class DuckDatabase:
    def __init__(self, path: Path | str, threads: int = 4) -> None:
        self.path = str(path)
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="duckdb")

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = await asyncio.get_running_loop().run_in_executor(
            self._pool, duckdb.connect, self.path
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None

        def _close() -> None:
            with self._lock:
                for cur in self._cursors:
                    cur.close()
                self._cursors.clear()
            if conn is not None:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            if self._conn is None:
                raise RuntimeError("the database is closed")
            cur = self._conn.cursor()
            self._local.cursor = cur
            with self._lock:
                self._cursors.append(cur)
        return cur

    async def run(self, fn: Callable[[Any], T]) -> T:
        def call() -> T:
            return fn(self._cursor())

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def execute(self, sql: str, params: Params = None) -> None:
        await self.run(lambda cur: cur.execute(sql, params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def batch(cur: Any) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.executemany(sql, rows)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        await self.run(batch)

    async def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        return await self.run(lambda cur: cur.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        return await self.run(lambda cur: cur.execute(sql, params).fetchone())
