"""Shared by every test folder. The ``llmmc`` fixture comes from ``kernel.testing`` (the pytest11 entry point)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, ThrowawayRedis, redis_available, unique_prefix


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if redis_available():
        return
    skip = pytest.mark.skip(reason="Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    redis = ThrowawayRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
async def two_servers(tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    """Two ``llmmultichat serve`` processes with auth and ratelimit, sharing the Redis at
    127.0.0.1:6379 (DB 9, a unique prefix) for their bus, rate limits and token
    revocations; each has its own DuckDB file. Login is limited to 10/hour in total."""
    prefix = unique_prefix()
    redis_url = "redis://127.0.0.1:6379/9"
    config = {
        "kernel": {
            "bus": {
                "backend": "redis",
                "redis_url": redis_url,
                "channel_prefix": prefix + "events:",
            }
        },
        "plugins": {
            "enabled": ["auth", "ratelimit"],
            "required": ["auth", "ratelimit"],
            "auth": {
                "jwt_secret": "two-servers-share-this-secret-0123456789",
                "bcrypt_rounds": 4,
                "redis_prefix": prefix + "auth:",
            },
            "ratelimit": {
                "backend": "redis",
                "redis_url": redis_url,
                "key_prefix": prefix + "rl:",
                "default": "100000/minute",
                "routes": {
                    "POST /api/v1/auth/login": "10/hour",
                    "POST /api/v1/auth/register": "100000/minute",
                },
            },
        },
    }
    servers = [ServerProcess(config, tmp_path, name=f"server{i}") for i in range(2)]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        yield servers
    finally:
        for s in servers:
            s.stop()
