"""The JWT attack list (RFC 8725): every forged or misused token gets 401.

Tokens are forged here with the server's own secret (the tests configure it), so each
case differs from a token the server accepts by exactly one defect; the first test shows
that a correct forgery is accepted, so the refusals below are about that defect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt

from .conftest import JWT_SECRET, bearer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict, claims: dict, key: bytes | None, digest=hashlib.sha256) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(sig)}"


def claims_for(user: dict, **over) -> dict:
    me = user["user"]
    now = time.time()
    claims = {
        "sub": me["user_id"],
        "iat": round(now, 3),
        "exp": int(now) + 600,
        "jti": uuid.uuid4().hex,
        "iss": "llmmultichat",
        "aud": "llmmultichat-api",
        "type": "access",
        "fam": jwt.decode(user["access_token"], options={"verify_signature": False})["fam"],
        "roles": ["user"],
        "username": me["username"],
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def forge(user: dict, header: dict | None = None, key: str = JWT_SECRET, **over) -> str:
    return raw_token(
        header or {"alg": "HS256", "typ": "at+jwt"}, claims_for(user, **over), key.encode()
    )


async def expect_401(accounts, token: str) -> None:
    r = await accounts.me(token)
    assert r.status == 401, (token, await r.text())
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.content_type == "application/problem+json"


async def test_a_correct_forgery_is_accepted(accounts):
    user = await accounts.register()
    r = await accounts.me(forge(user))
    assert r.status == 200


async def test_alg_none_is_refused(accounts):
    user = await accounts.register()
    for alg in ("none", "None", "NONE"):
        await expect_401(accounts, raw_token({"alg": alg, "typ": "at+jwt"}, claims_for(user), None))


async def test_algorithm_confusion_is_refused(accounts):
    user = await accounts.register()
    # HS/RS confusion: an "RS256" token MACed with the shared secret (as if it were a public key)
    await expect_401(accounts, forge(user, header={"alg": "RS256", "typ": "at+jwt"}))
    # another HMAC algorithm with the right key is not accepted either: the list is pinned
    await expect_401(
        accounts,
        raw_token(
            {"alg": "HS512", "typ": "at+jwt"}, claims_for(user), JWT_SECRET.encode(), hashlib.sha512
        ),
    )
    await expect_401(accounts, forge(user, header={"alg": "ES256", "typ": "at+jwt"}))


async def test_tampered_tokens_are_refused(accounts):
    user = await accounts.register()
    token = user["access_token"]
    head, payload, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    await expect_401(accounts, f"{head}.{payload}.{flipped}")
    # privilege escalation in the payload, original signature kept
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = ["user", "admin"]
    await expect_401(accounts, f"{head}.{b64(json.dumps(claims).encode())}.{sig}")
    # signed with another key
    await expect_401(accounts, forge(user, key="not-the-server-secret-" + "x" * 40))
    # not a JWT at all, or truncated
    await expect_401(accounts, f"{head}.{payload}.")
    await expect_401(accounts, "a.b.c")


async def test_expired_token_is_refused(accounts):
    user = await accounts.register()
    past = time.time() - 3600
    await expect_401(accounts, forge(user, iat=round(past, 3), exp=int(past) + 60))


async def test_wrong_issuer_or_audience_is_refused(accounts):
    user = await accounts.register()
    await expect_401(accounts, forge(user, iss="someone-else"))
    await expect_401(accounts, forge(user, aud="another-api"))
    await expect_401(accounts, forge(user, aud=["another-api"]))


async def test_missing_claims_are_refused(accounts):
    user = await accounts.register()
    for claim in ("exp", "jti", "iss", "aud", "sub", "type", "fam", "iat"):
        await expect_401(accounts, forge(user, **{claim: None}))


async def test_refresh_token_is_not_an_access_token(server, accounts):
    user = await accounts.register()
    await expect_401(accounts, user["refresh_token"])
    # even with the access header type, the type claim says refresh
    await expect_401(accounts, forge(user, type="refresh"))
    # and with the access type claim but the refresh header type
    await expect_401(accounts, forge(user, header={"alg": "HS256", "typ": "rt+jwt"}))


async def test_access_token_is_not_a_refresh_token(server, accounts):
    user = await accounts.register()
    for token in (user["access_token"], forge(user, type="refresh")):
        r = await server.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert r.status == 401
        r = await server.post("/api/v1/auth/logout", json={"refresh_token": token})
        assert r.status == 401


async def test_tokens_of_a_deleted_user_fail(server, accounts):
    user = await accounts.register()
    second = await accounts.login(user["user"]["email"])
    r = await server.delete(
        f"/api/v1/auth/users/{user['user']['user_id']}", headers=bearer(user["access_token"])
    )
    assert r.status == 204
    for token in (user["access_token"], second["access_token"], forge(user)):
        await expect_401(accounts, token)


async def test_token_issued_before_password_change_fails(server, accounts):
    user = await accounts.register()
    old = await accounts.login(user["user"]["email"])
    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": user["password"], "new_password": "Diff3rent-pass"},
        headers=bearer(user["access_token"]),
    )
    assert r.status == 204
    await expect_401(accounts, old["access_token"])
    # a token issued (by the server's key) before the change, in another login, also fails
    await expect_401(accounts, forge(user, fam=uuid.uuid4().hex, iat=round(time.time() - 5, 3)))
    new = await accounts.login(user["user"]["email"], "Diff3rent-pass")
    assert (await accounts.me(new["access_token"])).status == 200


async def test_token_after_logout_fails(server, accounts):
    user = await accounts.register()
    assert (await accounts.me(user["access_token"])).status == 200
    r = await server.post("/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]})
    assert r.status == 204
    await expect_401(accounts, user["access_token"])


async def test_secret_is_generated_once_and_kept(llmmc, tmp_path):
    """With jwt_secret empty, tokens survive a restart on the same data_dir."""
    from kernel.testing import start_kernel

    from .conftest import Accounts, auth_config

    data_dir = tmp_path / "kept"
    cfg = auth_config({"jwt_secret": ""})
    cfg["kernel"] = {"data_dir": str(data_dir)}
    first = await start_kernel(cfg, data_dir=data_dir)
    try:
        user = await Accounts(first).register()
    finally:
        await first.close()
    secret_file = data_dir / "auth_jwt_secret"
    key = secret_file.read_text().strip()
    assert len(bytes.fromhex(key)) == 32
    assert secret_file.stat().st_mode & 0o077 == 0

    second = await start_kernel(cfg, data_dir=data_dir)
    try:
        assert (await Accounts(second).me(user["access_token"])).status == 200
        assert secret_file.read_text().strip() == key
        # and the well-known test secret does not sign for this server
        await expect_401(Accounts(second), forge(user))
    finally:
        await second.close()


async def test_a_verified_token_still_expires(accounts):
    """The server remembers tokens it has verified; expiry is still checked on every use."""
    import asyncio

    user = await accounts.register()
    now = time.time()
    token = forge(user, iat=round(now, 3), exp=int(now) + 2)
    assert (await accounts.me(token)).status == 200
    await asyncio.sleep(max(0.0, int(now) + 2 - time.time()) + 0.2)
    await expect_401(accounts, token)


def test_processes_starting_together_share_one_generated_key(tmp_path):
    """serve --workers N: every worker that generates the key at once ends with the same."""
    import concurrent.futures
    import multiprocessing

    from builtin_plugins.auth.tokens import load_or_create_secret

    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(8, mp_context=ctx) as pool:
        keys = list(pool.map(load_or_create_secret, [tmp_path] * 32))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert [p.name for p in tmp_path.iterdir()] == ["auth_jwt_secret"]  # no leftovers
