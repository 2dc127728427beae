"""What a hostile or careless client found: races on one reset token, credentials left
cacheable, lookalike names and marked-up emails, a token missing a claim, and what an
API key may not do."""

from __future__ import annotations

import asyncio
import uuid

from .conftest import PASSWORD, bearer, make_admin
from .test_tokens import expect_401, forge

RESET = "/api/v1/auth/reset-password"
ADMIN = "/api/v1/admin"


async def register(server, username: str, email: str):
    return await server.post(
        "/api/v1/auth/register",
        json={"username": username, "email": email, "password": PASSWORD},
    )


async def test_one_reset_token_sent_six_times_at_once_works_once(server, accounts):
    root = await make_admin(server, accounts)
    bob = await accounts.register()
    url = f"{ADMIN}/users/{bob['user']['user_id']}/password-reset"
    for trial in range(4):
        r = await server.post(url, headers=bearer(root["access_token"]))
        token = (await r.json())["reset_token"]
        body = {"reset_token": token, "new_password": f"N3w-password-{trial}"}
        answers = await asyncio.gather(*(server.post(RESET, json=body) for _ in range(6)))
        statuses = sorted(a.status for a in answers)
        assert statuses == [204, 400, 400, 400, 400, 400], (trial, statuses)
        for a in answers:
            if a.status == 400:
                assert (await a.json())["code"] == "INVALID_RESET_TOKEN"
        await accounts.login(bob["user"]["email"], f"N3w-password-{trial}")


async def test_the_admin_reset_token_answer_is_not_cached(server, accounts):
    root = await make_admin(server, accounts)
    bob = await accounts.register()
    r = await server.post(
        f"{ADMIN}/users/{bob['user']['user_id']}/password-reset",
        headers=bearer(root["access_token"]),
    )
    assert r.status == 201
    assert r.headers["Cache-Control"] == "no-store"


async def test_mixed_script_lookalike_usernames_are_refused(server):
    tag = uuid.uuid4().hex[:6]
    r = await register(server, f"lkf1{tag}", f"latin.{tag}@example.com")
    assert r.status == 201
    # the same name with a Cyrillic к (U+043A) in place of the Latin k
    r = await register(server, f"l\u043af1{tag}", f"cyrillic.{tag}@example.com")
    assert r.status in (409, 422), await r.text()
    assert (await r.json())["code"] in ("USER_EXISTS", "INVALID_USERNAME")
    # Greek omicron among Latin letters, Latin among Cyrillic
    for name in (f"r\u03bfot_{tag}", f"\u0430\u0434\u043cin{tag}"):
        r = await register(server, name, f"{uuid.uuid4().hex[:8]}@example.com")
        assert r.status == 422, (name, await r.text())
        assert (await r.json())["code"] == "INVALID_USERNAME"
    # one script at a time is fine, in any script (Japanese names mix kanji and kana)
    digits = str(uuid.uuid4().int)[:6]
    for name in (
        f"\u0438\u0432\u0430\u043d_{digits}",
        f"j\u00f6rg_{tag}",
        f"\u5c71\u7530\u305f_{digits}",
        f"\uff41\uff4c\uff49_{tag}",  # fullwidth Latin is Latin
    ):
        r = await register(server, name, f"{uuid.uuid4().hex[:8]}@example.com")
        assert r.status == 201, (name, await r.text())


async def test_emails_with_markup_or_invisible_characters_are_refused(server):
    tag = uuid.uuid4().hex[:6]
    for email in (
        f"a<b>{tag}@example.com",
        f"x{tag}@<img>.com",
        f"zw\u200b{tag}@example.com",  # zero-width space
        f"zw{tag}@exa\u200dmple.com",  # zero-width joiner in the domain
        f"bom\ufeff{tag}@example.com",
        f'"q"{tag}@example.com',
        f"x{tag}@ex_ample.com",
        f"x{tag}@-example.com",
        f"x{tag}@example..com",
    ):
        r = await register(server, f"u_{uuid.uuid4().hex[:8]}", email)
        assert r.status == 422, (email, await r.text())
        assert (await r.json())["code"] == "INVALID_EMAIL"
    for email in (f"Jos\u00e9.{tag}@example.com", f"first.last+{tag}@sub.example.co.uk"):
        r = await register(server, f"u_{uuid.uuid4().hex[:8]}", email)
        assert r.status == 201, (email, await r.text())


async def test_an_access_token_without_its_username_claim_is_refused(accounts):
    user = await accounts.register()
    assert (await accounts.me(forge(user))).status == 200
    await expect_401(accounts, forge(user, username=None))
    await expect_401(accounts, forge(user, username=["not", "a", "string"]))


async def test_an_api_key_cannot_make_keys_or_delete_the_account(server, accounts):
    user = await accounts.register()
    h = bearer(user["access_token"])
    r = await server.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=h)
    assert r.status == 201
    key = (await r.json())["key"]
    k = bearer(key)
    r = await server.post("/api/v1/auth/api-keys", json={"name": "more"}, headers=k)
    assert r.status == 403 and (await r.json())["code"] == "LOGIN_REQUIRED"
    r = await server.delete(f"/api/v1/auth/users/{user['user']['user_id']}", headers=k)
    assert r.status == 403 and (await r.json())["code"] == "LOGIN_REQUIRED"
    # nothing happened: one key, the account lives; the key still works for the rest
    r = await server.get("/api/v1/auth/api-keys", headers=k)
    assert r.status == 200 and len(await r.json()) == 1
    assert (await accounts.me(user["access_token"])).status == 200
    # a login's token may do both
    r = await server.delete(f"/api/v1/auth/users/{user['user']['user_id']}", headers=h)
    assert r.status == 204
