"""The plugin side of testing: test identities without the accounts plugin.

The ``llmmc`` fixture that starts a real kernel for a test is the host's
(``kernel.testing``), installed as a pytest plugin (``pytest11``) with ``llmmultichat``,
so a plugin's tests use it without importing anything::

    async def test_my_route(llmmc):
        client = await llmmc({"plugins": {"enabled": ["myplugin"], "myplugin": {...}}})
        r = await client.get("/hello", headers=client.auth_headers("u1"))
        assert r.status == 200

When the config does not enable ``auth``, :class:`TestAuthPlugin` is enabled so that
``client.auth_headers()`` (the same as :func:`auth_headers`) gives working identities.
"""

from __future__ import annotations

from aiohttp import web

from .errors import InvalidCredentials
from .hooks import hookimpl
from .identity import Identity
from .plugin import Plugin

TEST_TOKEN_PREFIX = "test:"


class TestAuthPlugin(Plugin):
    """Accepts ``Authorization: Bearer test:<user_id>`` (``test:<user_id>:admin`` for an
    admin). For tests only: never enable it in a real deployment."""

    __test__ = False  # not a pytest test class
    name = "testauth"
    version = "0.1.0"
    description = "Test identities from 'Bearer test:<user_id>[:admin]' (tests only)"
    config_schema = {"type": "object"}

    @hookimpl
    def authenticate(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.startswith(TEST_TOKEN_PREFIX):
            if token:
                raise InvalidCredentials("Unknown test token")
            return None
        parts = token[len(TEST_TOKEN_PREFIX) :].split(":")
        if not parts[0]:
            raise InvalidCredentials("Empty test user id")
        roles = ("user", "admin") if "admin" in parts[1:] else ("user",)
        return Identity(user_id=parts[0], roles=roles, username=parts[0], scheme="test")


def auth_headers(user_id: str, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_TOKEN_PREFIX}{user_id}{':admin' if admin else ''}"}
