"""The plugin-author docs follow the code: every helper of the test client is in
docs/plugins.md, and every error code the chat WebSocket sends is in docs/chat.md's
table of them."""

from __future__ import annotations

import inspect
import re

from builtin_plugins.chat import websocket
from kernel.testing import KernelClient
from tests.serverproc import ROOT


def test_every_helper_of_the_test_client_is_documented() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    helpers = [name for name in vars(KernelClient) if not name.startswith("_")]
    assert "ws_connect" in helpers and "stream" in helpers and "database" in helpers
    missing = [name for name in helpers if not re.search(rf"client\.{name}\b|`{name}[`(]", text)]
    assert missing == [], f"docs/plugins.md does not document {missing}"


def test_every_websocket_error_code_is_documented() -> None:
    source = inspect.getsource(websocket)
    codes = set(re.findall(r'self\.error\(\s*"([A-Z_]+)"', source))
    codes |= set(re.findall(r'return "([A-Z_]+)"', source))
    codes |= set(re.findall(r'"([A-Z_]+)" if exc\.code', source))
    assert {"UPSTREAM_ERROR", "WEBSOCKET_ERROR", "TURN_IN_PROGRESS", "BAD_MESSAGE"} <= codes
    text = (ROOT / "docs" / "chat.md").read_text()
    section = text[text.index("## WebSocket `/ws/chat`") :]
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert codes - table == set(), f"docs/chat.md lists no {codes - table}"
