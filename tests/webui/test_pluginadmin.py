"""The Admin page's plugins at run time, in a real browser at desktop and phone widths,
against a real server with the pluginadmin plugin: a plugin switched off and on, a
refusal said in words, settings from the plugin's JSON Schema saved and refused, and the
plugin's history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import ADMIN, Upstreams, server_config, server_with_admin, shot
from .test_messages import WIDTHS, label


@pytest.fixture(scope="module")
def plugin_server(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    config = server_config(upstreams)
    config["plugins"]["enabled"] = ["pluginadmin", *config["plugins"]["enabled"]]
    yield from server_with_admin(config, tmp_path_factory.mktemp("pluginadmin"))


def admin_page(open_page: Any, base: str, viewport: dict[str, int]) -> Any:
    w = open_page(viewport=viewport)
    w.expected_failures.append("/api/v1/admin/plugins/")  # the refusals' 409 and 422
    page = w.page
    page.goto(base + "/app/#/login")
    page.get_by_label("Email").fill(ADMIN["email"])
    page.get_by_label("Password").fill(ADMIN["password"])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    page.get_by_role("link", name="Admin").click()
    return page


@pytest.mark.parametrize("viewport", WIDTHS)
def test_switch_configure_and_read_the_history_of_a_plugin(
    open_page: Any, plugin_server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = admin_page(open_page, plugin_server.url, viewport)
    weather = page.locator('li.plugin[data-plugin="weather"]')
    expect(weather.locator(".state")).to_have_text("RUNNING")
    switch = weather.get_by_role("switch", name="On: weather")
    expect(switch).to_be_checked()
    # a plugin the configuration requires cannot be switched off here
    expect(page.get_by_role("switch", name="On: auth")).to_be_disabled()

    # off, then on again
    switch.click()
    expect(page.locator(".toast")).to_have_text("weather is off.")
    expect(weather.locator(".state")).to_have_text("DISABLED")
    expect(weather.get_by_role("switch", name="On: weather")).not_to_be_checked()
    weather.get_by_role("switch", name="On: weather").click()
    expect(weather.locator(".state")).to_have_text("RUNNING")
    expect(weather.get_by_role("switch", name="On: weather")).to_be_checked()

    # a refusal: storage is needed by plugins that are on
    storage = page.locator('li.plugin[data-plugin="storage"]')
    storage_switch = storage.get_by_role("switch", name="On: storage")
    if storage_switch.is_enabled():
        storage_switch.click()
        expect(storage.locator(".field-error")).to_contain_text(
            re.compile("Another plugin that is on needs this one|cannot be turned off")
        )
        expect(storage_switch).to_be_checked()
    else:
        expect(storage.locator(".badge")).to_have_text("Required by the configuration")

    # settings built from the schema: a bad value is refused under its field, a good one kept
    weather.locator("summary", has_text="Settings").click()
    field = weather.get_by_label("cache_seconds", exact=True)
    expect(field).to_have_attribute("type", "number")
    field.fill("-5")
    weather.get_by_role("button", name="Save settings").click()
    expect(field).to_have_attribute("aria-invalid", "true")
    field.fill(str(viewport["width"] % 97))  # a value of its own for each run on this server
    weather.get_by_role("button", name="Save settings").click()
    expect(page.locator(".toast")).to_have_text("Settings of weather saved.")
    expect(weather.locator(".overridden")).to_contain_text("cache_seconds")
    shot(page, f"{label(viewport)}-admin-plugins")

    # the history says what happened, newest first
    weather.locator("summary", has_text="History").click()
    rows = weather.locator("table.history tbody tr")
    expect(rows.first).to_contain_text("Settings")
    expect(weather.locator("table.history")).to_contain_text("State")
    weather.locator("table.history").scroll_into_view_if_needed()
    shot(page, f"{label(viewport)}-admin-plugin-history")
