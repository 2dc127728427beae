"""The event bus: topics and wildcards, isolated subscribers, and Redis carrying events
between two real server processes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from kernel.bus import MemoryBus, RedisBus
from sdk.events import Event
from tests.serverproc import ServerProcess, unique_prefix, wait_for


async def test_subscribers_are_isolated(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    got: list[str] = []

    async def broken(event: Event) -> None:
        raise ValueError("handler bug")

    async def fine(event: Event) -> None:
        got.append(f"{event.topic}:{event.data['n']}:{event.source}")

    bus.subscribe("chat.*", broken, plugin="clumsy")
    bus.subscribe("chat.message.created", fine, plugin="careful")
    bus.subscribe("*", fine, plugin="everything")
    with caplog.at_level(logging.ERROR):
        await bus.publish("chat.message.created", {"n": 1}, source="chat")
        await bus.publish("user.deleted", {"n": 2}, source="auth")
    assert got == [
        "chat.message.created:1:chat",
        "chat.message.created:1:chat",
        "user.deleted:2:auth",
    ]
    assert "event handler of plugin 'clumsy' failed on chat.message.created" in caplog.text


async def test_unsubscribe() -> None:
    bus = MemoryBus()
    got: list[Event] = []

    async def h(e: Event) -> None:
        got.append(e)

    off = bus.subscribe("a", h)
    await bus.publish("a", {})
    off()
    await bus.publish("a", {})
    assert len(got) == 1


@pytest.mark.redis
async def test_redis_bus_delivers_between_two_buses_once() -> None:
    prefix = unique_prefix()  # no other test run's events on these channels
    one = RedisBus("redis://127.0.0.1:6379/0", channel_prefix=prefix)
    two = RedisBus("redis://127.0.0.1:6379/0", channel_prefix=prefix)
    seen: dict[str, list[Any]] = {"one": [], "two": []}

    async def on_one(e: Event) -> None:
        seen["one"].append(e.data)

    async def on_two(e: Event) -> None:
        seen["two"].append(e.data)

    one.subscribe("x.*", on_one)
    two.subscribe("x.*", on_two)
    # work done once per event for the whole deployment: only where it was published
    once: list[tuple[str, Any]] = []

    async def on_one_local(e: Event) -> None:
        once.append(("one", e.data))

    async def on_two_local(e: Event) -> None:
        once.append(("two", e.data))

    one.subscribe("x.*", on_one_local, local_only=True)
    two.subscribe("x.*", on_two_local, local_only=True)
    await one.start()
    await two.start()
    try:
        await one.publish("x.y", {"n": 1})

        async def arrived() -> bool:
            return bool(seen["two"])

        await wait_for(arrived, 5)
        await asyncio.sleep(0.2)
        assert seen == {"one": [{"n": 1}], "two": [{"n": 1}]}  # once each, no echo
        await two.publish("x.z", {"n": 2})
        await wait_for(lambda: _len_is(seen["one"], 2), 5)
        assert once == [("one", {"n": 1}), ("two", {"n": 2})]
    finally:
        await one.stop()
        await two.stop()


@pytest.mark.redis
def test_events_reach_another_server_process(tmp_path: Path, samples_env: dict[str, str]) -> None:
    prefix = unique_prefix()  # tmp_path.name is the same in concurrent runs of the suite
    config = {
        "kernel": {
            "bus": {
                "backend": "redis",
                "redis_url": "redis://127.0.0.1:6379/0",
                "channel_prefix": prefix,
            }
        },
        "plugins": {"enabled": ["echoer"]},
    }
    a = ServerProcess(config, tmp_path, env=samples_env, name="a").start()
    b = ServerProcess(config, tmp_path, env=samples_env, name="b").start()

    async def scenario() -> None:
        status, _, _ = await a.request(
            "POST", "/api/v1/echoer/publish", json={"topic": "sample.hello", "data": {"from": "a"}}
        )
        assert status == 200

        async def received() -> Any:
            _, body, _ = await b.request("GET", "/api/v1/echoer/events")
            return body["events"]

        events = await wait_for(received, 10)
        assert events == [{"topic": "sample.hello", "data": {"from": "a"}, "source": "echoer"}]
        _, body, _ = await a.request("GET", "/api/v1/echoer/events")
        assert body["events"] == events  # the publisher got it too, exactly once
        _, health, _ = await b.request("GET", "/health")
        assert health["bus"]["backend"] == "redis"

    try:
        asyncio.run(scenario())
    finally:
        a.stop()
        b.stop()


async def _len_is(items: list[Any], n: int) -> bool:
    return len(items) == n
