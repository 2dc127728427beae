"""The plugin's outbound session is opened in start() and closed in stop()."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from builtin_plugins.translate.plugin import TranslatePlugin
from sdk import ToolCall


async def test_session_lives_from_start_to_stop(libre):
    context = SimpleNamespace(
        config={"base_url": libre.url, "timeout_seconds": 7, "connect_timeout_seconds": 2},
        kernel_config={},
        logger=logging.getLogger("test.translate"),
    )
    plugin = TranslatePlugin(context)  # type: ignore[arg-type]
    assert plugin._session is None
    await plugin.start()
    session = plugin._session
    assert session is not None and not session.closed
    assert session.timeout.total == 7 and session.timeout.connect == 2
    tools = {t.name: t for t in plugin.register_tools()}
    out = await tools["detect_language"].handler({"text": "Hola"}, ToolCall(identity=None))
    assert out["language"] == "es"
    await plugin.stop()
    assert session.closed
    assert plugin._session is None
