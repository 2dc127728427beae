"""The plugin's outbound session is opened in start() and closed in stop(). Driven
through the real kernel's lifecycle."""

from __future__ import annotations

from pathlib import Path

from kernel.app import Kernel
from kernel.config import from_dict
from sdk import ToolCall


async def test_session_lives_from_start_to_stop(libre, tmp_path: Path):
    config = {
        "kernel": {"data_dir": str(tmp_path)},
        "plugins": {
            "enabled": ["translate"],
            "translate": {
                "base_url": libre.url,
                "timeout_seconds": 7,
                "connect_timeout_seconds": 2,
            },
        },
    }
    kernel = Kernel(from_dict(config))
    await kernel.load()
    plugin = kernel.records["translate"].instance
    try:
        assert plugin._session is None
        await kernel.start()
        session = plugin._session
        assert session is not None and not session.closed
        assert session.timeout.total == 7 and session.timeout.connect == 2
        out = await kernel.tools.call("detect_language", {"text": "Hola"}, ToolCall(identity=None))
        assert out["language"] == "es"
        await kernel.stop()
        assert session.closed
        assert plugin._session is None
    finally:
        await kernel.close()
