"""Three real ``llmmultichat serve`` processes on one fresh PostgreSQL database (a schema
of the run's database) and one Redis, and a fake OpenAI upstream they all call."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builtin_plugins.storage.testing import fresh_schema_url
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess, redis_available, unique_prefix

REDIS = "redis://127.0.0.1:6379/0"
JWT_SECRET = "scaleout-tests-" + "k" * 48
PASSWORD = "Corr3ct-horse"
GENEROUS = "100000/minute"


def echo_history(body: dict[str, Any]) -> str:
    """The reply names how many user turns the request carried: the history it saw."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return f"I have seen {len(users)} user turns."


class BackgroundFake:
    """The fake upstream on its own event loop in a thread, so that it outlives each
    test's loop (the servers are shared by the tests of a module)."""

    def __init__(self) -> None:
        self.fake = FakeOpenAI(default_reply=echo_history)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> BackgroundFake:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def cluster_config(database_url: str, prefix: str, upstream: str) -> dict[str, Any]:
    return {
        "kernel": {
            "log_level": "WARNING",
            "database": {"url": database_url, "pool_size": 4},
            "bus": {"backend": "redis", "redis_url": REDIS, "channel_prefix": prefix + "ev:"},
        },
        "plugins": {
            "enabled": ["metrics", "auth", "ratelimit", "chat", "memory"],
            "required": ["auth", "ratelimit", "chat", "memory"],
            "auth": {"jwt_secret": JWT_SECRET, "bcrypt_rounds": 4, "redis_prefix": prefix + "a:"},
            "ratelimit": {
                "backend": "redis",
                "redis_url": REDIS,
                "key_prefix": prefix + "rl:",
                "default": GENEROUS,
                "routes": {
                    "POST /api/v1/auth/register": GENEROUS,
                    "POST /api/v1/auth/login": GENEROUS,
                },
            },
            "chat": {
                "default_provider": "fake",
                "providers": {"fake": {"type": "openai", "base_url": upstream, "model": "m"}},
                "characters": {
                    "lumina": {"name": "Lumina", "provider": "fake", "persona": "You are Lumina."}
                },
            },
            "memory": {
                "embedder": "hashing",
                "redis_prefix": prefix + "m:",
                "index_min_vectors": 1,  # search through each process's index
                "auto_extract": False,
            },
        },
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[BackgroundFake]:
    fake = BackgroundFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def shared_config(postgres_database: str, upstream: BackgroundFake) -> dict[str, Any]:
    if not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return cluster_config(fresh_schema_url(postgres_database), unique_prefix(), upstream.fake.url)


@pytest.fixture(scope="module")
def cluster(
    shared_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    """Three processes, each with a data_dir of its own (as on three machines)."""
    workdir = tmp_path_factory.mktemp("cluster")
    servers = [ServerProcess(shared_config, workdir, name=n) for n in ("a", "b", "c")]
    try:
        for s in servers:
            s.start(wait=False)
        for s in servers:
            s.wait_ready(120)
        yield servers
    finally:
        for s in servers:
            s.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(server: ServerProcess, password: str = PASSWORD) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    body = {"username": f"u_{tag}", "email": f"{tag}@example.com", "password": password}
    status, data, _ = await server.request("POST", "/api/v1/auth/register", json=body)
    assert status == 201, data
    return {**data, "email": body["email"], "password": password}


async def login(server: ServerProcess, email: str, password: str = PASSWORD) -> dict[str, Any]:
    status, data, _ = await server.request(
        "POST", "/api/v1/auth/login", json={"email": email, "password": password}
    )
    assert status == 200, data
    return dict(data)


async def status_of(server: ServerProcess, method: str, path: str, token: str, **kw: Any) -> int:
    status, _, _ = await server.request(method, path, headers=bearer(token), **kw)
    return status


def workdir_of(server: ServerProcess) -> Path:
    return server.config_path.parent
