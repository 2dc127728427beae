"""The plugin's outbound session is opened in start() and closed in stop(); nothing is
opened before start."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from builtin_plugins.weather.plugin import WeatherPlugin
from sdk import ToolCall


async def test_session_lives_from_start_to_stop(open_meteo):
    context = SimpleNamespace(
        config={"base_url": open_meteo.url, "geocoding_url": open_meteo.url},
        kernel_config={"bus": {"backend": "memory"}},
        logger=logging.getLogger("test.weather"),
    )
    plugin = WeatherPlugin(context)  # type: ignore[arg-type]
    assert plugin._session is None
    await plugin.start()
    session = plugin._session
    assert session is not None and not session.closed
    assert session.timeout.total == 10 and session.timeout.connect == 5
    [tool] = plugin.register_tools()
    out = await tool.handler({"city": "Berlin"}, ToolCall(identity=None))
    assert out["city"] == "Berlin, DE"
    await plugin.stop()
    assert session.closed
    assert plugin._session is None
    assert (await plugin.health()).status == "unavailable"
