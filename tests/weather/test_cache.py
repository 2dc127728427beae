"""Results are cached per (city, units) for cache_seconds: proven by the fake's request count."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis

from tests.weather.helpers import config, weather

# Redis DB for the weather tests (other areas use other DB numbers); each test also uses
# its own key prefix.
REDIS_DB_URL = "redis://127.0.0.1:6379/13"


def om(fake, **extra):
    return config(base_url=fake.url, geocoding_url=fake.url, **extra)


async def test_second_call_is_a_cache_hit(llmmc, open_meteo):
    client = await llmmc(om(open_meteo))
    first = await (await weather(client, "Berlin")).json()
    second = await (await weather(client, "  berlin ", user="someone-else")).json()
    assert first["result"] == second["result"]
    assert open_meteo.count("/v1/search") == 1
    assert open_meteo.count("/v1/forecast") == 1


async def test_units_and_cities_are_cached_separately(llmmc, open_meteo):
    client = await llmmc(om(open_meteo))
    for _ in range(2):
        assert (await weather(client, "Berlin", "metric")).status == 200
        assert (await weather(client, "Berlin", "imperial")).status == 200
        assert (await weather(client, "Tokyo", "metric")).status == 200
    assert open_meteo.count("/v1/forecast") == 3


async def test_cache_seconds_zero_disables_the_cache(llmmc, open_meteo):
    client = await llmmc(om(open_meteo, cache_seconds=0))
    for _ in range(3):
        assert (await weather(client, "Berlin")).status == 200
    assert open_meteo.count("/v1/forecast") == 3


async def test_concurrent_calls_share_one_upstream_fetch(llmmc, open_meteo):
    client = await llmmc(om(open_meteo, cache_seconds=0))
    open_meteo.delay = 0.5  # keeps the first fetch in flight while the others arrive
    answers = await asyncio.gather(*(weather(client, "Berlin") for _ in range(5)))
    assert [r.status for r in answers] == [200] * 5
    assert open_meteo.count("/v1/forecast") == 1


@pytest.mark.redis
async def test_redis_cache_is_shared_between_instances(llmmc, open_meteo):
    prefix = f"test-weather-{uuid.uuid4().hex}:"
    cfg = om(open_meteo, redis_url=REDIS_DB_URL, cache_prefix=prefix, cache_seconds=120)
    first = await llmmc(cfg)
    second = await llmmc(cfg)  # another server instance, same Redis
    r1 = await (await weather(first, "Berlin")).json()
    r2 = await (await weather(second, "Berlin")).json()
    assert r1["result"] == r2["result"]
    assert open_meteo.count("/v1/forecast") == 1

    redis = aioredis.Redis.from_url(REDIS_DB_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        assert len(keys) == 1
        assert 0 < await redis.ttl(keys[0]) <= 120
        assert json.loads(await redis.get(keys[0])) == r1["result"]
        # a tampered entry is not served: the plugin fetches again
        await redis.set(keys[0], json.dumps({"city": 1}), ex=60)
        assert (await weather(first, "Berlin")).status == 200
        assert open_meteo.count("/v1/forecast") == 2
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{prefix}*")] or ["-"])
        await redis.aclose()

    health = await (await first.get("/health")).json()
    assert health["plugins"]["weather"]["checks"]["cache"] == "redis"


@pytest.mark.redis
async def test_bus_on_redis_means_cache_in_redis(llmmc, open_meteo):
    prefix = f"test-weather-{uuid.uuid4().hex}:"
    cfg = om(open_meteo, cache_prefix=prefix)
    cfg["kernel"] = {"bus": {"backend": "redis", "redis_url": REDIS_DB_URL}}
    client = await llmmc(cfg)
    assert (await weather(client, "Tokyo")).status == 200
    redis = aioredis.Redis.from_url(REDIS_DB_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        assert len(keys) == 1
        await redis.delete(*keys)
    finally:
        await redis.aclose()


async def test_redis_away_still_answers_and_reports_degraded(llmmc, open_meteo):
    # a port nothing listens on
    cfg = om(open_meteo, redis_url="redis://127.0.0.1:1/0")
    client = await llmmc(cfg)
    assert client.plugin_state("weather") == "RUNNING"
    for _ in range(2):
        r = await weather(client, "Berlin")
        assert r.status == 200
    assert open_meteo.count("/v1/forecast") == 2  # no cache to hit
    health = await (await client.get("/health")).json()
    assert health["plugins"]["weather"]["status"] == "degraded"
    assert "Redis unreachable" in health["plugins"]["weather"]["detail"]
