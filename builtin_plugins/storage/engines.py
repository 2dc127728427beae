"""The two engines behind ``sdk.database.Database``: the embedded DuckDB file and
PostgreSQL (asyncpg, a connection pool). ``open_database`` picks one from the storage
plugin's ``url``.

DuckDB blocks, so each call runs in a small thread pool; each worker thread keeps its own
cursor (a DuckDB connection is not safe to share between threads) and a transaction holds
one cursor of its own until it ends. SQL is written with ``$n`` placeholders, which both
engines read natively.

Work started inside ``with db.background():`` (recording, extraction: what nobody waits
for) runs on a second pool of DuckDB threads at a lower CPU priority, so on a small
machine it takes only what the requests leave over. PostgreSQL's server does its own
work, so there it changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import duckdb
import numpy as np

from sdk.database import DATABASE_UNAVAILABLE, Engine, Params
from sdk.errors import ServiceUnavailable
from sdk.threads import lower_thread_priority

T = TypeVar("T")
log = logging.getLogger(__name__)
# Set by ``background()``: the current task's statements (and its child tasks') go to the
# low-priority pool.
_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "database_background", default=False
)
BACKGROUND_THREADS = 2


@contextmanager
def _background() -> Iterator[None]:
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


_CHUNK_PARAMS = 6000  # parameters per multi-row INSERT statement (DuckDB)


class DatabaseError(Exception):
    """The database cannot be opened or used as configured."""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _chunks(rows: Sequence[Sequence[Any]], width: int) -> list[Sequence[Sequence[Any]]]:
    size = max(1, _CHUNK_PARAMS // max(1, width))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _values_sql(table: str, columns: Sequence[str], n: int) -> str:
    width = len(columns)
    groups = (
        "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(n)
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(groups)}"


# -- DuckDB -------------------------------------------------------------------------------


def _duck_param(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(np.float32).tolist()
    return value


def _duck_params(params: Params) -> list[Any] | None:
    return None if params is None else [_duck_param(v) for v in params]


_COLUMNAR_MIN = 32  # rows from which a registered columnar view beats VALUES lists
_KINDS: dict[type, Any] = {bool: bool, int: np.int64, float: np.float64}


def _columnar(
    columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> tuple[dict[str, np.ndarray], str | None, np.ndarray | None] | None:
    """The rows as numpy columns (plus at most one vector column as a matrix), or None
    when a column mixes types numpy cannot carry faithfully (then VALUES lists are used)."""
    data: dict[str, np.ndarray] = {"_rid": np.arange(len(rows), dtype=np.int64)}
    vector_column, matrix = None, None
    for j, column in enumerate(columns):
        values = [r[j] for r in rows]
        kinds = {type(v) for v in values}
        if kinds <= {str, type(None)}:
            data[column] = np.array(values, dtype=object)
        elif len(kinds) == 1 and (kind := next(iter(kinds))) in _KINDS:
            data[column] = np.array(values, dtype=_KINDS[kind])
        elif kinds == {float, int}:
            data[column] = np.array(values, dtype=np.float64)
        elif kinds == {datetime} and all(v.tzinfo is None for v in values):
            data[column] = np.array(values, dtype="datetime64[us]")
        elif kinds == {np.ndarray} and vector_column is None:
            vector_column = column
            matrix = np.ascontiguousarray(np.stack(values), dtype=np.float32)
        else:
            return None
    return data, vector_column, matrix


def _insert_columnar(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    data: dict[str, np.ndarray],
    vector_column: str | None,
    matrix: np.ndarray | None,
) -> None:
    """Insert through registered numpy views; a vector matrix goes in flat and is
    regrouped into ``FLOAT[dim]`` arrays in SQL (far faster than one list per row)."""
    suffix = uuid.uuid4().hex
    views = {"rows": f"bulk_rows_{suffix}", "flat": f"bulk_flat_{suffix}"}
    cur.register(views["rows"], data)
    select = [f"r.{c}" if c != vector_column else "v.vec" for c in columns]
    join = ""
    if matrix is not None:
        n, dim = matrix.shape
        flat = {
            "rid": np.repeat(np.arange(n, dtype=np.int64), dim),
            "pos": np.tile(np.arange(dim, dtype=np.int32), n),
            "x": matrix.ravel(),
        }
        cur.register(views["flat"], flat)
        join = (
            f" JOIN (SELECT rid, list(x ORDER BY pos)::FLOAT[{dim}] AS vec FROM {views['flat']}"
            " GROUP BY rid) v ON v.rid = r._rid"
        )
    try:
        cur.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(select)} "
            f"FROM {views['rows']} r{join} ORDER BY r._rid"
        )
    finally:
        cur.unregister(views["rows"])
        if matrix is not None:
            cur.unregister(views["flat"])


class _DuckQueries:
    engine: Engine = "duckdb"

    async def _call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    def vector_type(self, dim: int) -> str:
        return f"FLOAT[{int(dim)}]"

    async def execute(self, sql: str, params: Params = None) -> None:
        p = _duck_params(params)
        await self._call(lambda cur: cur.execute(sql, p))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        data = [_duck_params(r) for r in rows]

        def many(cur: duckdb.DuckDBPyConnection) -> None:
            cur.executemany(sql, data)

        await self._call_atomic(many)

    async def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        p = _duck_params(params)
        return await self._call(lambda cur: cur.execute(sql, p).fetchall())

    async def fetchone(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        p = _duck_params(params)
        return await self._call(lambda cur: cur.execute(sql, p).fetchone())

    async def fetchval(self, sql: str, params: Params = None) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        # Multi-row statements: DuckDB runs executemany row by row, several times slower.
        if not rows:
            return
        columnar = _columnar(columns, rows) if len(rows) > _COLUMNAR_MIN else None
        chunks = _chunks(rows, len(columns))

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            if columnar is not None:
                _insert_columnar(cur, table, columns, *columnar)
                return
            for chunk in chunks:
                sql = _values_sql(table, columns, len(chunk))
                cur.execute(sql, [_duck_param(v) for row in chunk for v in row])

        await self._call_atomic(write)

    async def fetch_vectors(
        self, sql: str, params: Params, dim: int
    ) -> tuple[list[tuple[Any, ...]], np.ndarray]:
        p = _duck_params(params)

        def read(cur: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], np.ndarray]:
            cols = list(cur.execute(sql, p).fetchnumpy().values())
            if not len(cols[-1]):
                return [], np.zeros((0, dim), dtype=np.float32)
            matrix = np.stack([np.asarray(v, dtype=np.float32) for v in cols[-1]])
            others = [
                np.ma.asarray(c).tolist() if np.ma.isMaskedArray(c) else c.tolist()
                for c in cols[:-1]
            ]
            return list(zip(*others, strict=True)), matrix

        return await self._call(read)

    async def _call_atomic(self, fn: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        await self._call(fn)


class DuckTransaction(_DuckQueries):
    def __init__(self, pool: ThreadPoolExecutor, cursor: duckdb.DuckDBPyConnection) -> None:
        self._pool = pool
        self._cursor = cursor
        self._lock = threading.Lock()  # one statement at a time, even under gather()

    async def _call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        def call() -> T:
            with self._lock:
                return fn(self._cursor)

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)


class DuckDatabase(_DuckQueries):
    def __init__(self, path: Path | str, threads: int = 4) -> None:
        self.path = str(path)
        self.url = ""
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._free: list[duckdb.DuckDBPyConnection] = []  # for transactions
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="duckdb")
        self._background_pool = ThreadPoolExecutor(
            max_workers=BACKGROUND_THREADS,
            thread_name_prefix="duckdb-background",
            initializer=lower_thread_priority,
        )
        self._exclusive = asyncio.Lock()

    def describe(self) -> str:
        return f"DuckDB file {self.path}"

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(
                self._pool, duckdb.connect, self.path
            )
        except duckdb.Error as exc:
            raise DatabaseError(f"cannot open {self.describe()}: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None

        def _close() -> None:
            # A stopping plugin cancels its tasks, but a statement already handed to a
            # thread runs on, and DuckDB refuses to close a cursor in use: let both pools
            # finish what they hold first (statements queued later find it closed).
            self._pool.shutdown(wait=True)
            self._background_pool.shutdown(wait=True)
            with self._lock:
                for cur in self._cursors:
                    cur.close()
                self._cursors.clear()
                self._free.clear()
            if conn is not None:
                conn.close()

        await asyncio.to_thread(_close)

    def background(self) -> contextlib.AbstractContextManager[None]:
        return _background()

    def _current_pool(self) -> ThreadPoolExecutor:
        return self._background_pool if _BACKGROUND.get() else self._pool

    def _open_connection(self) -> duckdb.DuckDBPyConnection:
        # (checked before a pool is asked too: once shut, it says "cannot schedule")
        if self._conn is None:
            raise RuntimeError("the database is closed")
        return self._conn

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self._open_connection().cursor()
        with self._lock:
            self._cursors.append(cur)
        return cur

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._new_cursor()
            self._local.cursor = cur
        return cur

    async def _call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        self._open_connection()

        def call() -> T:
            return fn(self._cursor())

        return await asyncio.get_running_loop().run_in_executor(self._current_pool(), call)

    async def _call_atomic(self, fn: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        async with self.transaction() as tx:
            await tx._call(fn)

    async def run(self, fn: Callable[[Any], T]) -> T:
        """``fn(cursor)`` in a worker thread. Kernel-internal: plugins use the contract."""
        return await self._call(fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DuckTransaction]:
        self._open_connection()
        with self._lock:
            cur = self._free.pop() if self._free else None
        loop = asyncio.get_running_loop()
        pool = self._current_pool()
        if cur is None:
            cur = await loop.run_in_executor(pool, self._new_cursor)
        tx = DuckTransaction(pool, cur)
        await tx.execute("BEGIN TRANSACTION")
        try:
            yield tx
        except BaseException:
            try:
                await asyncio.shield(tx.execute("ROLLBACK"))
            finally:
                with self._lock:
                    self._free.append(cur)
            raise
        try:
            await asyncio.shield(tx.execute("COMMIT"))
        except BaseException:
            # A failed COMMIT leaves DuckDB's transaction aborted; end it before reuse.
            await asyncio.shield(tx._call(_rollback_quietly))
            raise
        finally:
            with self._lock:
                self._free.append(cur)

    async def tables(self, prefix: str = "") -> list[str]:
        rows = await self.fetchall(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND starts_with(table_name, $1) "
            "ORDER BY table_name",
            [prefix],
        )
        return [str(r[0]) for r in rows]

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Only one holder at a time; a DuckDB file has one process, so a local lock."""
        async with self._exclusive:
            yield


def _rollback_quietly(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:
        pass


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg_param(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value, dtype=np.float32).tobytes()
    return value


def _pg_params(params: Params) -> list[Any]:
    return [] if params is None else [_pg_param(v) for v in params]


def _vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


# What a statement raises when the server does not answer (refused, reset, timed out,
# shut down): mapped to 503 DATABASE_UNAVAILABLE, never a 500.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
)
RETRY_AFTER_SECONDS = 2


def database_unavailable(detail: str = "") -> ServiceUnavailable:
    return ServiceUnavailable(
        detail or "the database does not answer; try again shortly",
        code=DATABASE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    # "connection is closed", "connection was closed in the middle of operation"
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


@contextmanager
def _mapped() -> Iterator[None]:
    """Connection failures of the statements run inside, as ServiceUnavailable."""
    try:
        yield
    except ServiceUnavailable:
        raise
    except Exception as exc:
        if _is_connection_error(exc):
            raise database_unavailable() from exc
        raise


async def _insert_chunks(
    con: asyncpg.Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    async with con.transaction():
        for chunk in _chunks(rows, len(columns)):
            await con.execute(
                _values_sql(table, columns, len(chunk)),
                *[_pg_param(v) for row in chunk for v in row],
            )


class _PgQueries:
    engine: Engine = "postgresql"

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        raise NotImplementedError
        yield

    def vector_type(self, dim: int) -> str:
        return "BYTEA"  # float32 bytes: no extension needed, and loads without a Python float per number

    async def execute(self, sql: str, params: Params = None) -> None:
        async with self._conn() as con:
            with _mapped():
                await con.execute(sql, *_pg_params(params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        async with self._conn() as con:
            with _mapped():
                await con.executemany(sql, [_pg_params(r) for r in rows])

    async def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        async with self._conn() as con:
            with _mapped():
                return [tuple(r) for r in await con.fetch(sql, *_pg_params(params))]

    async def fetchone(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        async with self._conn() as con:
            with _mapped():
                row = await con.fetchrow(sql, *_pg_params(params))
        return None if row is None else tuple(row)

    async def fetchval(self, sql: str, params: Params = None) -> Any:
        async with self._conn() as con:
            with _mapped():
                return await con.fetchval(sql, *_pg_params(params))

    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        if not rows:
            return
        async with self._conn() as con:
            with _mapped():
                await _insert_chunks(con, table, columns, rows)

    async def fetch_vectors(
        self, sql: str, params: Params, dim: int
    ) -> tuple[list[tuple[Any, ...]], np.ndarray]:
        rows = await self.fetchall(sql, params)
        return [r[:-1] for r in rows], _vectors([r[-1] for r in rows], dim)


class PgTransaction(_PgQueries):
    def __init__(self, con: asyncpg.Connection) -> None:
        self._con = con
        self._lock = asyncio.Lock()  # one statement at a time, even under gather()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._lock:
            yield self._con


class _OneLine(logging.Filter):
    """asyncpg logs a full traceback each time it cannot refill its pool; during an
    outage the probe reports it once, so keep asyncpg's to one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.getMessage().startswith("Failed to restore the pool"):
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = ()
            record.exc_info = None
        return True


def _quiet_pool_floor() -> None:
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _OneLine) for f in pool_log.filters):
        pool_log.addFilter(_OneLine())


class PgDatabase(_PgQueries):
    """A pool of connections, and (once ``start_probe`` is called) a probe that asks the
    server ``SELECT 1`` every ``PROBE_INTERVAL`` seconds on a connection of its own. While
    the probe gets no answer, ``available`` is False: statements fail at once with 503
    ``DATABASE_UNAVAILABLE`` (instead of waiting on a dead server) and the storage plugin
    tells ``/readyz`` so. When the server answers again, the pool's connections (dead
    sockets by now) are replaced and statements run again."""

    PROBE_INTERVAL = 0.4
    PROBE_TIMEOUT = 1.5  # so an outage shows within PROBE_INTERVAL + PROBE_TIMEOUT < 2 s
    CONNECT_TIMEOUT = 5.0
    # statements already waiting on the server when it stopped answering are ended (503)
    # once it has not answered for this long, instead of at the 60 s command timeout
    ABANDON_AFTER = 3.0

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._probe: asyncio.Task[None] | None = None
        self.available = True
        self.down_since: float | None = None  # time.time() of the first failed probe
        self.last_error = ""
        self.outages = 0  # how many times the server stopped answering
        self._in_use: set[asyncpg.Connection] = set()
        self._abandoned = False  # this outage's in-flight statements were ended

    def describe(self) -> str:
        return f"PostgreSQL {redact(self.url)}"

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                command_timeout=60,
                timeout=self.CONNECT_TIMEOUT,
            )
        except (OSError, asyncpg.PostgresError, ValueError) as exc:
            raise DatabaseError(f"cannot connect to {self.describe()}: {exc}") from exc

    async def close(self) -> None:
        await self.stop_probe()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- the probe -------------------------------------------------------------------

    def start_probe(self) -> None:
        _quiet_pool_floor()
        if self._probe is None:
            self._probe = asyncio.create_task(self._probe_loop(), name="database-probe")

    async def stop_probe(self) -> None:
        task, self._probe = self._probe, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe_loop(self) -> None:
        con: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    if con is None or con.is_closed():
                        con = await asyncpg.connect(self.url, timeout=self.PROBE_TIMEOUT)
                    await con.fetchval("SELECT 1", timeout=self.PROBE_TIMEOUT)
                except Exception as exc:  # whatever it is, the server did not answer
                    if con is not None:
                        con.terminate()
                        con = None
                    await self._went_down(exc)
                    self._abandon_in_flight()
                else:
                    await self._came_back()
                await asyncio.sleep(self.PROBE_INTERVAL)
        finally:
            if con is not None:
                con.terminate()

    async def _went_down(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        if not self.available:
            return
        self.available = False
        self.down_since = time.time()
        self.outages += 1
        log.warning("%s does not answer (%s)", self.describe(), self.last_error)
        if self._pool is not None:  # idle connections are dead sockets by now
            await self._pool.expire_connections()

    def _abandon_in_flight(self) -> None:
        since = self.down_since
        if self._abandoned or since is None or time.time() - since < self.ABANDON_AFTER:
            return
        self._abandoned = True
        stuck = list(self._in_use)
        if stuck:
            log.warning("ending %d statement(s) waiting on the database", len(stuck))
        for con in stuck:
            con.terminate()  # their callers get 503 DATABASE_UNAVAILABLE

    async def _came_back(self) -> None:
        if self.available:
            return
        self.available = True
        self._abandoned = False
        lasted = time.time() - (self.down_since or time.time())
        self.down_since = None
        log.warning("%s answers again (after %.1f s)", self.describe(), lasted)
        if self._pool is not None:  # replace what died meanwhile, before it is handed out
            await self._pool.expire_connections()

    # -- connections -----------------------------------------------------------------

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the database is closed")
        if not self.available:
            raise database_unavailable()
        with _mapped():
            con = await pool.acquire()
        self._in_use.add(con)
        try:
            yield con
        finally:
            self._in_use.discard(con)
            try:
                await pool.release(con)
            except Exception as exc:
                # asyncpg could not reset a broken connection and dropped it; what ran
                # on it stands (or already raised), so that is no error of the caller's
                if not _is_connection_error(exc):
                    raise

    def background(self) -> contextlib.AbstractContextManager[None]:
        return _background()  # (the server does the work: nothing to lower here)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        async with self._conn() as con:
            tr = con.transaction()
            with _mapped():
                await tr.start()
            try:
                yield PgTransaction(con)
            except BaseException:
                # (a connection that broke is already back in the pool: nothing to roll
                # back, and asking it anything raises InterfaceError)
                with contextlib.suppress(Exception):
                    if not con.is_closed():
                        await asyncio.shield(tr.rollback())
                raise
            with _mapped():
                await asyncio.shield(tr.commit())

    async def tables(self, prefix: str = "") -> list[str]:
        rows = await self.fetchall(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND starts_with(table_name, $1) "
            "ORDER BY table_name",
            [prefix],
        )
        return [str(r[0]) for r in rows]

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A session advisory lock: one holder across every process on this database."""
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        async with self._conn() as con:
            await con.execute("SELECT pg_advisory_lock($1)", key)
            try:
                yield
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", key)


AnyDatabase = DuckDatabase | PgDatabase


def open_database(settings: dict[str, Any], data_dir: Path, file_name: str) -> AnyDatabase:
    """The engine ``[kernel.database]`` names (not yet opened)."""
    url = str(settings.get("url") or "").strip()
    if not url:
        return DuckDatabase(data_dir / file_name)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return PgDatabase(url, int(settings.get("pool_size", 10)))
    raise DatabaseError(
        f"url {redact(url)!r}: only postgresql:// URLs are supported "
        "(leave it empty for the embedded DuckDB file)"
    )
