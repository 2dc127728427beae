"""The weather tool on Open-Meteo (geocoding + forecast) through the kernel's execute route."""

from __future__ import annotations

import pytest

from tests.weather.helpers import EXECUTE, config, weather

FIELDS = {
    "city",
    "temperature",
    "description",
    "humidity",
    "wind_speed",
    "units",
    "provider",
    "observed_at",
}


async def test_weather_metric_result_has_exactly_the_spec_fields(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    r = await weather(client, "Berlin")
    assert r.status == 200
    body = await r.json()
    assert body["tool"] == "weather"
    result = body["result"]
    assert set(result) == FIELDS
    assert result == {
        "city": "Berlin, DE",
        "temperature": 21.5,
        "description": "Partly cloudy",  # WMO code 2
        "humidity": 48,
        "wind_speed": 5.0,  # 18 km/h asked for in m/s
        "units": "metric",
        "provider": "open-meteo",
        "observed_at": "2024-06-15T11:15:00Z",
    }
    geo = open_meteo.last("/v1/search")
    assert geo.query["name"] == "Berlin"
    forecast = open_meteo.last("/v1/forecast")
    assert forecast.query["temperature_unit"] == "celsius"
    assert forecast.query["wind_speed_unit"] == "ms"
    assert set(forecast.query["current"].split(",")) == {
        "temperature_2m",
        "relative_humidity_2m",
        "weather_code",
        "wind_speed_10m",
    }
    assert float(forecast.query["latitude"]) == pytest.approx(52.52437)


async def test_weather_imperial_asks_for_fahrenheit_and_mph(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    r = await weather(client, "Tokyo", "imperial")
    assert r.status == 200
    result = (await r.json())["result"]
    assert result["units"] == "imperial"
    assert result["temperature"] == pytest.approx(80.6)  # 27 °C
    assert result["wind_speed"] == pytest.approx(5.6)  # 9 km/h
    assert result["description"] == "Slight rain"  # WMO code 61
    forecast = open_meteo.last("/v1/forecast")
    assert forecast.query["temperature_unit"] == "fahrenheit"
    assert forecast.query["wind_speed_unit"] == "mph"


async def test_country_qualifier_picks_the_right_city(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    us = (await (await weather(client, "Paris, US")).json())["result"]
    fr = (await (await weather(client, "Paris")).json())["result"]
    texas = (await (await weather(client, "Paris, texas")).json())["result"]
    assert us["city"] == "Paris, US" and us["description"] == "Thunderstorm"
    assert fr["city"] == "Paris, FR" and fr["description"] == "Clear sky"
    assert texas["city"] == "Paris, US"


async def test_unknown_city_is_404_city_not_found(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    for city in ("Atlantis", "Berlin, JP", "x"):
        r = await weather(client, city)
        assert r.status == 404, city
        assert r.headers["Content-Type"].startswith("application/problem+json")
        problem = await r.json()
        assert problem["code"] == "CITY_NOT_FOUND"
        assert problem["status"] == 404
    assert open_meteo.count("/v1/forecast") == 0


async def test_execute_without_a_token_is_401(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    r = await client.post(EXECUTE, json={"tool": "weather", "params": {"city": "Berlin"}})
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.post(
        EXECUTE,
        json={"tool": "weather", "params": {"city": "Berlin"}},
        headers={"Authorization": "Bearer nonsense"},
    )
    assert r.status == 401
    assert open_meteo.count() == 0


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"city": ""},
        {"city": "   "},
        {"city": "Berlin", "units": "kelvin"},
        {"city": "Berlin", "extra": 1},
        {"city": 42},
        {"city": "B" * 101},
    ],
)
async def test_bad_params_are_422(llmmc, open_meteo, params):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    r = await client.post(
        EXECUTE, json={"tool": "weather", "params": params}, headers=client.auth_headers("u1")
    )
    assert r.status == 422
    assert (await r.json())["errors"]
    assert open_meteo.count() == 0


async def test_tool_is_listed_with_parameter_and_result_schemas(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    r = await client.get("/api/v1/plugins/weather", headers=client.auth_headers("u1"))
    info = await r.json()
    [tool] = info["tools"]
    assert tool["name"] == "weather"
    assert tool["parameters"]["required"] == ["city"]
    assert set(tool["result"]["required"]) == FIELDS


async def test_results_match_the_declared_result_schema_and_openapi(llmmc, open_meteo):
    import jsonschema

    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    info = await (
        await client.get("/api/v1/plugins/weather", headers=client.auth_headers("u1"))
    ).json()
    schema = info["tools"][0]["result"]
    for city, units in (("Berlin", "metric"), ("New York", "imperial"), ("Manchester", None)):
        result = (await (await weather(client, city, units)).json())["result"]
        jsonschema.validate(result, schema)
    spec = await (await client.get("/openapi.json")).json()
    assert "observed_at" in str(spec) and "/api/v1/plugins/{name}/execute" in str(spec)
