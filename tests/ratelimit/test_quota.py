"""Daily LLM token quotas, counted from ``llm.usage`` events."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.auth.conftest import Accounts, auth_config, bearer

from .conftest import ChatLikePlugin, rl_config, unique_prefix

QUOTAS = {"quotas": {"tokens_per_day": {"user": 100, "admin": 0}}}


async def usage(server, user_id: str, prompt: object, completion: object = 0, also=None) -> None:
    """Publish an llm.usage event on ``server``; with ``also`` (another server on the same
    Redis bus), return only once that server has received it and run its handlers, so a
    double count there could not hide behind timing."""
    received = asyncio.Event()
    unsubscribe = None
    if also is not None and also is not server:

        async def seen(event):
            if event.data.get("marker") == marker:
                received.set()

        unsubscribe = also.kernel.bus.subscribe("llm.usage", seen)
    marker = uuid.uuid4().hex
    await server.kernel.bus.publish(
        "llm.usage",
        {
            "user_id": user_id,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "provider": "fake",
            "model": "m",
            "character": "lumina",
            "marker": marker,
        },
    )
    if unsubscribe is not None:
        await asyncio.wait_for(received.wait(), 10)
        # the other handlers of that delivery (the ratelimit plugin's) run in the same task
        await asyncio.gather(*list(getattr(also.kernel.bus, "_deliveries", ())))
        unsubscribe()


async def check_quota_enforced(server, other_server=None) -> None:
    other_server = other_server or server
    alice = server.auth_headers("alice")
    assert (await server.post("/test/chat", headers=alice)).status == 200
    await usage(server, "alice", 60, also=other_server)
    assert (await other_server.post("/test/chat", headers=alice)).status == 200
    await usage(server, "alice", 30, 20, also=other_server)
    assert await (await other_server.get("/test/quota", headers=alice)).json() == {
        "tokens_per_day": 100,
        "used_today": 110,
    }
    for srv in (server, other_server):
        r = await srv.post("/test/chat", headers=alice)
        assert r.status == 429
        problem = await r.json()
        assert problem["code"] == "QUOTA_EXCEEDED"
        assert problem["quota"] == {"tokens_per_day": 100, "used_today": 110}
        assert 0 < int(r.headers["Retry-After"]) <= 86400
        # WebSocket messages are refused the same way
        r = await srv.post("/test/ws-message", headers=alice)
        assert (await r.json())["code"] == "QUOTA_EXCEEDED"
        # routes that are not chat routes still serve alice
        assert (await srv.get("/api/v1/plugins", headers=alice)).status == 200
    # other users and unlimited roles are not affected
    assert (await other_server.post("/test/chat", headers=server.auth_headers("bob"))).status == 200
    await usage(server, "root", 10**9, also=other_server)
    root = server.auth_headers("root", admin=True)
    assert (await other_server.post("/test/chat", headers=root)).status == 200
    assert await (await other_server.get("/test/quota", headers=root)).json() == {
        "tokens_per_day": 0,
        "used_today": 10**9,
    }


async def test_quota_in_memory(llmmc):
    server = await llmmc(rl_config(QUOTAS), plugins={"chatlike": ChatLikePlugin})
    await check_quota_enforced(server)


async def test_malformed_usage_events_are_ignored(llmmc):
    server = await llmmc(rl_config(QUOTAS), plugins={"chatlike": ChatLikePlugin})
    for bad in ("500", -500, True, None, 1.5e9):
        await usage(server, "carol", bad, bad)
    await server.kernel.bus.publish("llm.usage", {"prompt_tokens": 500})
    h = server.auth_headers("carol")
    assert await (await server.get("/test/quota", headers=h)).json() == {
        "tokens_per_day": 100,
        "used_today": 0,
    }
    assert (await server.post("/test/chat", headers=h)).status == 200


@pytest.mark.redis
async def test_quota_shared_through_redis_counts_each_event_once(llmmc):
    """Two servers, Redis counters and a Redis bus: the event reaches both, counts once."""
    prefix = unique_prefix()
    cfg = rl_config(
        {
            **QUOTAS,
            "backend": "redis",
            "redis_url": "redis://127.0.0.1:6379/7",
            "key_prefix": prefix,
        }
    )
    cfg["kernel"] = {
        "bus": {
            "backend": "redis",
            "redis_url": "redis://127.0.0.1:6379/7",
            "channel_prefix": prefix,
        }
    }
    a = await llmmc(cfg, plugins={"chatlike": ChatLikePlugin})
    b = await llmmc(cfg, plugins={"chatlike": ChatLikePlugin})
    await check_quota_enforced(a, b)


async def test_me_shows_the_quota(llmmc):
    server = await llmmc(auth_config(ratelimit=QUOTAS))
    user = await Accounts(server).register()
    await usage(server, user["user"]["user_id"], 42, 8)
    r = await server.get("/api/v1/auth/me", headers=bearer(user["access_token"]))
    assert (await r.json())["quota"] == {"tokens_per_day": 100, "used_today": 50}
