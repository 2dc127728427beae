"""The ratelimit plugin follows ``[kernel.bus] redis_url`` unless it sets its own, and
``serve --workers`` refuses it on process-local counters or on a Redis of this machine
only while the bus's Redis is remote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from builtin_plugins.ratelimit.plugin import RateLimitPlugin, is_loopback, resolve_backend
from tests.serverproc import ServerProcess, ThrowawayRedis, unique_prefix

REMOTE_BUS = {"bus": {"backend": "redis", "redis_url": "redis://redis.internal:6379/0"}}
LOCAL_BUS = {"bus": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0"}}


def test_unset_backend_and_url_follow_the_bus() -> None:
    assert resolve_backend({}, {})[0] == "memory"
    assert resolve_backend({}, REMOTE_BUS) == ("redis", "redis://redis.internal:6379/0")
    own = {"redis_url": "redis://limits.internal:6379/2"}
    assert resolve_backend(own, REMOTE_BUS) == ("redis", "redis://limits.internal:6379/2")
    assert resolve_backend({"backend": "memory"}, REMOTE_BUS)[0] == "memory"
    # an explicit "redis" with no URL anywhere keeps the old default
    assert resolve_backend({"backend": "redis"}, {}) == ("redis", "redis://127.0.0.1:6379/0")


def test_workers_refuse_process_local_or_loopback_only_limits() -> None:
    local = RateLimitPlugin.process_local_settings
    assert local({}, {}) == ['[plugins.ratelimit] backend = "redis"']
    assert local({"backend": "memory"}, REMOTE_BUS) == ['[plugins.ratelimit] backend = "redis"']
    assert local({}, REMOTE_BUS) == []
    assert local({}, LOCAL_BUS) == []
    assert local({"backend": "redis"}, LOCAL_BUS) == []
    loopback = {"backend": "redis", "redis_url": "redis://localhost:6379/0"}
    assert local(loopback, LOCAL_BUS) == []  # one machine: its workers share it
    (why,) = local(loopback, REMOTE_BUS)
    assert why.startswith("[plugins.ratelimit] redis_url")
    assert is_loopback("redis://[::1]:6379/0") and is_loopback("unix:///run/redis.sock")
    assert not is_loopback("redis://10.0.0.5:6379/0")


@pytest.mark.redis
async def test_two_servers_with_only_the_bus_on_redis_share_one_limit(
    tmp_path: Path, throwaway_redis: ThrowawayRedis
) -> None:
    redis = throwaway_redis
    prefix = unique_prefix()
    config = {
        "kernel": {
            "bus": {"backend": "redis", "redis_url": redis.url, "channel_prefix": prefix + "ev:"}
        },
        "plugins": {
            "enabled": ["auth", "ratelimit"],
            "required": ["auth", "ratelimit"],
            "auth": {"jwt_secret": "follows-the-bus-" + "x" * 40, "bcrypt_rounds": 4},
            # no backend, no redis_url: the bus's Redis
            "ratelimit": {"routes": {"POST /api/v1/auth/login": "4/hour"}},
        },
    }
    servers = [ServerProcess(config, tmp_path, name=f"s{i}") for i in range(2)]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        statuses = []
        async with aiohttp.ClientSession() as session:
            for i in range(8):
                async with session.post(
                    servers[i % 2].base_url + "/api/v1/auth/login",
                    json={"email": f"nobody{i}@example.com", "password": "Wrong-pass1"},
                ) as r:
                    statuses.append(r.status)
        assert statuses == [401] * 4 + [429] * 4, statuses
        _, health, _ = await servers[0].request("GET", "/health")
        assert health["plugins"]["ratelimit"]["checks"]["backend"] == "redis"
    finally:
        for s in servers:
            s.stop()
