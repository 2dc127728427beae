"""The database contract on both engines: one SQL text, the same answers, transactions
that hold or vanish as a whole, and versioned migrations."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from builtin_plugins.storage.engines import AnyDatabase, DuckDatabase, open_database
from builtin_plugins.storage.migrations import migrate
from sdk import Migration, Plugin, Transaction
from sdk.threads import BACKGROUND_NICE


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[AnyDatabase]:
    database = open_database({"url": database_url, "pool_size": 4}, tmp_path, "t.duckdb")
    await database.open()
    try:
        yield database
    finally:
        await database.close()


DUPLICATE = r"(?i)constraint|duplicate"
TYPES = """CREATE TABLE things (
    id TEXT PRIMARY KEY,
    n BIGINT NOT NULL,
    x DOUBLE PRECISION,
    ok BOOLEAN NOT NULL,
    ts TIMESTAMP,
    ts_tz TIMESTAMPTZ,
    blob BYTEA
)"""


async def test_one_sql_text_round_trips_every_portable_type(db: AnyDatabase) -> None:
    await db.execute(TYPES)
    naive = datetime(2026, 1, 2, 3, 4, 5, 678000)
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await db.execute(
        "INSERT INTO things VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ["a", 2**40, 1.5, True, naive, aware, b"\x00\xff"],
    )
    row = await db.fetchone("SELECT * FROM things WHERE id = $1 AND n = $2", ["a", 2**40])
    assert row is not None
    assert row[:5] == ("a", 2**40, 1.5, True, naive)
    assert row[5] == aware and bytes(row[6]) == b"\x00\xff"
    # a repeated placeholder, an array parameter, an upsert, RETURNING
    assert await db.fetchval("SELECT count(*) FROM things WHERE id = $1 OR id = $1", ["a"]) == 1
    found = await db.fetchall("SELECT id FROM things WHERE id = ANY($1::TEXT[])", [["a", "b"]])
    assert found == [("a",)]
    await db.execute(
        "INSERT INTO things (id, n, ok) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET n = excluded.n",
        ["a", 7, False],
    )
    gone = await db.fetchall("DELETE FROM things WHERE n = $1 RETURNING id", [7])
    assert gone == [("a",)] and await db.fetchone("SELECT * FROM things") is None
    assert await db.fetchval("SELECT id FROM things") is None


async def test_a_transaction_commits_as_a_whole_or_not_at_all(db: AnyDatabase) -> None:
    await db.execute(TYPES)
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO things (id, n, ok) VALUES ($1, 1, TRUE)", ["kept"])
        await tx.insert_rows("things", ["id", "n", "ok"], [("k2", 2, True), ("k3", 3, False)])
        # the transaction sees its own writes
        assert await tx.fetchval("SELECT count(*) FROM things") == 3
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (id, n, ok) VALUES ($1, 1, TRUE)", ["lost"])
            raise RuntimeError("the caller changed its mind")
    with pytest.raises(Exception, match=DUPLICATE):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (id, n, ok) VALUES ($1, 1, TRUE)", ["lost2"])
            await tx.execute("INSERT INTO things (id, n, ok) VALUES ($1, 1, TRUE)", ["kept"])
    rows = await db.fetchall("SELECT id FROM things ORDER BY id")
    assert rows == [("k2",), ("k3",), ("kept",)]
    # the engine is usable after a failed transaction
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM things WHERE id = $1", ["k2"])
    assert await db.fetchval("SELECT count(*) FROM things") == 2


async def test_bulk_inserts_are_all_or_nothing(db: AnyDatabase) -> None:
    await db.execute(TYPES)
    rows = [(f"r{i}", i, i / 2, i % 2 == 0) for i in range(5000)]
    await db.insert_rows("things", ["id", "n", "x", "ok"], rows)
    assert await db.fetchval("SELECT sum(n) FROM things") == sum(range(5000))
    clash = [("new1", 1, 0.0, True), ("r3", 1, 0.0, True)]
    with pytest.raises(Exception, match=DUPLICATE):
        await db.insert_rows("things", ["id", "n", "x", "ok"], clash)
    with pytest.raises(Exception, match=DUPLICATE):
        await db.executemany(
            "INSERT INTO things (id, n, ok) VALUES ($1, $2, TRUE)", [r[:2] for r in clash]
        )
    assert await db.fetchval("SELECT count(*) FROM things WHERE id = 'new1'") == 0


async def test_vectors_go_in_as_arrays_and_come_back_as_one_matrix(db: AnyDatabase) -> None:
    dim = 5
    await db.execute(f"CREATE TABLE vecs (id TEXT NOT NULL, s TEXT, v {db.vector_type(dim)})")
    matrix = np.random.default_rng(1).standard_normal((3, dim)).astype(np.float32)
    await db.execute("INSERT INTO vecs VALUES ($1, $2, $3)", ["a", None, matrix[0]])
    await db.insert_rows("vecs", ["id", "s", "v"], [("b", "x", matrix[1]), ("c", None, matrix[2])])
    rows, got = await db.fetch_vectors("SELECT id, s, v FROM vecs ORDER BY id", None, dim)
    assert rows == [("a", None), ("b", "x"), ("c", None)]
    assert got.dtype == np.float32 and np.array_equal(got, matrix)
    rows, got = await db.fetch_vectors("SELECT id, v FROM vecs WHERE id = $1", ["zz"], dim)
    assert rows == [] and got.shape == (0, dim)


async def test_tables_lists_this_stores_tables_only(db: AnyDatabase) -> None:
    await db.execute("CREATE TABLE memo_a (x INTEGER)")
    await db.execute("CREATE TABLE memo_b (x INTEGER)")
    await db.execute("CREATE TABLE other (x INTEGER)")
    assert await db.tables("memo_") == ["memo_a", "memo_b"]
    assert "other" in await db.tables()


def _thread_and_nice(_cursor: object) -> tuple[str, int]:
    return threading.current_thread().name, os.getpriority(
        os.PRIO_PROCESS, threading.get_native_id()
    )


async def test_background_statements_run_at_a_lower_priority_with_the_same_answers(
    db: AnyDatabase,
) -> None:
    """Inside ``background()`` (and in the tasks started there) statements run on DuckDB's
    low-priority threads, transactions included; outside, on the request threads. What
    they read and write is the same either way."""
    await db.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")

    async def in_a_child_task() -> tuple[str, int] | None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO notes VALUES ($1, $2)", ["child", 2])
            if isinstance(db, DuckDatabase):
                return await tx._call(_thread_and_nice)
        return None

    with db.background():
        await db.execute("INSERT INTO notes VALUES ($1, $2)", ["parent", 1])
        assert await db.fetchval("SELECT n FROM notes WHERE id = $1", ["parent"]) == 1
        child = asyncio.create_task(in_a_child_task())
        here = await db.run(_thread_and_nice) if isinstance(db, DuckDatabase) else None
    child_place = await child
    after = await db.run(_thread_and_nice) if isinstance(db, DuckDatabase) else None
    assert await db.fetchall("SELECT id, n FROM notes ORDER BY n") == [("parent", 1), ("child", 2)]
    if isinstance(db, DuckDatabase):
        assert here is not None and child_place is not None and after is not None
        for name, nice in (here, child_place):
            assert name.startswith("duckdb-background") and nice == BACKGROUND_NICE
        assert after[0].startswith("duckdb_") and after[1] == 0


async def test_closing_waits_for_a_statement_whose_task_was_cancelled(tmp_path: Path) -> None:
    """A plugin that stops cancels its background tasks, but their statements go on in
    their threads; closing the database waits for them instead of failing on a busy
    cursor (a flaky teardown error in CI, once)."""
    db = DuckDatabase(tmp_path / "closing.duckdb")
    await db.open()
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []

    def blocking(x: int) -> int:
        started.set()
        release.wait(10)
        return x

    def slow_statement(cursor: object) -> None:
        cursor.create_function("blocking", blocking, ["BIGINT"], "BIGINT")  # type: ignore[attr-defined]
        finished.append(cursor.execute("SELECT blocking(7)").fetchone()[0])  # type: ignore[attr-defined]

    async def background_work() -> None:
        with db.background():
            await db.run(slow_statement)

    task = asyncio.create_task(background_work())
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # still waiting for the statement
    release.set()
    await closing  # and then closes cleanly
    assert finished == [7]
    with pytest.raises(RuntimeError, match="closed"):
        await db.fetchval("SELECT 1")
    with pytest.raises(RuntimeError, match="closed"):
        async with db.transaction():
            pass


async def _seed(tx: Transaction) -> None:
    await tx.execute("INSERT INTO notes (id, body) VALUES ($1, $2)", ["n1", "seeded"])


STEPS = [
    Migration(1, "notes", ["CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)"]),
    Migration(2, "seed", run=_seed),
]


async def test_migrations_apply_once_in_order_and_resume(db: AnyDatabase) -> None:
    report = await migrate(db, [("notes", STEPS[:1])])
    assert report.applied == {"notes": [1]} and not report.failed
    report = await migrate(db, [("notes", STEPS)])
    assert report.applied == {"notes": [2]}
    report = await migrate(db, [("notes", STEPS)])
    assert report.applied == {"notes": []} and report.current == {"notes": 2}
    assert await db.fetchall("SELECT id, body FROM notes") == [("n1", "seeded")]
    ledger = await db.fetchall(
        "SELECT plugin, version, description FROM kernel_migrations ORDER BY version"
    )
    assert ledger == [("notes", 1, "notes"), ("notes", 2, "seed")]


async def test_a_failing_step_leaves_nothing_and_names_the_plugin(db: AnyDatabase) -> None:
    bad = [
        Migration(1, "table", ["CREATE TABLE half (x INTEGER)"]),
        Migration(2, "broken", ["CREATE TABLE half2 (x INTEGER)", "THIS IS NOT SQL"]),
    ]
    report = await migrate(db, [("bad", bad), ("notes", STEPS)])
    assert report.applied["notes"] == [1, 2]
    assert "migration 2 (broken) failed" in report.failed["bad"]
    assert await db.tables("half") == ["half"]  # step 1 stayed, step 2 vanished whole
    gap = [Migration(1, "a"), Migration(3, "c")]
    report = await migrate(db, [("gap", gap)])
    assert "expected 2" in report.failed["gap"]
    # a database written by a newer release is refused, not silently used
    report = await migrate(db, [("notes", STEPS[:1])])
    assert "newer" in report.failed["notes"]


class Notes(Plugin):
    name = "notes"
    requires = ("storage",)
    migrations = STEPS


class BrokenNotes(Plugin):
    name = "brokennotes"
    requires = ("storage",)
    migrations = [Migration(1, "broken", ["NOT SQL AT ALL"])]


async def test_the_kernel_migrates_before_initialize_and_fails_only_that_plugin(
    llmmc, database_url: str
) -> None:
    client = await llmmc(
        {"plugins": {"enabled": ["notes", "brokennotes"]}},
        plugins={"notes": Notes, "brokennotes": BrokenNotes},
        database_url=database_url,
    )
    assert client.plugin_state("notes") == "RUNNING"
    assert client.plugin_state("brokennotes") == "ERROR"
    error = client.kernel.records["brokennotes"].error
    assert error.startswith("migrate failed") and "broken" in error
    assert await client.database.fetchall("SELECT body FROM notes") == [("seeded",)]
