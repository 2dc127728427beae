"""Register, login, refresh, logout, me, change-password, delete: success and failure paths."""

from __future__ import annotations

import uuid

from .conftest import PASSWORD, auth_config, bearer


async def test_register_returns_token_pair_and_user(server, accounts):
    data = await accounts.register(username="alice_1", email="Alice.1@Example.com")
    assert data["token_type"] == "bearer"
    assert data["expires_in"] == 30 * 60
    assert data["access_token"] and data["refresh_token"]
    user = data["user"]
    assert user["username"] == "alice_1"
    assert user["email"] == "Alice.1@Example.com"
    assert user["roles"] == ["user"]
    uuid.UUID(user["user_id"])
    assert user["created_at"].endswith("Z")
    assert "password" not in str(user).lower()

    r = await accounts.me(data["access_token"])
    assert r.status == 200
    me = await r.json()
    assert me["user"] == user
    assert me["quota"] == {"tokens_per_day": 200000, "used_today": 0}


async def test_register_conflicts_are_case_insensitive(server, accounts):
    await accounts.register(username="bob_case", email="bob@example.com")
    for body in (
        {"username": "other_1", "email": "BOB@EXAMPLE.COM", "password": PASSWORD},
        {"username": "BOB_CASE", "email": "bob2@example.com", "password": PASSWORD},
    ):
        r = await server.post("/api/v1/auth/register", json=body)
        assert r.status == 409
        problem = await r.json()
        assert problem["code"] == "USER_EXISTS"
        assert r.content_type == "application/problem+json"


async def test_register_rejects_weak_passwords_and_bad_emails(server):
    cases = [
        ({"password": "Sh0rt!"}, "WEAK_PASSWORD"),
        ({"password": "alllowercase"}, "WEAK_PASSWORD"),
        ({"password": "12345678901"}, "WEAK_PASSWORD"),
        ({"password": "ÄÖÜÄÖÜÄÖÜ"}, "WEAK_PASSWORD"),  # one class: uppercase letters
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
        ({"email": "a@b"}, "INVALID_EMAIL"),
    ]
    for override, code in cases:
        body = {
            "username": "weak_" + uuid.uuid4().hex[:6],
            "email": f"{uuid.uuid4().hex[:8]}@ex.org",
            "password": PASSWORD,
            **override,
        }
        r = await server.post("/api/v1/auth/register", json=body)
        assert r.status == 422, (override, await r.text())
        assert (await r.json())["code"] == code


async def test_register_schema_errors(server):
    r = await server.post("/api/v1/auth/register", json={"username": "x"})
    assert r.status == 422
    r = await server.post(
        "/api/v1/auth/register", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status == 400
    r = await server.post(
        "/api/v1/auth/register",
        json={"username": "has space", "email": "s@example.com", "password": PASSWORD},
    )
    assert r.status == 422


async def test_password_of_72_bytes_works_and_73_is_refused(server, accounts):
    # 22 three-byte characters and 6 ASCII = 72 bytes; bcrypt cannot take more.
    p72 = ("日本" * 11) + "Ab1" + "xyz"  # 66 + 6 = 72 bytes, several classes
    assert len(p72.encode()) == 72
    user = await accounts.register(password=p72)
    await accounts.login(user["user"]["email"], p72)

    p73 = p72 + "z"
    assert len(p73.encode()) == 73
    r = await server.post(
        "/api/v1/auth/register",
        json={"username": "long_pw", "email": "long@example.com", "password": p73},
    )
    assert r.status == 422
    assert (await r.json())["code"] == "PASSWORD_TOO_LONG"
    # a multi-byte character crossing the boundary: 71 bytes + one 2-byte char = 73
    p_cross = "Ab1" + "x" * 68 + "é"
    assert len(p_cross) == 72 and len(p_cross.encode()) == 73
    r = await server.post(
        "/api/v1/auth/register",
        json={"username": "long_pw2", "email": "long2@example.com", "password": p_cross},
    )
    assert r.status == 422
    # the same 73-byte limit holds for a new password and a login attempt
    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": p72, "new_password": p73},
        headers=bearer(user["access_token"]),
    )
    assert r.status == 422
    r = await server.post(
        "/api/v1/auth/login", json={"email": user["user"]["email"], "password": p73}
    )
    assert r.status == 422
    # a password that only differs after byte 72 is not accepted as the 72-byte one
    r = await server.post(
        "/api/v1/auth/login", json={"email": user["user"]["email"], "password": p72[:-1] + "Q"}
    )
    assert r.status == 401


async def test_login_same_401_for_unknown_email_and_wrong_password(server, accounts):
    user = await accounts.register()
    r1 = await server.post(
        "/api/v1/auth/login", json={"email": user["user"]["email"], "password": "Wrong-pass1"}
    )
    r2 = await server.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "Wrong-pass1"}
    )
    assert r1.status == r2.status == 401
    b1, b2 = await r1.json(), await r2.json()
    for b in (b1, b2):
        b.pop("instance", None)
    assert b1 == b2
    assert r1.headers["WWW-Authenticate"].startswith("Bearer")
    # login is case-insensitive on the email
    data = await accounts.login(user["user"]["email"].upper())
    assert data["user"]["user_id"] == user["user"]["user_id"]


async def test_refresh_rotates_and_reuse_revokes_the_family(server, accounts):
    user = await accounts.register()
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status == 200
    second = await r.json()
    assert second["refresh_token"] != user["refresh_token"]
    assert (await accounts.me(second["access_token"])).status == 200

    # A second login of the same user is another family: untouched by the reuse below.
    other_login = await accounts.login(user["user"]["email"])

    # Reusing the spent token ends the whole login: the new access and refresh tokens too.
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status == 401
    assert (await r.json())["code"] == "REFRESH_TOKEN_REUSED"
    assert (await accounts.me(second["access_token"])).status == 401
    assert (await accounts.me(user["access_token"])).status == 401
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status == 401

    assert (await accounts.me(other_login["access_token"])).status == 200
    r = await server.post(
        "/api/v1/auth/refresh", json={"refresh_token": other_login["refresh_token"]}
    )
    assert r.status == 200


async def test_refresh_rejects_garbage_and_access_tokens(server, accounts):
    user = await accounts.register()
    for token in ("garbage", user["access_token"], user["access_token"] + "x"):
        r = await server.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert r.status == 401, token
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await server.post("/api/v1/auth/refresh", json={})
    assert r.status == 422


async def test_logout_ends_that_login_only(server, accounts):
    user = await accounts.register()
    other = await accounts.login(user["user"]["email"])
    r = await server.post("/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]})
    assert r.status == 204
    assert (await accounts.me(user["access_token"])).status == 401
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status == 401
    assert (await accounts.me(other["access_token"])).status == 200
    # logging out twice is harmless; a forged token is not accepted
    r = await server.post("/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]})
    assert r.status == 204
    r = await server.post("/api/v1/auth/logout", json={"refresh_token": "nope.nope.nope"})
    assert r.status == 401


async def test_me_requires_a_token(server):
    r = await server.get("/api/v1/auth/me")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await server.get("/api/v1/auth/me", headers={"Authorization": "Bearer a.b.c"})
    assert r.status == 401
    assert (await r.json())["code"] == "INVALID_TOKEN"


async def test_change_password(server, accounts):
    user = await accounts.register()
    email = user["user"]["email"]
    other = await accounts.login(email)
    headers = bearer(user["access_token"])
    new = "N3w-password!"

    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": "Wrong-pass1", "new_password": new},
        headers=headers,
    )
    assert r.status == 403
    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": PASSWORD, "new_password": "weak"},
        headers=headers,
    )
    assert r.status == 422
    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=headers,
    )
    assert r.status == 204

    # every other token of the user stops working; the caller's own login goes on
    assert (await accounts.me(other["access_token"])).status == 401
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert r.status == 401
    assert (await accounts.me(user["access_token"])).status == 200
    r = await server.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status == 401
    fresh = await accounts.login(email, new)
    assert (await accounts.me(fresh["access_token"])).status == 200


async def test_delete_user_self_and_admin(llmmc):
    from .conftest import Accounts

    server = await llmmc(auth_config())
    accounts = Accounts(server)
    received = []
    server.kernel.bus.subscribe("user.deleted", lambda e: _append(received, e))

    user = await accounts.register()
    uid = user["user"]["user_id"]
    r = await server.delete(f"/api/v1/auth/users/{uid}", headers=bearer(user["access_token"]))
    assert r.status == 204
    assert (await accounts.me(user["access_token"])).status == 401
    r = await server.post(
        "/api/v1/auth/login", json={"email": user["user"]["email"], "password": PASSWORD}
    )
    assert r.status == 401
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status == 401
    assert [e.data for e in received] == [{"user_id": uid}]
    # the email is free again
    again = await accounts.register(email=user["user"]["email"])
    assert again["user"]["user_id"] != uid


async def _append(items, event):
    items.append(event)


async def test_registration_can_be_disabled(llmmc):
    server = await llmmc(auth_config({"allow_registration": False}))
    r = await server.post(
        "/api/v1/auth/register",
        json={"username": "nobody", "email": "n@example.com", "password": PASSWORD},
    )
    assert r.status == 403
    assert (await r.json())["code"] == "REGISTRATION_DISABLED"
