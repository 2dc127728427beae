"""sdk.redispipe against a real Redis: replies reach the right callers when many tasks
share the connection, errors stay with their command, and an unreachable or silent Redis
fails fast and is reconnected to later."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from sdk.redispipe import RedisPipe, RedisReplyError, RedisUnavailable
from tests.serverproc import ThrowawayRedis, free_port

pytestmark = pytest.mark.redis
REDIS = "redis://127.0.0.1:6379/0"


async def test_concurrent_callers_each_get_their_own_reply() -> None:
    pipe = RedisPipe(REDIS)
    key = f"llmmc-test:pipe:{uuid.uuid4().hex}"
    try:
        counts = await asyncio.gather(*(pipe.call("INCR", key) for _ in range(500)))
        assert sorted(counts) == list(range(1, 501))  # every INCR answered once
        names = [f"{key}:{i}" for i in range(200)]
        await asyncio.gather(*(pipe.call("SET", n, f"value-{i}") for i, n in enumerate(names)))
        got = await asyncio.gather(*(pipe.call("GET", n) for n in names))
        assert got == [f"value-{i}" for i in range(200)]
        assert await pipe.call("MGET", names[0], key + ":missing") == ["value-0", None]
        await pipe.call("DEL", key, *names)
    finally:
        await pipe.close()


async def test_an_error_reply_fails_only_its_own_command() -> None:
    pipe = RedisPipe(REDIS)
    key = f"llmmc-test:pipe:{uuid.uuid4().hex}"
    try:
        await pipe.call("SET", key, "text")
        ok, bad, ok2 = await asyncio.gather(
            pipe.call("GET", key),
            pipe.call("INCR", key),
            pipe.call("STRLEN", key),
            return_exceptions=True,
        )
        assert ok == "text" and ok2 == 4
        assert isinstance(bad, RedisReplyError) and "not an integer" in str(bad)
        assert pipe.up
        await pipe.call("DEL", key)
    finally:
        await pipe.close()


async def test_a_script_is_sent_whole_only_when_redis_lacks_it() -> None:
    pipe = RedisPipe(REDIS)
    script = pipe.script(f"-- {uuid.uuid4().hex}\nreturn ARGV[1] .. KEYS[1]")
    try:
        assert await pipe.call("SCRIPT", "EXISTS", script.sha) == [0]
        assert await script(["k"], ["v"]) == "vk"  # NOSCRIPT, then EVAL
        assert await pipe.call("SCRIPT", "EXISTS", script.sha) == [1]
        assert await script(["x"], [1]) == "1x"  # EVALSHA
    finally:
        await pipe.close()


async def test_the_database_number_of_the_url_is_used() -> None:
    pipe = RedisPipe("redis://127.0.0.1:6379/7")
    key = f"llmmc-test:pipe:{uuid.uuid4().hex}"
    plain = aioredis.from_url("redis://127.0.0.1:6379/7", decode_responses=True)
    try:
        await pipe.call("SET", key, "in seven", "EX", 60)
        assert await plain.get(key) == "in seven"
    finally:
        await plain.delete(key)
        await plain.aclose()
        await pipe.close()


async def test_redis_away_fails_fast_then_back_is_used_again(
    throwaway_redis: ThrowawayRedis,
) -> None:
    pipe = RedisPipe(throwaway_redis.url, timeout=0.5, retry_seconds=0.3)
    try:
        assert await pipe.call("PING") == "PONG"
        throwaway_redis.stop()
        with pytest.raises(RedisUnavailable):
            await pipe.call("PING")
        t = time.monotonic()
        with pytest.raises(RedisUnavailable):  # within retry_seconds: no attempt at all
            await pipe.call("PING")
        assert time.monotonic() - t < 0.05
        assert not pipe.up
        throwaway_redis.start()  # same port
        await asyncio.sleep(0.35)
        assert await pipe.call("PING") == "PONG"
        assert pipe.up
    finally:
        await pipe.close()


async def test_a_silent_redis_is_dropped_after_the_timeout() -> None:
    pipe = RedisPipe(REDIS, timeout=0.3, retry_seconds=0.1)
    try:
        t = time.monotonic()
        with pytest.raises(RedisUnavailable):  # BLPOP holds the reply back for 5 s
            await pipe.call("BLPOP", f"llmmc-test:pipe:{uuid.uuid4().hex}", 5)
        assert time.monotonic() - t < 2.0
        await asyncio.sleep(0.15)
        assert await pipe.call("PING") == "PONG"  # a new connection
    finally:
        await pipe.close()


async def test_nobody_listening_is_unavailable_not_a_hang() -> None:
    pipe = RedisPipe(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    t = time.monotonic()
    with pytest.raises(RedisUnavailable):
        await pipe.call("PING")
    assert time.monotonic() - t < 2.0
    await pipe.close()
