"""Storage across engines and releases: a DuckDB file from before migrations keeps
working, memories live in PostgreSQL (the index is only a cache of them), and
``llmmultichat db copy`` moves everything from DuckDB to PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import duckdb

from builtin_plugins.storage.testing import fresh_schema_url

REPO = Path(__file__).resolve().parents[2]
SECRET = "storage-tests-" + "s" * 40
PASSWORD = "Corr3ct-horse"

# The schema the release before migrations made (its CREATE TABLE statements, verbatim).
OLD_AUTH = """CREATE TABLE auth_users (
    user_id VARCHAR PRIMARY KEY, username VARCHAR NOT NULL, username_norm VARCHAR NOT NULL UNIQUE,
    email VARCHAR NOT NULL, email_norm VARCHAR NOT NULL UNIQUE, password_hash VARCHAR NOT NULL,
    roles VARCHAR NOT NULL, created_at DOUBLE NOT NULL)"""
OLD_MEMORY = [
    """CREATE TABLE memory_items (memory_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
    tier VARCHAR NOT NULL, session_id VARCHAR, content VARCHAR NOT NULL,
    metadata VARCHAR NOT NULL DEFAULT '{}', importance DOUBLE NOT NULL DEFAULT 0.5,
    fact_key VARCHAR, parent_id VARCHAR, source_message_id VARCHAR,
    searchable BOOLEAN NOT NULL DEFAULT TRUE, created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX memory_items_id ON memory_items (memory_id)",
]


def config(data_dir: Path, url: str = "") -> dict[str, Any]:
    return {
        "kernel": {"data_dir": str(data_dir)},
        "plugins": {
            "enabled": ["storage", "auth", "memory"],
            "storage": {"url": url},
            "required": ["auth", "memory"],
            "auth": {"jwt_secret": SECRET, "bcrypt_rounds": 4},
            "memory": {"embedder": "hashing", "redis_url": "none", "index_min_vectors": 1},
        },
    }


async def login(client: Any, email: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def test_a_duckdb_file_from_before_migrations_keeps_working(llmmc, tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    con = duckdb.connect(str(data_dir / "llmmultichat.duckdb"))
    con.execute(OLD_AUTH)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    con.execute(
        "INSERT INTO auth_users VALUES ('u_old', 'olduser', 'olduser', 'old@example.com', "
        "'old@example.com', ?, 'user', 1700000000)",
        [hashed],
    )
    for statement in OLD_MEMORY:
        con.execute(statement)
    con.execute(
        "INSERT INTO memory_items (memory_id, user_id, tier, content, created_at, updated_at) "
        "VALUES ('mem_old', 'u_old', 'long_term', 'The user keeps bees', now(), now())"
    )
    con.close()
    client = await llmmc(config(data_dir))
    assert client.plugin_state("auth") == "RUNNING"
    headers = await login(client, "old@example.com")
    r = await client.get("/api/v1/memory/mem_old", headers=headers)
    assert r.status == 200 and (await r.json())["content"] == "The user keeps bees"
    # new writes land next to the old rows, and the ledger adopted the file
    r = await client.post("/api/v1/memory", json={"content": "Bees need water"}, headers=headers)
    assert r.status == 201
    ledger = await client.database.fetchall(
        "SELECT plugin, version FROM kernel_migrations ORDER BY plugin, version"
    )
    assert ("auth", 1) in ledger and ("memory", 2) in ledger


async def register(client: Any, name: str) -> dict[str, str]:
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    r = await client.post("/api/v1/auth/register", json=body)
    assert r.status == 201, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def test_memories_live_in_postgresql_and_a_fresh_process_finds_them(
    llmmc, postgres_database: str, tmp_path: Path
) -> None:
    url = fresh_schema_url(postgres_database)
    first = await llmmc(config(tmp_path / "a", url))
    headers = await register(first, "zoe")
    for text in ["Zoe plays the cello", "Zoe is allergic to cats", "Zoe lives in Lyon"]:
        r = await first.post("/api/v1/memory", json={"content": text}, headers=headers)
        assert r.status == 201
    # another kernel (its own data_dir, an empty index) on the same database
    second = await llmmc(config(tmp_path / "b", url))
    headers = await login(second, "zoe@example.com")
    r = await second.post(
        "/api/v1/memory/search", json={"query": "which instrument, the cello?"}, headers=headers
    )
    results = (await r.json())["results"]
    assert r.status == 200 and results[0]["content"] == "Zoe plays the cello"
    assert second.plugin("memory").index.loads == 1  # the index was filled from PostgreSQL
    stored = await second.database.fetchval("SELECT count(*) FROM memory_vectors_512")
    assert stored == 3


def cli(*args: str, config_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMMC_CONFIG": str(config_path)}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def write_toml(path: Path, cfg: dict[str, Any]) -> Path:
    kernel = cfg["kernel"]
    plugins = cfg["plugins"]
    lines = [
        "[kernel]",
        f'data_dir = "{kernel["data_dir"]}"',
        "[plugins]",
        f"enabled = {plugins['enabled']!r}".replace("'", '"'),
        "[plugins.storage]",
        f'url = "{plugins["storage"]["url"]}"',
        "[plugins.auth]",
        f'jwt_secret = "{SECRET}"',
        "bcrypt_rounds = 4",
        "[plugins.memory]",
        'embedder = "hashing"',
        'redis_url = "none"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_db_copy_moves_every_row_from_duckdb_to_postgresql(
    llmmc, postgres_database: str, tmp_path: Path
) -> None:
    source = await llmmc(config(tmp_path / "src"))
    users = {name: await register(source, name) for name in ("ann", "ben")}
    for name, headers in users.items():
        for text in [f"{name} likes tea", f"{name} owns a red bike", f"{name} and Lyon"]:
            r = await source.post("/api/v1/memory", json={"content": text}, headers=headers)
            assert r.status == 201
    await source.close()  # the DuckDB file belongs to one process
    target = fresh_schema_url(postgres_database)
    path = write_toml(tmp_path / "plugins.toml", config(tmp_path / "src"))
    done = cli("db", "copy", "--to", target, config_path=path)
    assert done.returncode == 0, done.stderr
    assert "auth_users" in done.stdout and "memory_vectors_512" in done.stdout
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in done.stdout.splitlines()[1:]
        if line.strip() and line.split()[1].isdigit()
    }
    assert counts["auth_users"] == 2 and counts["memory_items"] == 6
    assert counts["memory_vectors_512"] == 6
    # a second copy into the same (now full) target is refused and changes nothing
    again = cli("db", "copy", "--to", target, config_path=path)
    assert again.returncode == 1 and "already has" in again.stderr
    # the copied deployment serves the same accounts and memories
    moved = await llmmc(config(tmp_path / "dst", target))
    headers = await login(moved, "ann@example.com")
    r = await moved.post("/api/v1/memory/search", json={"query": "red bike"}, headers=headers)
    assert (await r.json())["results"][0]["content"] == "ann owns a red bike"
    r = await moved.get("/api/v1/memory/stats", headers=headers)
    assert r.status == 200


async def test_db_migrate_twice_at_once_on_a_fresh_database(
    postgres_database: str, tmp_path: Path
) -> None:
    import asyncio

    url = fresh_schema_url(postgres_database)
    path = write_toml(tmp_path / "plugins.toml", config(tmp_path / "d", url))
    runs = await asyncio.gather(
        *(asyncio.to_thread(cli, "db", "migrate", config_path=path) for _ in range(2))
    )
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    outputs = "".join(r.stdout for r in runs)
    # each step applied by exactly one of them; the other found it done
    for plugin in ("auth", "memory"):
        assert len(re.findall(rf"^{plugin}: schema version \d+ \(applied 1, ", outputs, re.M)) == 1
        assert len(re.findall(rf"^{plugin}: schema version \d+ \(up to date\)", outputs, re.M)) == 1
