"""Redis stopped mid-test: the server keeps serving per on_backend_error, then recovers."""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import ChatLikePlugin, ThrowawayRedis, rl_config, unique_prefix

pytestmark = pytest.mark.redis


async def until(predicate, seconds: float = 20.0):
    """Poll ``predicate`` (async, returns a value or None) until it answers; fail at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        value = await predicate()
        if value is not None:
            return value
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.1)


async def ratelimit_status(server) -> str:
    health = await (await server.get("/health")).json()
    return health["plugins"]["ratelimit"]["status"]


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_redis_down_and_back(llmmc, throwaway_redis: ThrowawayRedis, policy: str):
    server = await llmmc(
        rl_config(
            {
                "backend": "redis",
                "redis_url": throwaway_redis.url,
                "key_prefix": unique_prefix(),
                "on_backend_error": policy,
                "backend_retry_seconds": 0.2,
                "routes": {"GET /api/v1/plugins": "3/hour"},
            }
        ),
        plugins={"chatlike": ChatLikePlugin},
    )
    r = await server.get("/api/v1/plugins")
    assert r.status == 200 and r.headers["RateLimit-Remaining"] == "2"
    assert await ratelimit_status(server) == "ok"

    throwaway_redis.stop()
    for _ in range(5):  # more requests than the limit allows
        r = await server.get("/api/v1/plugins")
        if policy == "open":
            assert r.status == 200
            assert "RateLimit-Limit" not in r.headers
        else:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            assert (await r.json())["code"] == "RATELIMIT_BACKEND_UNAVAILABLE"
    assert (await server.get("/ping")).status == 200  # exempt routes never touch Redis
    health = await (await server.get("/health")).json()
    assert health["plugins"]["ratelimit"]["status"] == "degraded"
    assert health["plugins"]["ratelimit"]["checks"]["reachable"] is False

    throwaway_redis.start()  # same port, empty data

    async def limited_again():
        r = await server.get("/api/v1/plugins")
        return r if "RateLimit-Limit" in r.headers else None

    r = await until(limited_again)
    assert r.status == 200
    statuses = [r.status]
    for _ in range(3):
        statuses.append((await server.get("/api/v1/plugins")).status)
    assert statuses == [200, 200, 200, 429]
    assert await ratelimit_status(server) == "ok"


async def test_down_at_startup_then_up(llmmc):
    """Redis missing when the server starts: it starts anyway and recovers when Redis comes."""
    redis = ThrowawayRedis()
    server = await llmmc(
        rl_config(
            {
                "backend": "redis",
                "redis_url": redis.url,
                "on_backend_error": "closed",
                "backend_retry_seconds": 0.2,
            }
        ),
        plugins={"chatlike": ChatLikePlugin},
    )
    assert server.plugin_state("ratelimit") == "RUNNING"
    assert (await server.get("/api/v1/plugins")).status == 503
    redis.start()
    try:

        async def served():
            r = await server.get("/api/v1/plugins")
            return r if r.status == 200 else None

        r = await until(served)
        assert "RateLimit-Remaining" in r.headers
    finally:
        redis.stop()
