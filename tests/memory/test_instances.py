"""Memory across instances with a remote (OpenAI-compatible) embedder: two kernels on
one PostgreSQL database and one Redis, as two servers behind a load balancer. The
embedder's dimension is known only after its first answer, and on whichever instance
that was: the others must learn the vector tables from the database."""

from __future__ import annotations

from typing import Any

import pytest

from builtin_plugins.storage.testing import fresh_schema_url
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import unique_prefix

from .conftest import BASE, memory_plugin

pytestmark = pytest.mark.redis
REDIS = "redis://127.0.0.1:6379/9"


async def two_instances(llmmc: Any, url: str, fake_url: str) -> list[Any]:
    prefix = unique_prefix()
    config = {
        "kernel": {
            "bus": {"backend": "redis", "redis_url": REDIS, "channel_prefix": prefix + "ev:"}
        },
        "plugins": {
            "enabled": ["memory"],
            "memory": {
                "embedder": "openai",
                "base_url": fake_url,
                "model": "text-embedding-3-small",
                "redis_url": REDIS,
                "redis_prefix": prefix + "mem:",
            },
        },
    }
    # Both start before anything is embedded: neither knows the dimension.
    return [await llmmc(config, database_url=url) for _ in range(2)]


async def test_remote_embedder_across_instances(llmmc: Any, postgres_database: str) -> None:
    url = fresh_schema_url(postgres_database)
    async with FakeOpenAI() as fake:
        a, b = await two_instances(llmmc, url, fake.url)
        for client in (a, b):
            await memory_plugin(client).idle()
        h = a.auth_headers("u1")
        r = await a.post(BASE, json={"content": "the user plays the cello"}, headers=h)
        assert r.status == 201
        cello = (await r.json())["memory_id"]
        await a.post(BASE, json={"content": "tax forms are due in April"}, headers=h)
        # B finds it by meaning alone, at once, and counts it as embedded.
        r = await b.post(
            f"{BASE}/search", json={"query": "cello player", "mode": "semantic"}, headers=h
        )
        assert r.status == 200
        assert (await r.json())["results"][0]["memory_id"] == cello
        stats = await (await b.get(f"{BASE}/stats", headers=h)).json()
        assert stats["total"] == 2 and stats["embedded"] == 2
        # A delete through B takes the vector too: A's stats and searches agree.
        assert (await b.delete(f"{BASE}/{cello}", headers=h)).status == 204
        stats = await (await a.get(f"{BASE}/stats", headers=h)).json()
        assert stats["total"] == 1 and stats["embedded"] == 1
        for client in (a, b):
            r = await client.post(
                f"{BASE}/search", json={"query": "cello player", "mode": "semantic"}, headers=h
            )
            assert cello not in [x["memory_id"] for x in (await r.json())["results"]]
        # A user deleted through B: nothing of theirs is left, vectors included.
        h2 = a.auth_headers("u2")
        await a.post(BASE, json={"content": "u2 likes sailing"}, headers=h2)
        await b.kernel.bus.publish("user.deleted", {"user_id": "u2"})
        await memory_plugin(b).idle()
        store = memory_plugin(a).store
        assert store is not None
        for dim in await store.dims():
            left = await store.db.fetchval(
                f"SELECT count(*) FROM memory_vectors_{dim} WHERE user_id = $1", ["u2"]
            )
            assert left == 0
        stats = await (await a.get(f"{BASE}/stats", headers=h2)).json()
        assert stats["total"] == 0 and stats["embedded"] == 0
