"""The weather config schema refuses unknown providers and bad URLs before anything starts."""

from __future__ import annotations

import pytest

from kernel.config import ConfigError
from tests.weather.helpers import config


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"provider": "accuweather"}, "provider"),
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "ftp://example.com/v1"}, "base_url"),
        ({"base_url": "http://exa mple.com"}, "base_url"),
        ({"base_url": "https://example.com/v1?key=1"}, "base_url"),
        ({"geocoding_url": "javascript:alert(1)"}, "geocoding_url"),
        ({"redis_url": "http://127.0.0.1:6379"}, "redis_url"),
        ({"cache_seconds": -1}, "cache_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"provder": "open-meteo"}, "provder"),
    ],
)
async def test_bad_config_stops_startup_and_names_the_key(llmmc, table, key):
    with pytest.raises(ConfigError) as info:
        await llmmc(config(**table))
    text = "\n".join(info.value.problems)
    assert "weather" in text
    assert key in text


@pytest.mark.parametrize(
    "url",
    [
        "https://api.open-meteo.com/v1",
        "http://127.0.0.1:8080",
        "http://[::1]:8080/v1/",
        "https://customer-api.open-meteo.com/v1",
    ],
)
async def test_good_urls_are_accepted(llmmc, url):
    client = await llmmc(config(base_url=url, geocoding_url=url))
    assert client.plugin_state("weather") == "RUNNING"


async def test_defaults_are_the_spec_values(llmmc):
    client = await llmmc(config())
    info = await (
        await client.get("/api/v1/plugins/weather", headers=client.auth_headers("a", admin=True))
    ).json()
    cfg = info["config"]
    assert cfg["provider"] == "open-meteo"
    assert cfg["base_url"] == "https://api.open-meteo.com/v1"
    assert cfg["geocoding_url"] == "https://geocoding-api.open-meteo.com/v1"
    assert cfg["cache_seconds"] == 600
