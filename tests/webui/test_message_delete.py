"""Deleting a message in a real browser: asked first, a reply goes alone, a user message
goes with its replies, and a reload shows the same."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import DESKTOP, PHONE, shot
from .test_flow import send, sign_up
from .test_pages import settled


@pytest.mark.parametrize(
    "viewport", [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]
)
def test_delete_a_reply_and_a_message(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    sign_up(page, server.url, "deleter")
    send(page, "first question")
    expect(page.locator("li.msg.assistant .body").last).to_have_text(
        "Hello! You said: first question"
    )
    settled(page)
    send(page, "second question")
    expect(page.locator("li.msg.assistant .body").last).to_have_text(
        "Hello! You said: second question"
    )
    settled(page)

    # dismissed: nothing is deleted
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator("li.msg.assistant").last.get_by_role("button", name="Delete").click()
    expect(page.locator("li.msg.assistant")).to_have_count(2)
    assert asked == ["Delete this reply?"]

    # a reply goes alone: its user message stays, unanswered
    page.once("dialog", lambda d: d.accept())
    page.locator("li.msg.assistant").last.get_by_role("button", name="Delete").click()
    settled(page)
    expect(page.locator("li.msg.assistant")).to_have_count(1)
    expect(page.locator("li.msg.user .body")).to_have_text(["first question", "second question"])
    expect(page.locator(".toast")).to_have_text("Deleted.")
    shot(page, f"{'desktop' if viewport['width'] > 500 else 'phone'}-reply-deleted")

    # a user message goes with its reply
    asked.clear()

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator("li.msg.user").first.get_by_role("button", name="Delete").click()
    settled(page)
    assert asked == ["Delete this message and the replies to it?"]
    expect(page.locator("li.msg.user .body")).to_have_text(["second question"])
    expect(page.locator("li.msg.assistant")).to_have_count(0)
    page.reload()
    expect(page.locator("li.msg.user .body")).to_have_text(["second question"])
    expect(page.locator("li.msg.assistant")).to_have_count(0)
