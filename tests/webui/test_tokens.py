"""Silent token refresh, against a server whose access tokens last one minute: the app
is used past the first token's expiry without the user noticing anything (no log-out,
no error, the same WebSocket, which re-authenticated itself)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any

from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .test_flow import send, sign_up
from .test_pages import RECONNECTED, WATCH_CONNECTION

# what the page hears when another tab of the same login has refreshed the tokens
ANOTHER_TAB_REFRESHED = """() => window.dispatchEvent(new StorageEvent('storage', {
  key: 'llmmc.refresh', newValue: localStorage.getItem('llmmc.refresh')}))"""


def expiry(token: str) -> int:
    payload = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def status_of(base: str, token: str) -> int:
    req = urllib.request.Request(
        base + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_tokens_are_refreshed_without_the_user_noticing(
    open_page: Any, short_token_server: ServerProcess
) -> None:
    server = short_token_server
    page = open_page().page
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    sign_up(page, server.url, "fresh")
    page.evaluate(WATCH_CONNECTION)
    send(page, "before the token expires")
    reply = page.locator("li.msg.assistant .body")
    expect(reply.last).to_have_text("Hello! You said: before the token expires")
    first = page.evaluate("localStorage.getItem('llmmc.access')")
    assert status_of(server.url, first) == 200

    # a token renewed while a reply streams (here: as if another tab had refreshed) is
    # sent over the socket, and the reply streams on: it is not taken for a reconnection
    send(page, "please reconnect")
    expect(page.locator("li.msg.assistant.streaming .body")).to_contain_text("Hello")
    page.evaluate(ANOTHER_TAB_REFRESHED)
    expect(reply.last).to_have_text("Hello! You said: please reconnect " + " ".join(["again"] * 40))
    assert page.evaluate("document.querySelector('.toast')?.textContent ?? ''") == ""

    # the app takes a new token before the first one expires ...
    page.wait_for_function(
        "(t) => localStorage.getItem('llmmc.access') !== t", arg=first, timeout=90_000
    )
    # ... and the first one does expire (the browser's clock is the server's)
    page.wait_for_function(
        "(exp) => Date.now() / 1000 > exp + 1", arg=expiry(first), timeout=90_000
    )
    assert status_of(server.url, first) == 401

    # past that: chatting over the same socket and REST calls work, nothing was shown
    send(page, "after the token expired")
    expect(reply.last).to_have_text("Hello! You said: after the token expired")
    assert not page.evaluate(RECONNECTED, 0), page.evaluate("window.__states")
    assert page.evaluate("window.__states") == ["open"]
    assert len(sockets) == 1 and not sockets[0].is_closed()
    page.get_by_role("link", name="Profile").click()
    expect(page.locator(".who-am-i")).to_contain_text("fresh")
    page.get_by_role("link", name="Chat", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/chat"))
    expect(page.locator(".toast[data-kind=error]")).to_have_count(0)
    expect(page.locator("li.msg.error")).to_have_count(0)
