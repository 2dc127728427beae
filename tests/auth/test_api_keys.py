"""API keys: created and shown once, stored hashed, usable as Bearer, expiring, revocable."""

from __future__ import annotations

from .conftest import bearer


async def create_key(server, token: str, **body):
    body.setdefault("name", "ci")
    r = await server.post("/api/v1/auth/api-keys", json=body, headers=bearer(token))
    assert r.status == 201, await r.text()
    return await r.json()


async def test_create_use_list_revoke(server, accounts):
    user = await accounts.register()
    token = user["access_token"]
    key = await create_key(server, token, name="laptop")
    assert key["name"] == "laptop"
    assert key["expires_at"] is None
    assert key["key"].startswith("llmmc_") and len(key["key"]) > 40
    assert key["created_at"].endswith("Z")

    r = await accounts.me(key["key"])
    assert r.status == 200
    assert (await r.json())["user"]["user_id"] == user["user"]["user_id"]

    r = await server.get("/api/v1/auth/api-keys", headers=bearer(token))
    assert r.status == 200
    listed = await r.json()
    assert [k["key_id"] for k in listed] == [key["key_id"]]
    assert "key" not in listed[0]
    assert key["key"] not in await r.text()

    r = await server.delete(f"/api/v1/auth/api-keys/{key['key_id']}", headers=bearer(token))
    assert r.status == 204
    r = await accounts.me(key["key"])
    assert r.status == 401
    r = await server.delete(f"/api/v1/auth/api-keys/{key['key_id']}", headers=bearer(token))
    assert r.status == 404


async def test_key_with_expiry_and_bad_input(server, accounts):
    user = await accounts.register()
    key = await create_key(server, user["access_token"], expires_in_days=7)
    assert key["expires_at"] > key["created_at"]
    for body in (
        {"name": ""},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": "7"},
        {},
    ):
        r = await server.post(
            "/api/v1/auth/api-keys", json=body, headers=bearer(user["access_token"])
        )
        assert r.status == 422, body
    r = await accounts.me("llmmc_" + "A" * 43)
    assert r.status == 401


async def test_expired_key_is_refused(server, accounts):
    """Expire a key by moving its expiry into the past in the store (no waiting)."""
    user = await accounts.register()
    key = await create_key(server, user["access_token"], expires_in_days=1)
    db = server.database
    await db.execute("UPDATE auth_api_keys SET expires_at = 1 WHERE key_id = $1", [key["key_id"]])
    r = await accounts.me(key["key"])
    assert r.status == 401
    assert (await r.json())["code"] == "INVALID_TOKEN"
    fresh = await create_key(server, user["access_token"], expires_in_days=1)
    assert (await accounts.me(fresh["key"])).status == 200


async def test_keys_are_stored_hashed(server, accounts):
    user = await accounts.register()
    key = await create_key(server, user["access_token"])
    rows = await server.database.fetchall("SELECT * FROM auth_api_keys")
    assert rows and all(key["key"] not in str(row) for row in rows)
    rows = await server.database.fetchall("SELECT * FROM auth_refresh_tokens")
    assert rows and all(user["refresh_token"] not in str(row) for row in rows)


async def test_key_carries_the_owners_current_roles(llmmc, tmp_path):
    """A key of a user promoted to admin acts as admin without being re-issued."""
    from .conftest import Accounts, auth_config

    server = await llmmc(auth_config())
    accounts = Accounts(server)
    user = await accounts.register()
    key = await create_key(server, user["access_token"])
    victim = await accounts.register()
    victim_id = victim["user"]["user_id"]
    r = await server.delete(f"/api/v1/auth/users/{victim_id}", headers=bearer(key["key"]))
    assert r.status == 403
    plugin = server.kernel.records["auth"].instance
    await plugin.admin.promote_admin(user["user"]["email"], "", None)
    r = await accounts.me(key["key"])
    assert (await r.json())["user"]["roles"] == ["user", "admin"]
    r = await server.delete(f"/api/v1/auth/users/{victim_id}", headers=bearer(key["key"]))
    assert r.status == 204
