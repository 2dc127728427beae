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
