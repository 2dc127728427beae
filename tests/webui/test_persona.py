"""The user's persona on the Profile page in a real browser: saved, shown again after a
reload, told to the characters (the fake upstream sees it), and its labels translated."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import DESKTOP, Upstreams, shot
from .test_flow import send, sign_up
from .test_pages import settled


def system_prompt_of(upstreams: Upstreams, said: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for body in list(upstreams.llm.requests):
            messages = body.get("messages") or []
            if any(m.get("role") == "user" and m.get("content") == said for m in messages):
                return str(messages[0].get("content"))
        time.sleep(0.1)
    raise AssertionError(f"the upstream was never asked about {said!r}")


def test_persona_form(open_page: Any, server: ServerProcess, upstreams: Upstreams) -> None:
    page = open_page(viewport=DESKTOP).page
    sign_up(page, server.url, "persona")
    page.get_by_role("link", name="Profile").click()
    expect(page.get_by_role("heading", name="Your persona")).to_be_visible()
    name = page.get_by_label("Your name")
    about = page.get_by_label("About you")
    expect(name).to_have_value("")
    name.fill("Aiko")
    about.fill("A botanist who loves rainy days.")
    page.get_by_role("button", name="Save persona").click()
    expect(page.locator(".toast")).to_have_text("Persona saved.")
    shot(page, "desktop-persona")
    page.reload()
    expect(page.get_by_label("Your name")).to_have_value("Aiko")
    expect(page.get_by_label("About you")).to_have_value("A botanist who loves rainy days.")

    page.get_by_role("link", name="Chat", exact=True).click()
    send(page, "persona check 7731")
    settled(page)
    system = system_prompt_of(upstreams, "persona check 7731")
    assert "The user is called Aiko. About them: A botanist who loves rainy days." in system

    # the form speaks the chosen language
    page.evaluate("localStorage.setItem('llmmc.lang', 'ja')")
    page.goto(server.url + "/app/#/profile")
    expect(page.get_by_role("heading", name="あなたのペルソナ")).to_be_visible()
    expect(page.get_by_label("あなたの名前")).to_have_value("Aiko")
