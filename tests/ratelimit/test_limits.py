"""Request limits with the in-process backend: per route, per user or per IP, headers, 429."""

from __future__ import annotations

import uuid

import pytest

from tests.auth.conftest import PASSWORD, Accounts, auth_config, bearer

from .conftest import ChatLikePlugin, rl_config


def reg_body() -> dict:
    tag = uuid.uuid4().hex[:8]
    return {"username": f"u_{tag}", "email": f"{tag}@example.com", "password": PASSWORD}


async def test_register_limit(llmmc):
    server = await llmmc(
        auth_config(ratelimit={"routes": {"POST /api/v1/auth/register": "3/hour"}})
    )
    remaining = []
    for _ in range(3):
        r = await server.post("/api/v1/auth/register", json=reg_body())
        assert r.status == 201
        assert r.headers["RateLimit-Limit"] == "3"
        remaining.append(r.headers["RateLimit-Remaining"])
        assert int(r.headers["RateLimit-Reset"]) > 0
    assert remaining == ["2", "1", "0"]
    r = await server.post("/api/v1/auth/register", json=reg_body())
    assert r.status == 429
    assert r.content_type == "application/problem+json"
    problem = await r.json()
    assert problem["code"] == "RATE_LIMITED" and problem["status"] == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.headers["RateLimit-Remaining"] == "0"
    assert r.headers["RateLimit-Limit"] == "3"
    # other routes have their own (default) limit
    r = await server.get("/api/v1/plugins")
    assert r.status == 200
    assert r.headers["RateLimit-Limit"] == "100000"


async def test_login_limit_counts_failed_attempts(llmmc):
    server = await llmmc(auth_config(ratelimit={"routes": {"POST /api/v1/auth/login": "4/hour"}}))
    user = await Accounts(server).register()
    email = user["user"]["email"]
    for _ in range(3):
        r = await server.post(
            "/api/v1/auth/login", json={"email": email, "password": "Wrong-pass1"}
        )
        assert r.status == 401
    r = await server.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status == 200
    # even the right password is refused now: the limit is on attempts
    r = await server.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status == 429
    assert "Retry-After" in r.headers


async def test_authenticated_callers_are_limited_per_user(llmmc):
    server = await llmmc(auth_config(ratelimit={"routes": {"GET /api/v1/auth/me": "2/hour"}}))
    accounts = Accounts(server)
    alice, bob = await accounts.register(), await accounts.register()
    for _ in range(2):
        assert (await accounts.me(alice["access_token"])).status == 200
    assert (await accounts.me(alice["access_token"])).status == 429
    # same IP, another user: a bucket of its own
    r = await accounts.me(bob["access_token"])
    assert r.status == 200
    assert r.headers["RateLimit-Remaining"] == "1"


async def test_anonymous_callers_are_limited_per_ip_and_forwarded_for_only_from_trusted(llmmc):
    route = {"routes": {"GET /api/v1/plugins": "2/hour"}}
    untrusted = await llmmc(rl_config(route), plugins={"chatlike": ChatLikePlugin})
    for ip in ("10.0.0.1", "10.0.0.2"):
        r = await untrusted.get("/api/v1/plugins", headers={"X-Forwarded-For": ip})
        assert r.status == 200
    # X-Forwarded-For from an untrusted peer is ignored: all three share the peer's bucket
    r = await untrusted.get("/api/v1/plugins", headers={"X-Forwarded-For": "10.0.0.3"})
    assert r.status == 429

    trusted = await llmmc(
        rl_config(route, kernel={"trusted_proxies": ["127.0.0.0/8"]}),
        plugins={"chatlike": ChatLikePlugin},
    )
    for _ in range(2):
        r = await trusted.get("/api/v1/plugins", headers={"X-Forwarded-For": "10.0.0.1"})
        assert r.status == 200
    r = await trusted.get("/api/v1/plugins", headers={"X-Forwarded-For": "10.0.0.1"})
    assert r.status == 429
    r = await trusted.get("/api/v1/plugins", headers={"X-Forwarded-For": "10.0.0.2"})
    assert r.status == 200


async def test_default_limit_and_exempt_routes(llmmc):
    server = await llmmc(rl_config({"default": "1/hour"}), plugins={"chatlike": ChatLikePlugin})
    assert (await server.get("/api/v1/plugins")).status == 200
    r = await server.get("/api/v1/plugins")
    assert r.status == 429
    assert r.headers["RateLimit-Limit"] == "1"
    for _ in range(3):  # rate_limit=None routes are never limited and carry no headers
        r = await server.get("/ping")
        assert r.status == 200
        assert "RateLimit-Limit" not in r.headers


async def test_websocket_messages_count_through_the_service(llmmc):
    """The interface the chat plugin uses per WebSocket message: the chat route's limit."""
    server = await llmmc(
        rl_config({"routes": {"POST /api/v1/chat": "2/hour"}}), plugins={"chatlike": ChatLikePlugin}
    )
    h = server.auth_headers("ws-user")
    for expected in ("1", "0"):
        r = await server.post("/test/ws-message", headers=h)
        assert r.status == 200
        assert (await r.json())["headers"]["RateLimit-Remaining"] == expected
    r = await server.post("/test/ws-message", headers=h)
    assert r.status == 429
    assert (await r.json())["code"] == "RATE_LIMITED"
    r = await server.post("/test/ws-message", headers=server.auth_headers("other-user"))
    assert r.status == 200


async def test_invalid_limits_stop_the_server(llmmc):
    with pytest.raises(Exception, match=r"plugins\.ratelimit\.routes.*ten per minute"):
        await llmmc(
            rl_config({"routes": {"POST /x": "ten per minute"}}),
            plugins={"chatlike": ChatLikePlugin},
        )


async def test_me_without_ratelimit_shows_no_quota(llmmc):
    server = await llmmc(auth_config(enabled=("auth",)))
    user = await Accounts(server).register()
    r = await server.get("/api/v1/auth/me", headers=bearer(user["access_token"]))
    assert (await r.json())["quota"] == {"tokens_per_day": 0, "used_today": 0}
    assert "RateLimit-Limit" not in r.headers
