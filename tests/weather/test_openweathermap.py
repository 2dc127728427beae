"""The openweathermap provider, its key handling and its error answers."""

from __future__ import annotations

import pytest

from tests.fakes.upstream import MODES
from tests.weather.helpers import config, weather


def owm_config(fake, **extra):
    return config(provider="openweathermap", base_url=fake.url, api_key="owm-secret", **extra)


async def test_result_and_request(llmmc, owm):
    client = await llmmc(owm_config(owm))
    r = await weather(client, "London", "imperial")
    assert r.status == 200
    result = (await r.json())["result"]
    assert result == {
        "city": "London, GB",
        "temperature": pytest.approx(57.6),  # 14.2 °C
        "description": "Overcast clouds",
        "humidity": 81,
        "wind_speed": pytest.approx(13.9),  # 22.3 km/h in mph
        "units": "imperial",
        "provider": "openweathermap",
        "observed_at": "2024-06-15T11:15:30Z",
    }
    sent = owm.last("/data/2.5/weather")
    assert sent.query == {"q": "London", "appid": "owm-secret", "units": "imperial", "lang": "en"}


async def test_country_qualifier_is_passed_on(llmmc, owm):
    client = await llmmc(owm_config(owm))
    result = (await (await weather(client, "Paris , us")).json())["result"]
    assert result["city"] == "Paris, US"
    assert owm.last().query["q"] == "Paris,us"


async def test_unknown_city_is_404(llmmc, owm):
    client = await llmmc(owm_config(owm))
    r = await weather(client, "Atlantis")
    assert r.status == 404
    assert (await r.json())["code"] == "CITY_NOT_FOUND"


async def test_rejected_key_is_502_naming_the_setting(llmmc, owm):
    client = await llmmc(config(provider="openweathermap", base_url=owm.url, api_key="wrong"))
    r = await weather(client, "London")
    assert r.status == 502
    problem = await r.json()
    assert problem["code"] == "UPSTREAM_AUTH_FAILED"
    assert "plugins.weather.api_key" in problem["detail"]
    assert "wrong" not in problem["detail"]


async def test_upstream_rate_limit_is_502(llmmc, owm):
    client = await llmmc(owm_config(owm))
    owm.fail_next(429)
    r = await weather(client, "London")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_RATE_LIMITED"


@pytest.mark.parametrize("mode", [m for m in MODES if m is not None])
async def test_broken_upstream_is_502(llmmc, owm, mode):
    client = await llmmc(owm_config(owm))
    owm.mode = mode
    r = await weather(client, "London")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_ERROR"


async def test_slow_upstream_is_504(llmmc, owm):
    client = await llmmc(owm_config(owm, timeout_seconds=0.3))
    owm.delay = 5
    r = await weather(client, "London")
    assert r.status == 504
    assert (await r.json())["code"] == "UPSTREAM_TIMEOUT"


async def test_missing_key_starts_unavailable_and_answers_503(llmmc, owm):
    client = await llmmc(config(provider="openweathermap", base_url=owm.url))
    assert client.plugin_state("weather") == "RUNNING"
    r = await weather(client, "London")
    assert r.status == 503
    problem = await r.json()
    assert problem["code"] == "MISSING_SETTING"
    assert problem["setting"] == "plugins.weather.api_key"
    assert "plugins.weather.api_key" in problem["detail"]
    assert owm.count() == 0

    info = await (
        await client.get("/api/v1/plugins/weather", headers=client.auth_headers("u1"))
    ).json()
    assert info["status"] == "unavailable"
    assert "plugins.weather.api_key" in info["detail"]
    health = await (await client.get("/health")).json()
    assert health["plugins"]["weather"]["status"] == "unavailable"
    assert "plugins.weather.api_key" in health["plugins"]["weather"]["detail"]


async def test_open_meteo_default_base_url_means_owm_default(llmmc):
    """With the SPEC's plugins.toml (base_url = Open-Meteo's) and provider switched to
    openweathermap, the plugin goes to OpenWeatherMap's own endpoint, not Open-Meteo's."""
    from builtin_plugins.weather.plugin import WeatherPlugin

    client = await llmmc(config(provider="openweathermap", api_key="k"))
    plugin = client.kernel.records["weather"].instance
    assert isinstance(plugin, WeatherPlugin)
    assert plugin._service.provider.base_url == "https://api.openweathermap.org/data/2.5"
