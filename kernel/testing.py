"""The host side of testing plugins: the ``llmmc`` fixture starts the real kernel for a
test, on a random loopback port with a fresh ``data_dir``, with plugins found through entry
points exactly as in production (plus any classes passed in ``plugins=``); it is all
stopped when the test ends. Installed as a pytest plugin (``pytest11``) with
``llmmultichat``; the identities it hands out come from :mod:`sdk.testing`.

Also here: ``start_kernel`` (the same without the fixture). The fixtures that run a test
on both database engines (``postgres_database``, ``database_url``) are the storage
plugin's (``builtin_plugins/storage/testing.py``), installed as a pytest plugin too.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sdk import ENTRY_POINT_GROUP
from sdk.plugin import Plugin
from sdk.services import DATABASE
from sdk.testing import TestAuthPlugin, auth_headers

from .app import build_kernel
from .config import from_dict
from .server import KernelRunner


class KernelClient:
    """HTTP client bound to one running kernel. Responses come back already read."""

    def __init__(self, kernel: Any, runner: web.AppRunner, base_url: str) -> None:
        self.kernel = kernel
        self.runner = runner
        self.base_url = base_url
        self.session = aiohttp.ClientSession()

    def url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def auth_headers(user_id: str, admin: bool = False) -> dict[str, str]:
        return auth_headers(user_id, admin)

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.session.request(method, self.url(path), **kwargs) as resp:
            await resp.read()
            return resp

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("DELETE", path, **kwargs)

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """An unread response context (``async with client.stream(...) as r``), for SSE."""
        return self.session.request(method, self.url(path), **kwargs)

    def ws_connect(self, path: str, **kwargs: Any) -> Any:
        ws_url = "ws" + self.url(path)[len("http") :]
        return self.session.ws_connect(ws_url, **kwargs)

    def plugin(self, name: str) -> Any:
        """The running instance of a plugin (to wait for its background work in a test)."""
        return self.kernel.records[name].instance

    @property
    def database(self) -> Any:
        """The database the storage plugin opened (``sdk.Database``)."""
        return self.kernel.services.get(DATABASE)

    def plugin_state(self, name: str) -> str:
        return str(self.kernel.records[name].state.value)

    async def close(self) -> None:
        await self.session.close()
        await self.runner.cleanup()


def test_config(
    config: dict[str, Any] | None,
    data_dir: Path,
    test_auth: bool = True,
    classes: dict[str, type[Plugin]] | None = None,
) -> dict[str, Any]:
    """The config dict ``start_kernel`` uses: a random port, a fresh data_dir, and the
    test identities when the auth plugin is not enabled."""
    cfg = copy.deepcopy(config or {})
    kernel = cfg.setdefault("kernel", {})
    kernel.setdefault("host", "127.0.0.1")
    kernel["port"] = 0
    kernel.setdefault("data_dir", str(data_dir))
    plugins = cfg.setdefault("plugins", {})
    enabled = plugins.setdefault("enabled", [])
    plugins.setdefault("required", [])
    if test_auth and "auth" not in enabled and "testauth" not in enabled:
        enabled.insert(0, "testauth")
    for name in missing_requirements(enabled, classes):
        enabled.insert(0, name)
    return cfg


def missing_requirements(
    enabled: list[str], classes: dict[str, type[Plugin]] | None = None
) -> list[str]:
    """The installed plugins that enabled ones require but the list leaves out (the
    storage plugin, mostly), so a test enables what it is about and gets what that needs.
    Only classes already importable are looked at; nothing is imported for this."""
    installed = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found: list[str] = []
    todo = list(enabled)
    while todo:
        name = todo.pop()
        cls: Any = (classes or {}).get(name)
        ep = installed.get(name)
        if cls is None and ep is None:
            continue
        try:
            cls = cls or ep.load()  # type: ignore[union-attr]
        except Exception:  # reported by the kernel when it discovers the plugin
            continue
        for dep in getattr(cls, "requires", ()):
            if dep not in enabled and dep not in found and dep in installed:
                found.append(dep)
                todo.append(dep)
    return found


async def start_kernel(
    config: dict[str, Any] | None = None,
    *,
    plugins: dict[str, type[Plugin]] | None = None,
    data_dir: Path | None = None,
    test_auth: bool = True,
) -> KernelClient:
    """Start a real kernel on 127.0.0.1 (random port) and return a client for it."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="llmmc-test-"))
    extra: dict[str, type[Plugin]] = {"testauth": TestAuthPlugin, **(plugins or {})}
    loaded = from_dict(test_config(config, data_dir, test_auth, extra), "<test config>")
    kernel, app = await build_kernel(loaded, extra_plugins=extra)
    runner = KernelRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return KernelClient(kernel, runner, f"http://127.0.0.1:{port}")


@pytest.fixture
async def llmmc(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[KernelClient]]]:
    """Factory fixture: ``client = await llmmc(config, plugins={...})``.

    ``database_url=`` sets ``[plugins.storage] url`` (see the ``database_url`` fixture).

    ``test_auth=False`` leaves out the test identities (to see how routes behave with no
    authenticating plugin at all)."""
    clients: list[KernelClient] = []
    counter = 0

    async def factory(
        config: dict[str, Any] | None = None,
        *,
        plugins: dict[str, type[Plugin]] | None = None,
        test_auth: bool = True,
        database_url: str = "",
    ) -> KernelClient:
        nonlocal counter
        counter += 1
        if database_url:
            config = copy.deepcopy(config or {})
            table = config.setdefault("plugins", {})
            table.setdefault("storage", {})["url"] = database_url
            enabled = table.setdefault("enabled", [])
            if "storage" not in enabled:
                enabled.insert(0, "storage")
        client = await start_kernel(
            config, plugins=plugins, data_dir=tmp_path / f"kernel{counter}", test_auth=test_auth
        )
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        await client.close()
