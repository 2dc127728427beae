"""OpenWeatherMap Current Weather API 2.5 (``/weather?q=City[,CC]``); needs ``api_key``."""

from __future__ import annotations

from typing import Any

from sdk import errors
from sdk.http import Upstream, error_message

from . import Observation, city_not_found, split_city, timestamp

NAME = "openweathermap"
DEFAULT_BASE_URL = "https://api.openweathermap.org/data/2.5"

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["main", "weather", "wind", "dt"],
    "properties": {
        "main": {
            "type": "object",
            "required": ["temp", "humidity"],
            "properties": {
                "temp": {"type": "number", "minimum": -150, "maximum": 400},
                "humidity": {"type": "number", "minimum": 0, "maximum": 100},
            },
        },
        "weather": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {
                "type": "object",
                "required": ["description"],
                "properties": {"description": {"type": "string", "maxLength": 200}},
            },
        },
        "wind": {
            "type": "object",
            "required": ["speed"],
            "properties": {"speed": {"type": "number", "minimum": 0, "maximum": 1000}},
        },
        "dt": {"type": "integer", "minimum": 0, "maximum": 4102444800},
        "name": {"type": "string", "maxLength": 200},
        "sys": {
            "type": "object",
            "properties": {"country": {"type": "string", "maxLength": 10}},
        },
    },
}


class OpenWeatherMap:
    name = NAME

    def __init__(self, upstream: Upstream, base_url: str, api_key: str) -> None:
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    async def current(self, city: str, units: str) -> Observation:
        name, qualifier = split_city(city)
        if not name:
            raise city_not_found(city)
        q = f"{name},{qualifier}" if qualifier else name
        params = {"q": q, "appid": self.api_key, "units": units, "lang": "en"}
        status, body = await self.upstream.get(f"{self.base_url}/weather", params)
        if status == 404:
            raise city_not_found(city)
        if status == 401:
            raise errors.BadGateway(
                "OpenWeatherMap rejected the API key (setting plugins.weather.api_key)",
                code="UPSTREAM_AUTH_FAILED",
            )
        if status == 429:
            raise errors.BadGateway(
                "OpenWeatherMap's rate limit for this API key is exhausted",
                code="UPSTREAM_RATE_LIMITED",
            )
        if status != 200:
            message = error_message(body, "message")
            raise errors.BadGateway(
                f"OpenWeatherMap answered HTTP {status}" + (f": {message}" if message else "")
            )
        body = self.upstream.check(body, WEATHER_SCHEMA, "weather report")
        label = body.get("name") or name
        country = (body.get("sys") or {}).get("country")
        if country:
            label = f"{label}, {country}"
        description = body["weather"][0]["description"].strip() or "Unknown conditions"
        return Observation(
            city=label,
            temperature=float(body["main"]["temp"]),
            description=description[:1].upper() + description[1:],
            humidity=float(body["main"]["humidity"]),
            wind_speed=float(body["wind"]["speed"]),
            observed_at=timestamp(int(body["dt"])),
        )
