"""``GET /``: a browser is sent to the page a plugin offers through ``browser_home``;
API clients keep getting the JSON index."""

from __future__ import annotations

from typing import Any

import pytest

from sdk import Plugin, hookimpl

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


class Home(Plugin):
    name = "home"
    target = "/pages/"

    @hookimpl
    def browser_home(self) -> str | None:
        return self.target


class Offsite(Home):
    name = "offsite"
    target = "//evil.example/"


class Fails(Plugin):
    name = "fails"

    async def start(self) -> None:
        raise RuntimeError("cannot start")

    @hookimpl
    def browser_home(self) -> str | None:
        return "/broken/"


@pytest.mark.parametrize(
    "accept",
    [
        BROWSER,
        "text/html",
        "application/json;q=0.5, text/html",
    ],
)
async def test_a_browser_is_redirected(llmmc: Any, accept: str) -> None:
    client = await llmmc({"plugins": {"enabled": ["home"]}}, plugins={"home": Home})
    r = await client.get("/", headers={"Accept": accept}, allow_redirects=False)
    assert r.status == 302
    assert r.headers["Location"] == "/pages/"
    assert "Accept" in r.headers["Vary"]
    assert r.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json, text/html;q=0.5", "text/html;q=0"],
)
async def test_api_clients_still_get_json(llmmc: Any, accept: str | None) -> None:
    client = await llmmc({"plugins": {"enabled": ["home"]}}, plugins={"home": Home})
    headers = {"Accept": accept} if accept is not None else {}
    r = await client.get("/", headers=headers, allow_redirects=False)
    assert r.status == 200
    assert (await r.json())["name"] == "LlmMultiChat"
    assert "Accept" in r.headers["Vary"]


async def test_without_a_home_page_browsers_get_json(llmmc: Any) -> None:
    client = await llmmc()
    r = await client.get("/", headers={"Accept": BROWSER}, allow_redirects=False)
    assert r.status == 200
    assert (await r.json())["name"] == "LlmMultiChat"


async def test_a_stopped_plugin_offers_no_home(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["fails"]}}, plugins={"fails": Fails})
    assert client.plugin_state("fails") == "ERROR"
    r = await client.get("/", headers={"Accept": BROWSER}, allow_redirects=False)
    assert r.status == 200


async def test_only_paths_on_this_server(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["offsite"]}}, plugins={"offsite": Offsite})
    r = await client.get("/", headers={"Accept": BROWSER}, allow_redirects=False)
    assert r.status == 200
    assert "Location" not in r.headers
