"""The plugin's outbound session is opened in start() and closed in stop(); nothing is
opened before start. Driven through the real kernel's lifecycle."""

from __future__ import annotations

from pathlib import Path

from kernel.app import Kernel
from kernel.config import from_dict
from sdk import ToolCall


async def test_session_lives_from_start_to_stop(open_meteo, tmp_path: Path):
    config = {
        "kernel": {"data_dir": str(tmp_path)},
        "plugins": {
            "enabled": ["weather"],
            "weather": {"base_url": open_meteo.url, "geocoding_url": open_meteo.url},
        },
    }
    kernel = Kernel(from_dict(config))
    await kernel.load()  # initialized, not started
    plugin = kernel.records["weather"].instance
    try:
        assert plugin._session is None
        await kernel.start()
        session = plugin._session
        assert session is not None and not session.closed
        assert session.timeout.total == 10 and session.timeout.connect == 5
        out = await kernel.tools.call("weather", {"city": "Berlin"}, ToolCall(identity=None))
        assert out["city"] == "Berlin, DE"
        await kernel.stop()
        assert session.closed
        assert plugin._session is None
        assert (await plugin.health()).status == "unavailable"
    finally:
        await kernel.close()
