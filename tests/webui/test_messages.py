"""The web client's second round in a real browser, at desktop and phone widths: a stopped
reply that outlives a reload, the actions on a message (copy, regenerate and the
alternatives, edit and resend, continue) and the copy button of a code block."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import DESKTOP, PHONE, shot
from .test_flow import send, sign_up
from .test_pages import settled

WIDTHS = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]


def label(viewport: dict[str, int]) -> str:
    return "desktop" if viewport["width"] > 500 else "phone"


@pytest.mark.parametrize("viewport", WIDTHS)
def test_stop_then_reload_keeps_the_message_and_the_partial_reply(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    sign_up(page, server.url, "stopreload")
    send(page, "tell me slowly")
    streaming = page.locator("li.msg.assistant.streaming .body")
    expect(streaming).to_contain_text("word word word")
    page.get_by_role("button", name="Stop").click()
    settled(page)
    expect(page).to_have_url(re.compile(r"#/chat/[\w-]+$"))
    page.reload()
    expect(page.locator("li.msg.user .body")).to_have_text(["tell me slowly"])
    reply = page.locator("li.msg.assistant")
    expect(reply).to_have_count(1)
    expect(reply.locator(".body")).to_contain_text("word word")
    expect(reply).to_have_class(re.compile(r"\bstopped\b"))
    expect(reply.locator(".status-mark")).to_have_text("Stopped")
    shot(page, f"{label(viewport)}-stopped-after-reload")


@pytest.mark.parametrize("viewport", WIDTHS)
def test_message_actions(open_page: Any, server: ServerProcess, viewport: dict[str, int]) -> None:
    page = open_page(viewport=viewport).page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_up(page, server.url, "actions")
    send(page, "first question")
    reply = page.locator("li.msg.assistant").last
    expect(reply.locator(".body")).to_have_text("Hello! You said: first question")
    settled(page)

    # copy a reply
    reply.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator(".toast")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == "Hello! You said: first question"

    # regenerate: a second reply, the first kept as an alternative to browse back to
    reply.get_by_role("button", name="Regenerate").click()
    settled(page)
    expect(page.locator("li.msg.assistant")).to_have_count(1)
    reply = page.locator("li.msg.assistant").last
    expect(reply.locator(".alt-count")).to_have_text("2/2")
    second = reply.get_attribute("data-id")
    reply.get_by_role("button", name="Previous reply").click()
    settled(page)
    expect(page.locator("li.msg.assistant .alt-count")).to_have_text("1/2")
    assert page.locator("li.msg.assistant").get_attribute("data-id") != second
    shot(page, f"{label(viewport)}-alternatives")
    page.locator("li.msg.assistant").get_by_role("button", name="Next reply").click()
    settled(page)
    expect(page.locator("li.msg.assistant .alt-count")).to_have_text("2/2")

    # continue: the last reply grows
    before = page.locator("li.msg.assistant .body").text_content() or ""
    page.locator("li.msg.assistant").get_by_role("button", name="Continue").click()
    settled(page)
    expect(page.locator("li.msg.assistant .body")).not_to_have_text(before)
    after = page.locator("li.msg.assistant .body").text_content() or ""
    assert after.startswith(before.rstrip()) and len(after) > len(before), (before, after)

    # edit the message and resend: what came after it is answered again
    page.locator("li.msg.user").get_by_role("button", name="Edit").click()
    box = page.get_by_label("Edit", exact=True)
    expect(box).to_be_focused()
    box.fill("second question")
    shot(page, f"{label(viewport)}-edit-message")
    page.get_by_role("button", name="Save and resend").click()
    settled(page)
    expect(page.locator("li.msg.user .body")).to_have_text(["second question"])
    expect(page.locator("li.msg.assistant .body")).to_have_text(
        ["Hello! You said: second question"]
    )
    page.reload()
    expect(page.locator("li.msg.user .body")).to_have_text(["second question"])

    # a code block has its own copy button
    send(page, "code please")
    block = page.locator("li.msg.assistant .code-block").last
    expect(block.locator("pre")).to_have_text("print('hi')")
    settled(page)
    block = page.locator("li.msg.assistant .code-block").last
    block.get_by_role("button", name="Copy code").click()
    expect(page.locator(".toast")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
    shot(page, f"{label(viewport)}-code-copy")
