"""Starting together on a fresh database, and ``serve --workers N``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from builtin_plugins.storage.testing import fresh_schema_url
from tests.prometheus import Samples, parse, value
from tests.serverproc import ServerProcess, unique_prefix, wait_for

from .conftest import bearer, cluster_config, login, register

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def fresh_config(postgres_database: str, upstream: Any) -> dict[str, Any]:
    """The cluster's configuration on a new, empty schema."""
    return cluster_config(fresh_schema_url(postgres_database), unique_prefix(), upstream.fake.url)


async def test_two_processes_migrate_the_same_fresh_database_at_once(
    fresh_config: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_config
    one = ServerProcess(config, tmp_path, name="one")
    two = ServerProcess(config, tmp_path, name="two")
    try:
        one.start(wait=False)
        two.start(wait=False)
        await asyncio.to_thread(one.wait_ready, 120)
        await asyncio.to_thread(two.wait_ready, 120)
        for s in (one, two):
            status, plugins, _ = await s.request("GET", "/api/v1/plugins")
            assert status == 200
            states = {p["name"]: p["state"] for p in plugins["plugins"]}
            assert set(states.values()) == {"RUNNING"}, states
        user = await register(one)
        await login(two, user["email"])
    finally:
        one.stop()
        two.stop()


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


async def test_workers_share_one_port_and_a_killed_worker_is_replaced(
    fresh_config: dict[str, Any], tmp_path: Path
) -> None:
    server = ServerProcess(
        fresh_config,
        tmp_path,
        name="workers",
        args=("--workers", "2"),
    )
    try:
        await asyncio.to_thread(server.start, True, 120)
        assert server.proc is not None
        arbiter = server.proc.pid

        async def two_workers() -> bool:
            return len(children(arbiter)) == 2

        assert await wait_for(two_workers, timeout=60), server.output()
        user = await register(server)
        token = user["access_token"]
        workers = children(arbiter)
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        # the other worker keeps answering while the arbiter replaces the dead one
        deadline = time.monotonic() + 60
        ok = 0
        while time.monotonic() < deadline:
            status, _, _ = await server.request("GET", "/api/v1/auth/me", headers=bearer(token))
            assert status == 200
            ok += 1
            now = children(arbiter)
            if len(now) == 2 and victim not in now:
                break
            await asyncio.sleep(0.05)
        now = children(arbiter)
        assert victim not in now and len(now) == 2, server.output()
        # and the new worker serves the same accounts
        for _ in range(20):
            status, _, _ = await server.request("GET", "/api/v1/auth/me", headers=bearer(token))
            assert status == 200
    finally:
        server.stop()


async def test_one_scrape_of_any_worker_counts_them_all(
    fresh_config: dict[str, Any], tmp_path: Path
) -> None:
    """/metrics under --workers: whichever worker answers, the counters cover every
    worker, live gauges count the live ones, and a killed worker's requests stay counted."""
    server = ServerProcess(fresh_config, tmp_path, name="metrics", args=("--workers", "2"))

    async def scrape() -> Samples:
        status, text, _ = await server.request("GET", "/metrics")
        assert status == 200, text
        return parse(text)

    def pings(seen: Samples) -> float:
        return value(seen, "llmmc_http_requests_total", method="GET", route="/ping", status="200")

    def ready(seen: Samples) -> float:
        return value(seen, "llmmc_ready")

    def running(seen: Samples) -> float:
        return value(seen, "llmmc_plugin_state", plugin="auth", state="RUNNING")

    try:
        await asyncio.to_thread(server.start, True, 120)
        assert server.proc is not None
        arbiter = server.proc.pid

        async def both_ready() -> bool:
            return len(children(arbiter)) == 2 and ready(await scrape()) == 2

        assert await wait_for(both_ready, timeout=60), server.output()
        for _ in range(30):  # a new connection each: the kernel spreads them over both
            assert (await server.request("GET", "/ping"))[0] == 200
        for _ in range(6):
            seen = await scrape()
            assert (pings(seen), ready(seen), running(seen)) == (30, 2, 2)
        victim = sorted(children(arbiter))[0]
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            now = children(arbiter)
            return victim not in now and len(now) == 2 and ready(await scrape()) == 2

        assert await wait_for(replaced, timeout=60), server.output()
        seen = await scrape()
        assert (pings(seen), running(seen)) == (30, 2)
    finally:
        server.stop()
