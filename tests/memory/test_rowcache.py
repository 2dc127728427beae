"""The rows and links a reply's context reads are kept in process on DuckDB (rowcache.py):
a turn's context is then read without a query, and never shows a memory as it was
before a change, nor one that is gone."""

from __future__ import annotations

import asyncio
from typing import Any

from builtin_plugins.memory.domain import Memory, utcnow
from builtin_plugins.memory.rowcache import RowCache
from builtin_plugins.storage.testing import fresh_schema_url

from .conftest import BASE, memory_plugin
from .test_context import context
from .test_events import say

CONFIG = {
    "plugins": {
        "enabled": ["memory"],
        "memory": {"embedder": "hashing", "context_min_score": 0.2},
    }
}


async def add(client: Any, user: str, content: str, **extra: Any) -> dict[str, Any]:
    r = await client.post(
        BASE, json={"content": content, **extra}, headers=client.auth_headers(user)
    )
    assert r.status == 201, await r.text()
    return dict(await r.json())


async def test_context_is_read_from_the_cache_and_follows_every_change(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    cache = memory_plugin(client).store.rows
    assert cache.enabled
    dog = await add(client, "alice", "Bruno is the user's dog")
    vet = await add(client, "alice", "Vet appointment on Friday at nine")
    await add(
        client,
        "alice",
        "pet care plan",
        tier="associative",
        metadata={"related": [dog["memory_id"], vet["memory_id"]]},
    )
    question = "tell me about Bruno the dog"
    first = await context(client, "alice", None, question)
    hits = cache.hits
    again = await context(client, "alice", None, question)
    assert again == first
    assert cache.hits > hits  # the second time the rows came from the cache
    assert vet["memory_id"] in {i["memory_id"] for i in again if i["tier"] == "associative"}

    # A deleted memory leaves the context, and so does the hop through its links.
    h = client.auth_headers("alice")
    assert (await client.delete(f"{BASE}/{vet['memory_id']}", headers=h)).status == 204
    ids = {i["memory_id"] for i in await context(client, "alice", None, question)}
    assert vet["memory_id"] not in ids and dog["memory_id"] in ids
    assert (await client.delete(f"{BASE}/{dog['memory_id']}", headers=h)).status == 204
    ids = {i["memory_id"] for i in await context(client, "alice", None, question)}
    assert dog["memory_id"] not in ids

    # A fact rewritten (the same key, a new value) is shown as it is now.
    await say(client, "alice", "s1", "I live in Lyon.")
    assert "The user lives in Lyon." in [
        i["content"] for i in await context(client, "alice", None, "where does the user live")
    ]
    await say(client, "alice", "s1", "I live in Porto.")
    lives = [
        i["content"]
        for i in await context(client, "alice", None, "where does the user live")
        if "lives" in i["content"]
    ]
    assert lives == ["The user lives in Porto."]

    # Another user's cached rows are never served to this one.
    await add(client, "bob", "Bruno is the name of Bob's cat")
    bob = await context(client, "bob", None, question)
    assert bob and all("Bob" in i["content"] for i in bob)
    assert all("Bob" not in i["content"] for i in await context(client, "alice", None, question))


async def test_a_deleted_users_memories_are_not_served_from_the_cache(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    await add(client, "carol", "Carol's locker code is 4711")
    assert await context(client, "carol", None, "locker code")
    await memory_plugin(client).store.delete_user("carol")
    assert await context(client, "carol", None, "locker code") == []


async def test_off_on_postgres_and_when_its_budget_is_zero(
    llmmc: Any, postgres_database: str
) -> None:
    # PostgreSQL may be shared by several processes: every read goes to the database.
    pg = await llmmc(CONFIG, database_url=fresh_schema_url(postgres_database))
    assert not memory_plugin(pg).store.rows.enabled
    await add(pg, "dan", "Dan's bike is blue")
    assert await context(pg, "dan", None, "bike colour")
    off = await llmmc(
        {"plugins": {"enabled": ["memory"], "memory": {"embedder": "hashing", "row_cache_mb": 0}}}
    )
    assert not memory_plugin(off).store.rows.enabled
    await add(off, "dan", "Dan's bike is blue")
    assert [i["content"] for i in await context(off, "dan", None, "bike colour")] == [
        "Dan's bike is blue"
    ]


def row(user_id: str, memory_id: str, content: str = "x") -> Memory:
    now = utcnow()
    return Memory(
        memory_id, user_id, "long_term", None, content, {"k": [1]}, 0.5, None, None, None,
        True, now, now,
    )  # fmt: skip


def test_a_read_that_raced_a_write_is_not_kept() -> None:
    cache = RowCache(1 << 20)
    _, missing, ticket = cache.rows("u", ["m1"])
    assert missing == ["m1"]
    with cache.writing("u"):  # a write of the same user while the read was out
        pass
    cache.keep_rows(ticket, [row("u", "m1", "old")])
    assert cache.rows("u", ["m1"])[1] == ["m1"]  # not kept: it may be the old text
    # A read with no write meanwhile is kept; so is a write's change once committed.
    _, _, ticket = cache.rows("u", ["m1"])
    cache.keep_rows(ticket, [row("u", "m1", "old")])
    cache.updated("u", "m1", content="new")
    (found,), missing, _ = cache.rows("u", ["m1"])
    assert missing == [] and found.content == "new"
    # What a caller gets is its own copy.
    found.metadata["k"].append(2)
    assert cache.rows("u", ["m1"])[0][0].metadata == {"k": [1]}
    # A write for every user at once (a retention rule) stops every read in flight.
    _, _, ticket = cache.rows("v", ["m2"])
    with cache.writing(None):
        pass
    cache.keep_rows(ticket, [row("v", "m2")])
    assert cache.rows("v", ["m2"])[1] == ["m2"]


def test_the_cache_stays_within_its_budget() -> None:
    cache = RowCache(200_000)
    for u in range(50):
        user = f"user{u}"
        _, _, ticket = cache.rows(user, [f"{user}-{i}" for i in range(20)])
        cache.keep_rows(ticket, [row(user, f"{user}-{i}", "y" * 500) for i in range(20)])
        assert cache.nbytes() <= 200_000
    users, rows = cache.counts()
    assert 0 < users < 50 and rows > 0
    assert cache.rows("user49", ["user49-0"])[1] == []  # the most recent user stays
    assert cache.rows("user0", ["user0-0"])[1] == ["user0-0"]  # the oldest went first
    cache.clear()
    assert cache.nbytes() == 0


async def test_concurrent_reads_and_deletes_never_bring_back_a_deleted_memory(
    llmmc: Any,
) -> None:
    client = await llmmc(CONFIG)
    h = client.auth_headers("erin")
    made = [await add(client, "erin", f"Erin's note number {i} about gardening") for i in range(12)]

    async def read_many() -> None:
        for _ in range(20):
            await context(client, "erin", None, "gardening notes")

    async def delete_all() -> None:
        for m in made:
            assert (await client.delete(f"{BASE}/{m['memory_id']}", headers=h)).status == 204
            await asyncio.sleep(0)

    await asyncio.gather(read_many(), read_many(), delete_all())
    assert await context(client, "erin", None, "gardening notes") == []
