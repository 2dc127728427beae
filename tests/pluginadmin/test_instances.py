"""Plugins at run time across real processes: two instances on one PostgreSQL database and
one Redis apply a change within 2 s; one that starts later starts with it; the command line
changes a running deployment too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from builtin_plugins.storage.testing import fresh_schema_url
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import BIN, ServerProcess, redis_available, unique_prefix
from tests.translate.chat_setup import chat_table

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
PASSWORD = "R00t-password"


def deployment(database_url: str, meteo_url: str, openai_url: str) -> dict[str, Any]:
    prefix = unique_prefix()
    return {
        "kernel": {
            "log_level": "WARNING",
            "bus": {
                "backend": "redis",
                "redis_url": "redis://127.0.0.1:6379/0",
                "channel_prefix": prefix,
            },
        },
        "plugins": {
            "enabled": ["storage", "pluginadmin", "auth", "chat", "weather"],
            "required": ["auth"],
            "storage": {"url": database_url, "pool_size": 3},
            "pluginadmin": {"poll_seconds": 1.0},
            "auth": {
                "jwt_secret": "instances-" + "k" * 48,
                "bcrypt_rounds": 4,
                "redis_prefix": prefix + "a:",
            },
            "weather": {"base_url": meteo_url, "geocoding_url": meteo_url},
            "chat": chat_table(openai_url),
        },
    }


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "LLMMC_ADMIN_PASSWORD": PASSWORD},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


async def until(predicate: Any, timeout: float) -> float:
    """Seconds until ``predicate()`` (a coroutine function) is true; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


async def test_two_instances_follow_one_change_and_a_late_one_starts_with_it(
    postgres_database, tmp_path
):
    if not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    async with FakeOpenMeteo() as meteo, FakeOpenAI() as fake:
        config = deployment(fresh_schema_url(postgres_database), meteo.url, fake.url)
        a = ServerProcess(config, tmp_path, name="a").start()
        b = ServerProcess(config, tmp_path, name="b").start()
        late = None
        try:
            made = cli(
                a, "users", "create-admin", "--email", "root@example.com", "--username", "root"
            )
            assert made.returncode == 0, made.stderr
            async with aiohttp.ClientSession() as s:
                async with s.post(
                    a.url + "/api/v1/auth/login",
                    json={"email": "root@example.com", "password": PASSWORD},
                ) as r:
                    token = (await r.json())["access_token"]
                h = {"Authorization": f"Bearer {token}"}

                async def weather_status(server: ServerProcess) -> int:
                    async with s.get(server.url + "/api/v1/plugins/weather", headers=h) as r:
                        return r.status

                async def on_b(expected: int) -> Any:
                    return lambda: _is(weather_status(b), expected)

                assert await weather_status(b) == 200
                # a chat socket on B, open through every change made through A
                ws = await s.ws_connect(b.url.replace("http", "ws") + "/ws/chat", headers=h)
                turns = 0

                async def turn() -> list[str]:
                    nonlocal turns
                    turns += 1
                    fake.queue(f"reply {turns}")
                    rid = f"t{turns}"
                    await ws.send_json({"type": "chat", "message": "hi", "request_id": rid})
                    while True:
                        frame = await ws.receive_json(timeout=20)
                        if frame.get("request_id") == rid and frame.get("type") in (
                            "complete",
                            "error",
                        ):
                            assert frame["type"] == "complete", frame
                            break
                    return sorted(
                        t["function"]["name"] for t in fake.requests[-1].get("tools") or []
                    )

                tools = await turn()
                assert "weather" in tools
                print(f"\nB's socket open; turn 1 offered {tools}")
                async with s.patch(
                    a.url + "/api/v1/admin/plugins/weather", json={"enabled": False}, headers=h
                ) as r:
                    assert r.status == 200, await r.text()
                took = await until(await on_b(404), 2.0)
                print(f"weather disabled through A: in force on B after {took:.2f} s")
                tools = await turn()
                assert "weather" not in tools
                print(f"B's socket still open; turn 2 offered {tools}")

                # configuration: through B this time, seen on A
                async with s.patch(
                    b.url + "/api/v1/admin/plugins/weather",
                    json={"enabled": True, "config": {"cache_seconds": 9}},
                    headers=h,
                ) as r:
                    assert r.status == 200, await r.text()

                async def a_has_new_config() -> bool:
                    async with s.get(a.url + "/api/v1/admin/plugins", headers=h) as r:
                        found = {p["name"]: p for p in (await r.json())["plugins"]}["weather"]
                    return found["enabled"] and found["config"]["cache_seconds"] == 9

                took = await until(a_has_new_config, 2.0)
                print(
                    f"weather enabled with cache_seconds=9 through B: in force on A after {took:.2f} s"
                )
                tools = await turn()
                assert "weather" in tools
                print(f"B's socket still open (closed: {ws.closed}); turn 3 offered {tools}")
                assert not ws.closed
                await ws.close()

                # the command line beside the running servers (no socket here: PostgreSQL)
                done = cli(a, "plugins", "disable", "weather")
                assert done.returncode == 0, done.stderr
                await until(lambda: _is(weather_status(a), 404), 3.0)
                await until(lambda: _is(weather_status(b), 404), 3.0)
                listing = cli(a, "plugins", "list")
                line = next(x for x in listing.stdout.splitlines() if x.startswith("weather "))
                assert "no" in line.split() and "enabled, cache_seconds" in line

                # an instance started now starts with the stored change
                late = ServerProcess(config, tmp_path, name="late").start()
                assert await weather_status(late) == 404
                async with s.get(
                    late.url + "/api/v1/admin/plugins/weather/history", headers=h
                ) as r:
                    events = (await r.json())["events"]
                # the history is one for every instance: both A's and B's changes are there
                assert {e["kind"] for e in events} >= {"state", "config"}
                assert (
                    sum(1 for e in events if e["kind"] == "state" and e["detail"] == "DISABLED")
                    >= 2
                )

                reset = cli(a, "plugins", "reset", "weather")
                assert reset.returncode == 0, reset.stderr
                for server in (a, b, late):
                    await until(lambda srv=server: _is(weather_status(srv), 200), 3.0)
        finally:
            for server in (a, b, late):
                if server is not None:
                    server.stop()


async def _is(status: Any, expected: int) -> bool:
    return (await status) == expected
