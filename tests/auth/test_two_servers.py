"""Revocation reaches every instance at once: two server processes sharing Redis."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from .conftest import PASSWORD, bearer

pytestmark = pytest.mark.redis


async def call(session, method, url, **kw):
    async with session.request(method, url, **kw) as r:
        return r.status, (await r.json() if r.content_type.endswith("json") else None)


async def test_logout_change_password_and_delete_reach_the_other_server(two_servers):
    a, b = (s.base_url for s in two_servers)
    async with aiohttp.ClientSession() as s:
        tag = uuid.uuid4().hex[:8]
        email = f"{tag}@example.com"
        body = {"username": f"u_{tag}", "email": email, "password": PASSWORD}
        status, first = await call(s, "POST", a + "/api/v1/auth/register", json=body)
        assert status == 201
        login = {"email": email, "password": PASSWORD}
        logins = [
            (await call(s, "POST", a + "/api/v1/auth/login", json=login))[1] for _ in range(3)
        ]
        # B has never seen this user in its own store, yet accepts A's tokens (shared key)
        keys_b = b + "/api/v1/auth/api-keys"
        for tokens in (first, *logins):
            assert (await call(s, "GET", keys_b, headers=bearer(tokens["access_token"])))[0] == 200

        # logout on A: that login's access token fails on B right away
        status, _ = await call(
            s, "POST", a + "/api/v1/auth/logout", json={"refresh_token": logins[0]["refresh_token"]}
        )
        assert status == 204
        status, problem = await call(s, "GET", keys_b, headers=bearer(logins[0]["access_token"]))
        assert status == 401 and problem["code"] == "INVALID_TOKEN"
        assert (await call(s, "GET", keys_b, headers=bearer(logins[1]["access_token"])))[0] == 200

        # change-password on A with login 1: login 2 fails on B, login 1 goes on
        status, _ = await call(
            s,
            "POST",
            a + "/api/v1/auth/change-password",
            json={"current_password": PASSWORD, "new_password": "An0ther-pass"},
            headers=bearer(logins[1]["access_token"]),
        )
        assert status == 204
        assert (await call(s, "GET", keys_b, headers=bearer(logins[2]["access_token"])))[0] == 401
        assert (await call(s, "GET", keys_b, headers=bearer(first["access_token"])))[0] == 401
        assert (await call(s, "GET", keys_b, headers=bearer(logins[1]["access_token"])))[0] == 200

        # delete on A: the remaining token fails on B
        status, _ = await call(
            s,
            "DELETE",
            a + f"/api/v1/auth/users/{first['user']['user_id']}",
            headers=bearer(logins[1]["access_token"]),
        )
        assert status == 204
        assert (await call(s, "GET", keys_b, headers=bearer(logins[1]["access_token"])))[0] == 401


async def test_disabling_and_role_removal_on_one_server_hold_on_the_other(two_servers):
    """An admin (made with the CLI through server A's admin socket) disables a user and
    demotes another admin on A; B refuses their earlier tokens at once."""
    import asyncio
    import os
    import subprocess
    import sys
    from pathlib import Path

    sa, sb = two_servers
    a, b = sa.base_url, sb.base_url
    env = {**os.environ, "LLMMC_ADMIN_PASSWORD": "R00t-password"}
    r = await asyncio.to_thread(
        subprocess.run,
        [
            str(Path(sys.executable).parent / "llmmultichat"),
            "users",
            "create-admin",
            "--config",
            str(sa.config_path),
            "--email",
            "root@example.com",
            "--username",
            "root",
        ],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    async with aiohttp.ClientSession() as s:
        status, root = await call(
            s,
            "POST",
            a + "/api/v1/auth/login",
            json={"email": "root@example.com", "password": "R00t-password"},
        )
        assert status == 200
        users = []
        for name in ("victim", "deputy"):
            tag = uuid.uuid4().hex[:8]
            body = {
                "username": f"{name}_{tag}",
                "email": f"{tag}@example.com",
                "password": PASSWORD,
            }
            status, user = await call(s, "POST", a + "/api/v1/auth/register", json=body)
            assert status == 201
            users.append(user)
        victim, deputy = users
        h = bearer(root["access_token"])
        me_b = b + "/api/v1/auth/api-keys"
        assert (await call(s, "GET", me_b, headers=bearer(victim["access_token"])))[0] == 200
        status, _ = await call(
            s,
            "PATCH",
            a + f"/api/v1/admin/users/{victim['user']['user_id']}",
            json={"disabled": True},
            headers=h,
        )
        assert status == 200
        assert (await call(s, "GET", me_b, headers=bearer(victim["access_token"])))[0] == 401

        status, _ = await call(
            s,
            "PATCH",
            a + f"/api/v1/admin/users/{deputy['user']['user_id']}",
            json={"roles": ["user", "admin"]},
            headers=h,
        )
        status, fresh = await call(
            s, "POST", a + "/api/v1/auth/refresh", json={"refresh_token": deputy["refresh_token"]}
        )
        assert fresh["user"]["roles"] == ["user", "admin"]
        status, _ = await call(
            s,
            "PATCH",
            a + f"/api/v1/admin/users/{deputy['user']['user_id']}",
            json={"roles": ["user"]},
            headers=h,
        )
        assert status == 200
        # B does not hold the deputy in its own store, yet the admin token is refused there
        assert (await call(s, "GET", me_b, headers=bearer(fresh["access_token"])))[0] == 401
