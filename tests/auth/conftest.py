"""Helpers for the auth tests: a real kernel with the auth (and ratelimit) plugins."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

JWT_SECRET = "auth-tests-" + "k" * 48
PASSWORD = "Corr3ct-horse"
GENEROUS = "100000/minute"


def auth_config(
    auth: dict[str, Any] | None = None,
    ratelimit: dict[str, Any] | None = None,
    enabled: tuple[str, ...] = ("auth", "ratelimit"),
) -> dict[str, Any]:
    """Auth with a known secret and cheap bcrypt; limits generous unless a test sets them."""
    rl: dict[str, Any] = {
        "default": GENEROUS,
        "routes": {
            "POST /api/v1/auth/register": GENEROUS,
            "POST /api/v1/auth/login": GENEROUS,
        },
    }
    rl.update(ratelimit or {})
    return {
        "plugins": {
            "enabled": list(enabled),
            "required": ["auth"],
            "auth": {"jwt_secret": JWT_SECRET, "bcrypt_rounds": 4, **(auth or {})},
            "ratelimit": rl,
        }
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Accounts:
    """Registers users over HTTP against one server."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def register(
        self, username: str | None = None, email: str | None = None, password: str = PASSWORD
    ) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:10]
        body = {
            "username": username or f"user_{tag}",
            "email": email or f"{tag}@example.com",
            "password": password,
        }
        r = await self.client.post("/api/v1/auth/register", json=body)
        assert r.status == 201, await r.text()
        data = await r.json()
        data["password"] = password
        return data

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert r.status == 200, await r.text()
        return await r.json()

    async def me(self, token: str) -> Any:
        return await self.client.get("/api/v1/auth/me", headers=bearer(token))


@pytest.fixture
async def server(llmmc, database_url):
    """A server with auth and ratelimit, once on each database engine."""
    client = await llmmc(auth_config(), database_url=database_url)
    return client


@pytest.fixture
def accounts(server):
    return Accounts(server)


async def make_admin(server: Any, accounts: Accounts) -> dict[str, Any]:
    """A registered user given the admin role (as `users create-admin` does), logged in
    again so that their tokens carry the role."""
    user = await accounts.register()
    await server.plugin("auth").admin.promote_admin(user["user"]["email"], "", None)
    return await accounts.login(user["user"]["email"])
