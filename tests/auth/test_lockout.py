"""Per-account login protection: locks that grow, end by themselves, are cleared by a
success, and cannot keep the real user out."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .conftest import PASSWORD, Accounts, auth_config

LOGIN = "/api/v1/auth/login"
WRONG = "Wr0ng-password"


def config(**lockout):
    cfg = auth_config(auth={"lockout": lockout})
    # the tests speak from several addresses through a trusted proxy
    cfg["kernel"] = {"trusted_proxies": ["127.0.0.1/32"]}
    return cfg


async def login(server, email, password, ip="10.0.0.1"):
    return await server.post(
        LOGIN, json={"email": email, "password": password}, headers={"X-Forwarded-For": ip}
    )


async def test_failures_from_one_address_lock_that_address_for_growing_times(llmmc):
    server = await llmmc(config(max_failures=3, lock_seconds=1, max_lock_seconds=2))
    bob = await Accounts(server).register()
    email = bob["user"]["email"]
    for _ in range(3):
        assert (await login(server, email, WRONG)).status == 401
    r = await login(server, email, PASSWORD)  # even the right password waits
    assert r.status == 429
    problem = await r.json()
    assert problem["code"] == "ACCOUNT_LOCKED" and r.headers["Retry-After"] == "1"
    # another address is not locked by this one's failures
    assert (await login(server, email, PASSWORD, ip="10.0.0.2")).status == 200

    await asyncio.sleep(1.1)
    for _ in range(3):
        assert (await login(server, email, WRONG)).status == 401
    r = await login(server, email, PASSWORD)
    assert r.status == 429 and r.headers["Retry-After"] == "2"  # doubled, at its cap

    await asyncio.sleep(2.1)
    assert (await login(server, email, PASSWORD)).status == 200
    # the success cleared the count: two more failures do not lock
    for _ in range(2):
        assert (await login(server, email, WRONG)).status == 401
    assert (await login(server, email, PASSWORD)).status == 200


async def test_unknown_emails_lock_the_same_way(llmmc):
    server = await llmmc(config(max_failures=2, lock_seconds=60))
    for _ in range(2):
        assert (await login(server, "nobody@example.com", WRONG)).status == 401
    assert (await login(server, "nobody@example.com", WRONG)).status == 429


async def test_a_spread_attack_locks_the_account_but_not_its_owner(llmmc):
    server = await llmmc(config(max_failures=100, account_max_failures=4, lock_seconds=60))
    bob = await Accounts(server).register()
    email = bob["user"]["email"]
    # the owner has logged in from home before
    assert (await login(server, email, PASSWORD, ip="192.0.2.10")).status == 200
    for i in range(4):
        assert (await login(server, email, WRONG, ip=f"198.51.100.{i}")).status == 401
    # the account is locked for every new address ...
    assert (await login(server, email, PASSWORD, ip="198.51.100.99")).status == 429
    assert (await login(server, email, PASSWORD, ip="203.0.113.5")).status == 429
    # ... but not for the owner's known one
    assert (await login(server, email, PASSWORD, ip="192.0.2.10")).status == 200
    # and that success cleared the account's lock
    assert (await login(server, email, PASSWORD, ip="203.0.113.5")).status == 200


async def test_a_password_reset_clears_the_account_lock(llmmc):
    server = await llmmc(config(max_failures=100, account_max_failures=2, lock_seconds=600))
    accounts = Accounts(server)
    bob = await accounts.register()
    email = bob["user"]["email"]
    for i in range(2):
        await login(server, email, WRONG, ip=f"198.51.100.{i}")
    assert (await login(server, email, PASSWORD, ip="203.0.113.5")).status == 429
    plugin = server.plugin("auth")
    user = await plugin.admin.find_user(email)
    token, _ = await plugin.resets.issue_reset(user, "admin")
    r = await server.post(
        "/api/v1/auth/reset-password", json={"reset_token": token, "new_password": "N3w-password"}
    )
    assert r.status == 204
    assert (await login(server, email, "N3w-password", ip="203.0.113.5")).status == 200


@pytest.mark.redis
async def test_locks_hold_on_every_instance(two_servers):
    a, b = (s.base_url for s in two_servers)
    async with aiohttp.ClientSession() as s:
        body = {"username": "locky", "email": "locky@example.com", "password": PASSWORD}
        async with s.post(a + "/api/v1/auth/register", json=body) as r:
            assert r.status == 201
        wrong = {"email": "locky@example.com", "password": WRONG}
        for url in (a, b, a, b, a):  # five failures, spread over both instances
            async with s.post(url + LOGIN, json=wrong) as r:
                assert r.status == 401
        right = {"email": "locky@example.com", "password": PASSWORD}
        for url in (a, b):
            async with s.post(url + LOGIN, json=right) as r:
                assert r.status == 429, url
                assert (await r.json())["code"] == "ACCOUNT_LOCKED"
