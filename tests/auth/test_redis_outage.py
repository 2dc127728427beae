"""The Redis that shares revocations goes away, seen from outside real ``serve``
processes: a private redis-server the test kills (by its PID) and starts again on the same
port, and two instances on one PostgreSQL database.

``on_redis_error = "closed"``: authenticated requests answer 503 while Redis is away.
``"open"`` (the default): an instance accepts tokens on what it knows; a logout made on
the other instance meanwhile holds as soon as Redis is back, even when that instance died
before it could push it (it is read from the database), and a WebSocket whose user's
tokens were revoked meanwhile is closed then."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from builtin_plugins.storage.testing import fresh_schema_url
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess, ThrowawayRedis

pytestmark = pytest.mark.redis

JWT_SECRET = "redis-outage-tests-" + "r" * 40
PASSWORD = "Corr3ct-horse"
ME = "/api/v1/auth/me"


def config(database_url: str, redis: ThrowawayRedis, policy: str, upstream: str) -> dict[str, Any]:
    prefix = f"llmmc-test:{uuid.uuid4().hex}:"
    return {
        "kernel": {
            "log_level": "WARNING",
            "bus": {"backend": "redis", "redis_url": redis.url, "channel_prefix": prefix + "ev:"},
        },
        "plugins": {
            "enabled": ["storage", "metrics", "auth", "chat"],
            "required": ["auth", "chat"],
            "storage": {"url": database_url, "pool_size": 4},
            "auth": {
                "jwt_secret": JWT_SECRET,
                "bcrypt_rounds": 4,
                "redis_prefix": prefix + "a:",
                "on_redis_error": policy,
            },
            "chat": {
                "default_provider": "fake",
                "providers": {"fake": {"type": "openai", "base_url": upstream, "model": "m"}},
                "characters": {
                    "lumina": {"name": "Lumina", "provider": "fake", "persona": "You are Lumina."}
                },
            },
        },
    }


@pytest.fixture
async def upstream() -> Any:
    fake = FakeOpenAI(default_reply="Hello.")
    await fake.start()
    yield fake
    await fake.close()


async def start_two(cfg: dict[str, Any], tmp_path: Path) -> list[ServerProcess]:
    servers = [ServerProcess(cfg, tmp_path, name=n) for n in ("x", "y")]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
    return servers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def account(server: ServerProcess) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tag = uuid.uuid4().hex[:10]
    body = {"username": f"u_{tag}", "email": f"{tag}@example.com", "password": PASSWORD}
    status, user, _ = await server.request("POST", "/api/v1/auth/register", json=body)
    assert status == 201, user
    logins = []
    for _ in range(2):
        status, tokens, _ = await server.request(
            "POST", "/api/v1/auth/login", json={"email": body["email"], "password": PASSWORD}
        )
        assert status == 200, tokens
        logins.append(tokens)
    return user, logins


async def status_of(server: ServerProcess, token: str) -> int:
    status, _, _ = await server.request("GET", ME, headers=bearer(token))
    return status


async def within(predicate: Any, limit: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if await predicate():
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {limit} s")


async def ready(server: ServerProcess) -> bool:
    status, _, _ = await server.request("GET", "/readyz")
    return status == 200


async def metric(server: ServerProcess, name: str) -> float:
    status, text, _ = await server.request("GET", "/metrics")
    assert status == 200, text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", str(text), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_closed_answers_authenticated_requests_503_while_redis_is_away(
    postgres_database: str, tmp_path: Path, upstream: FakeOpenAI
) -> None:
    redis = ThrowawayRedis()
    redis.start()
    cfg = config(fresh_schema_url(postgres_database), redis, "closed", upstream.url)
    servers = await start_two(cfg, tmp_path)
    try:
        x, y = servers
        _, logins = await account(x)
        token = logins[0]["access_token"]
        assert await status_of(y, token) == 200

        redis.stop()  # killed by its PID
        noticed = await within(lambda: _not(ready(y)), 5, "/readyz 503")
        assert noticed < 3.0, noticed
        status, problem, headers = await y.request("GET", ME, headers=bearer(token))
        assert status == 503, problem
        assert problem["code"] == "REVOCATIONS_UNAVAILABLE" and int(headers["Retry-After"]) >= 1
        status, ready_body, _ = await y.request("GET", "/readyz")
        assert any(r.startswith("auth:") for r in ready_body["reasons"]), ready_body
        _, health, _ = await y.request("GET", "/health")
        checks = health["plugins"]["auth"]["checks"]
        assert checks["on_redis_error"] == "closed" and checks["redis"] == "unreachable"
        assert str(redis.port) not in json.dumps(health)  # anyone may read /health
        refused = 'llmmc_auth_revocation_checks_unverified_total{outcome="refused"}'
        assert await metric(y, refused) >= 1
        assert await metric(y, "llmmc_auth_revocations_redis_up") == 0
        # anonymous routes still answer
        assert (await y.request("GET", "/ping"))[0] == 200

        redis.start()  # the same port, empty
        back = await within(lambda: ready(y), 10, "/readyz 200 again")
        assert back < 5.0, back
        assert await status_of(y, token) == 200
        assert await metric(y, "llmmc_auth_revocations_redis_up") == 1
        print(f"closed: /readyz 503 after {noticed:.2f} s; 200 {back:.2f} s after Redis returned")
    finally:
        for s in servers:
            s.stop()
        redis.stop()


async def test_open_accepts_meanwhile_and_enforces_what_was_revoked_when_redis_returns(
    postgres_database: str, tmp_path: Path, upstream: FakeOpenAI
) -> None:
    redis = ThrowawayRedis()
    redis.start()
    cfg = config(fresh_schema_url(postgres_database), redis, "open", upstream.url)
    servers = await start_two(cfg, tmp_path)
    try:
        x, y = servers
        _, logins = await account(x)
        first, second = logins[0], logins[1]
        _, other_logins = await account(x)
        assert await status_of(y, first["access_token"]) == 200

        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                y.url.replace("http", "ws") + "/ws/chat",
                headers=bearer(other_logins[0]["access_token"]),
            )
            redis.stop()
            await within(lambda: _not(ready(y)), 5, "/readyz 503")
            # on X: a logout of the first login, and the other user changes their password
            # from their second login (which ends every other login of theirs)
            status, _, _ = await x.request(
                "POST", "/api/v1/auth/logout", json={"refresh_token": first["refresh_token"]}
            )
            assert status == 204
            status, _, _ = await x.request(
                "POST",
                "/api/v1/auth/change-password",
                json={"current_password": PASSWORD, "new_password": "An0ther-pass"},
                headers=bearer(other_logins[1]["access_token"]),
            )
            assert status == 204
            assert await status_of(x, first["access_token"]) == 401
            # Y serves on what it knows ("open"), and says so
            assert await status_of(y, first["access_token"]) == 200
            _, health, _ = await y.request("GET", "/health")
            assert health["plugins"]["auth"]["checks"]["on_redis_error"] == "open"
            assert health["plugins"]["auth"]["status"] == "degraded"
            accepted = 'llmmc_auth_revocation_checks_unverified_total{outcome="accepted"}'
            assert await metric(y, accepted) >= 1
            # X dies before Redis returns: it never pushes its records to Redis
            assert x.proc is not None
            os.kill(x.proc.pid, signal.SIGKILL)
            x.proc.wait(10)

            redis.start()
            refused_after = await within(
                lambda: _is(status_of(y, first["access_token"]), 401),
                10,
                "Y to refuse the login ended during the outage",
            )
            assert await status_of(y, second["access_token"]) == 200
            # the WebSocket of the other user's first login is closed
            frame = await ws.receive(timeout=10)
            while frame.type == aiohttp.WSMsgType.TEXT:  # the error frame that says why
                assert "revoked while Redis was unreachable" in frame.data, frame
                frame = await ws.receive(timeout=10)
            assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 4401, frame
            await ws.close()
        print(f"open: refused on Y {refused_after:.2f} s after Redis returned")
    finally:
        for s in servers:
            s.stop()
        redis.stop()


async def _not(awaitable: Any) -> bool:
    return not await awaitable


async def _is(awaitable: Any, wanted: Any) -> bool:
    return await awaitable == wanted
