"""The storage plugin's pytest fixtures, installed as a pytest plugin (``pytest11``) with
``llmmultichat``: ``database_url`` runs a test on each engine (the embedded DuckDB file,
and a fresh schema of a PostgreSQL database made for the test run and dropped after it);
pass it to ``llmmc(..., database_url=database_url)``."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

# The PostgreSQL server the tests use (trust auth); each test run makes its own database.
POSTGRES_ADMIN_URL = os.environ.get(
    "LLMMC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_DATABASE_PREFIX = "llmmc_test_"


async def _admin(statement: str) -> None:
    import asyncpg

    con = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await con.execute(statement)
    finally:
        await con.close()


async def _drop_stale() -> None:
    """Drop the databases of earlier runs whose process is gone (killed before its
    teardown could run); those of live runs are left alone."""
    import asyncpg

    con = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        rows = await con.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", TEST_DATABASE_PREFIX
        )
        for (name,) in rows:
            pid = name[len(TEST_DATABASE_PREFIX) :].split("_")[0]
            if pid.isdigit() and not _alive(int(pid)):
                await con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await con.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop
    (fixtures of async tests): in a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _with_database(url: str, name: str, **query: str) -> str:
    base = url.rsplit("/", 1)[0]
    tail = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base}/{name}" + (f"?{tail}" if tail else "")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for this test run, dropped when it ends
    (skips the test when no server answers at ``$LLMMC_TEST_POSTGRES``)."""
    name = f"{TEST_DATABASE_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    try:
        _run(_drop_stale())
        _run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    try:
        yield _with_database(POSTGRES_ADMIN_URL, name)
    finally:
        _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_schema_url(database_url: str) -> str:
    """A URL on ``database_url`` whose tables go to a new, empty schema: each test gets a
    database of its own without the cost of CREATE DATABASE."""
    schema = "t_" + secrets.token_hex(6)
    name = database_url.rsplit("/", 1)[1]
    _run(_admin_in(database_url, f'CREATE SCHEMA "{schema}"'))
    return _with_database(database_url, name, search_path=schema)


async def _admin_in(url: str, statement: str) -> None:
    import asyncpg

    con = await asyncpg.connect(url, timeout=5)
    try:
        await con.execute(statement)
    finally:
        await con.close()


@pytest.fixture(params=["duckdb", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """``[plugins.storage] url`` for each engine in turn: "" (the embedded DuckDB file)
    and a fresh schema of the run's PostgreSQL database. Pass it to ``llmmc(...,
    database_url=database_url)`` to run a test on both engines."""
    if request.param == "duckdb":
        return ""
    return fresh_schema_url(request.getfixturevalue("postgres_database"))
