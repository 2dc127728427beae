"""Short-term turns and session summaries served from Redis when it is configured."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from .conftest import BASE, settle
from .test_events import say

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
async def prefix() -> Any:
    prefix = f"test:memory:{uuid.uuid4().hex[:8]}:"
    yield prefix
    r = aioredis.from_url(REDIS_URL, decode_responses=True)
    keys = [k async for k in r.scan_iter(match=prefix + "*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def tier_keys(r: Any, prefix: str) -> list[str]:
    """The tiers' keys (not the vector index's versions, ``<prefix>iv:<user>``)."""
    keys = [k async for k in r.scan_iter(match=prefix + "*")]
    return sorted(k for k in keys if not k.startswith(prefix + "iv:"))


async def test_short_and_mid_term_in_redis(llmmc: Any, prefix: str) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {
                    "embedder": "hashing",
                    "redis_url": REDIS_URL,
                    "redis_prefix": prefix,
                    "short_term_turns": 3,
                    "summary_every_turns": 2,
                    "mid_term_ttl_seconds": 3600,
                },
            }
        }
    )
    r = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        for i in range(5):
            await say(client, "alice", "s1", f"turn number {i} about sailing")
        await say(client, "bob", "s1", "bob's turn")
        keys = await tier_keys(r, prefix)
        assert keys == [f"{prefix}alice:s1:mt", f"{prefix}alice:s1:st", f"{prefix}bob:s1:st"]
        assert await r.llen(f"{prefix}alice:s1:st") == 3
        assert 0 < await r.ttl(f"{prefix}alice:s1:mt") <= 3600
        view = await (
            await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers("alice"))
        ).json()
        assert view["recent_turns_source"] == "redis"
        assert [t["content"] for t in view["recent_turns"]] == [
            "turn number 2 about sailing",
            "turn number 3 about sailing",
            "turn number 4 about sailing",
        ]
        assert view["summary"]["tier"] == "mid_term"
        # The summary and every turn are in DuckDB too.
        stats = await (
            await client.get(f"{BASE}/stats", headers=client.auth_headers("alice"))
        ).json()
        assert stats["tiers"]["mid_term"] == 1 and stats["tiers"]["short_term"] == 5
        # Deleting the session clears its keys; bob's stay.
        await client.delete(f"{BASE}/sessions/s1/all", headers=client.auth_headers("alice"))
        assert await tier_keys(r, prefix) == [f"{prefix}bob:s1:st"]
        # user.deleted clears the user's keys.
        await client.kernel.bus.publish("user.deleted", {"user_id": "bob"})
        assert await tier_keys(r, prefix) == []
        # After Redis lost the keys (expiry), the store answers and refills it.
        await say(client, "carol", "s2", "hello there")
        await r.delete(f"{prefix}carol:s2:st")
        view = await (
            await client.get(f"{BASE}/sessions/s2", headers=client.auth_headers("carol"))
        ).json()
        assert view["recent_turns_source"] == "store"
        assert await r.llen(f"{prefix}carol:s2:st") == 1
        await settle(client)
    finally:
        await r.aclose()


async def test_redis_down_degrades_but_serves(llmmc: Any, prefix: str) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {
                    "embedder": "hashing",
                    "redis_url": "redis://127.0.0.1:1/0",
                    "redis_prefix": prefix,
                },
            }
        }
    )
    await say(client, "alice", "s1", "My name is Alice.")
    view = await (
        await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers("alice"))
    ).json()
    assert view["recent_turns_source"] == "store" and len(view["recent_turns"]) == 1
    health = await (await client.get("/health")).json()
    assert health["plugins"]["memory"]["status"] == "degraded"
    assert "Redis" in health["plugins"]["memory"]["detail"]
