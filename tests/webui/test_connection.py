"""A network that goes silent without closing the socket, in a real browser at desktop and
phone widths: noticed within 10 s, a message written meanwhile is marked as waiting, goes
out once the connection is back and is answered; a toast never covers the composer."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import shot
from .test_flow import send, sign_up
from .test_messages import WIDTHS, label
from .test_pages import settled


def boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.mark.parametrize("viewport", WIDTHS)
def test_a_silent_network_is_noticed(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    silent = {"on": False}

    def through(ws: Any) -> None:
        upstream = ws.connect_to_server()
        # frames are carried both ways only while the "network" works; nothing is closed
        ws.on_message(lambda m: None if silent["on"] else upstream.send(m))
        upstream.on_message(lambda m: None if silent["on"] else ws.send(m))

    page.route_web_socket(re.compile(r"/ws/chat$"), through)
    sign_up(page, server.url, "silent")
    send(page, "before the silence")
    expect(page.locator("li.msg.assistant .body")).to_have_text(
        ["Hello! You said: before the silence"]
    )
    settled(page)

    silent["on"] = True
    went = time.monotonic()
    expect(page.locator(".connection")).not_to_have_attribute("data-state", "open", timeout=10_000)
    assert time.monotonic() - went <= 10.5
    expect(page.locator(".connection")).to_have_attribute("data-state", "reconnecting")

    # written while the network is away: marked as waiting, not lost
    send(page, "written in the silence")
    mine = page.locator("li.msg.user").last
    expect(mine).to_have_class(re.compile(r"\bpending\b"))
    expect(mine.locator(".pending-mark")).to_have_text("Waiting to send…")
    shot(page, f"{label(viewport)}-pending-message")

    silent["on"] = False
    expect(page.locator(".connection")).to_have_attribute("data-state", "open", timeout=30_000)
    expect(page.locator("li.msg.assistant .body").last).to_have_text(
        "Hello! You said: written in the silence"
    )
    expect(page.locator("li.msg.user.pending")).to_have_count(0)
    settled(page)
    expect(page.locator("li.msg.user .body")).to_have_text(
        ["before the silence", "written in the silence"]
    )

    # a toast is shown away from the composer
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("li.msg.assistant").last.get_by_role("button", name="Copy", exact=True).click()
    toast = page.locator(".toast.visible")
    expect(toast).to_be_visible()
    page.wait_for_timeout(300)
    assert not boxes_overlap(toast.bounding_box(), page.locator("form.composer").bounding_box())
    shot(page, f"{label(viewport)}-toast")
