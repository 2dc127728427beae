"""Auth as a hostile client meets it: token answers never cached, and lookalike
account names (fullwidth, other case, another Unicode spelling) are the same name."""

from __future__ import annotations

from .conftest import PASSWORD, bearer


async def test_answers_with_credentials_are_never_cached(server, accounts):
    r = await server.post(
        "/api/v1/auth/register",
        json={"username": "cache_me", "email": "cache@example.com", "password": PASSWORD},
    )
    assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
    pair = await r.json()
    r = await server.post(
        "/api/v1/auth/login", json={"email": "cache@example.com", "password": PASSWORD}
    )
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    r = await server.post(
        "/api/v1/auth/api-keys", json={"name": "ci"}, headers=bearer(pair["access_token"])
    )
    assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
