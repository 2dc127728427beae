"""Revocations pushed through Redis: each instance applies them as they arrive and checks
tokens in memory; after a Redis outage it reads what it missed before trusting memory."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from .conftest import PASSWORD, Accounts, auth_config, bearer

pytestmark = pytest.mark.redis


async def until(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def subscribed(server) -> bool:
    return "subscribed" in server.plugin("auth").revocations.status()[1]


async def status_of(server, token: str) -> int:
    r = await server.get("/api/v1/auth/api-keys", headers=bearer(token))
    return r.status


async def test_a_logout_during_a_redis_outage_reaches_the_other_instance_when_it_is_back(
    llmmc, throwaway_redis
):
    prefix = f"llmmc-test:{uuid.uuid4().hex}:"
    config = auth_config(auth={"redis_url": throwaway_redis.url, "redis_prefix": prefix})
    a = await llmmc(config)
    b = await llmmc(config)
    accounts = Accounts(a)
    user = await accounts.register()
    first = await accounts.login(user["user"]["email"], PASSWORD)
    second = await accounts.login(user["user"]["email"], PASSWORD)

    async def both_subscribed() -> bool:
        return subscribed(a) and subscribed(b)

    await until(both_subscribed, what="both instances to subscribe")
    # in force on the other instance before the logout's response (no waiting)
    r = await a.post("/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]})
    assert r.status == 204
    assert await status_of(b, user["access_token"]) == 401
    assert await status_of(b, first["access_token"]) == 200

    throwaway_redis.stop()

    async def b_unsubscribed() -> bool:
        return not subscribed(b)

    await until(b_unsubscribed, what="B to notice the outage")
    r = await a.post("/api/v1/auth/logout", json={"refresh_token": first["refresh_token"]})
    assert r.status == 204  # A keeps the record and pushes it when Redis is back
    assert await status_of(a, first["access_token"]) == 401
    # B cannot know yet (the documented outage behaviour): it serves on what it knows
    assert await status_of(b, first["access_token"]) == 200

    throwaway_redis.start()  # the same port, empty: nothing of before survived

    async def b_refuses() -> bool:
        return await status_of(b, first["access_token"]) == 401

    await until(b_refuses, what="B to refuse the token logged out during the outage")
    await until(both_subscribed, what="both instances to subscribe again")
    assert await status_of(b, first["access_token"]) == 401
    assert await status_of(b, second["access_token"]) == 200

    # and a change made after the return is in force at once again
    r = await a.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert r.status == 204
    assert await status_of(b, second["access_token"]) == 401


@pytest.mark.parametrize("mode", ["pushed", "asked"])
async def test_each_way_of_checking_refuses_at_once_on_the_other_instance(llmmc, mode):
    prefix = f"llmmc-test:{uuid.uuid4().hex}:"
    auth = {
        "redis_url": "redis://127.0.0.1:6379/9",
        "redis_prefix": prefix,
        "revocation_checks": mode,
    }
    a = await llmmc(auth_config(auth=auth))
    b = await llmmc(auth_config(auth=auth))

    async def live() -> bool:
        return "subscribed" in b.plugin("auth").revocations.status()[1] or mode == "asked"

    await until(live, what="B to subscribe")
    detail = b.plugin("auth").revocations.status()[1]
    assert ("subscribed" in detail) == (mode == "pushed"), detail
    accounts = Accounts(a)
    user = await accounts.register()
    other = await accounts.login(user["user"]["email"], PASSWORD)
    assert await status_of(b, user["access_token"]) == 200
    r = await a.post("/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]})
    assert r.status == 204
    assert await status_of(b, user["access_token"]) == 401
    assert await status_of(b, other["access_token"]) == 200
    r = await a.post(
        "/api/v1/auth/change-password",
        json={"current_password": PASSWORD, "new_password": "An0ther-pass"},
        headers=bearer(other["access_token"]),
    )
    assert r.status == 204
    assert await status_of(b, other["access_token"]) == 200  # the caller's login goes on
    # an admin disables the user on A: B refuses the user's earlier tokens at once
    await a.plugin("auth").admin.update_user(None, user["user"]["user_id"], disabled=True)
    assert await status_of(b, other["access_token"]) == 401
