"""Open-Meteo: geocode the city with the geocoding API, then read ``current`` weather
from the forecast API, and describe the WMO weather code. No key needed (``api_key``, if
set, is sent as ``apikey`` for Open-Meteo's commercial endpoints)."""

from __future__ import annotations

from typing import Any

from sdk import errors
from sdk.http import Upstream, error_message

from ..wmo import describe
from . import Observation, city_not_found, split_city, timestamp

NAME = "open-meteo"
UNIT_PARAMS = {
    "metric": {"temperature_unit": "celsius", "wind_speed_unit": "ms"},
    "imperial": {"temperature_unit": "fahrenheit", "wind_speed_unit": "mph"},
}
CURRENT = "temperature_2m,relative_humidity_2m,weather_code,wind_speed_10m"

_TEXT = {"type": "string", "maxLength": 200}
GEOCODING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "results": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["name", "latitude", "longitude"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                    "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                    "country_code": _TEXT,
                    "country": _TEXT,
                    "admin1": _TEXT,
                },
            },
        }
    },
}
FORECAST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["current"],
    "properties": {
        "current": {
            "type": "object",
            "required": [
                "time",
                "temperature_2m",
                "relative_humidity_2m",
                "weather_code",
                "wind_speed_10m",
            ],
            "properties": {
                "time": {"type": "integer", "minimum": 0, "maximum": 4102444800},
                "temperature_2m": {"type": "number", "minimum": -150, "maximum": 200},
                "relative_humidity_2m": {"type": "number", "minimum": 0, "maximum": 100},
                "weather_code": {"type": "integer", "minimum": 0, "maximum": 99},
                "wind_speed_10m": {"type": "number", "minimum": 0, "maximum": 1000},
            },
        }
    },
}


class OpenMeteo:
    name = NAME

    def __init__(
        self,
        forecast: Upstream,
        geocoding: Upstream,
        base_url: str,
        geocoding_url: str,
        api_key: str,
    ) -> None:
        self.forecast = forecast
        self.geocoding = geocoding
        self.base_url = base_url.rstrip("/")
        self.geocoding_url = geocoding_url.rstrip("/")
        self.api_key = api_key

    def _key(self) -> dict[str, str]:
        return {"apikey": self.api_key} if self.api_key else {}

    async def _geocode(self, city: str) -> dict[str, Any]:
        name, qualifier = split_city(city)
        if len(name) < 2:
            raise city_not_found(city)
        params = {"name": name, "count": 10 if qualifier else 1, "language": "en", "format": "json"}
        status, body = await self.geocoding.get(
            f"{self.geocoding_url}/search", params | self._key()
        )
        if status != 200:
            reason = error_message(body, "reason")
            raise errors.BadGateway(
                f"Open-Meteo geocoding answered HTTP {status}" + (f": {reason}" if reason else "")
            )
        body = self.geocoding.check(body, GEOCODING_SCHEMA, "geocoding answer")
        results = body.get("results") or []
        if qualifier:
            q = qualifier.casefold()
            results = [
                r
                for r in results
                if q
                in (str(r.get(k, "")).casefold() for k in ("country_code", "country", "admin1"))
            ]
        if not results:
            raise city_not_found(city)
        return dict(results[0])

    async def current(self, city: str, units: str) -> Observation:
        place = await self._geocode(city)
        params = {
            "latitude": place["latitude"],
            "longitude": place["longitude"],
            "current": CURRENT,
            "timezone": "GMT",
            "timeformat": "unixtime",
            **UNIT_PARAMS[units],
            **self._key(),
        }
        status, body = await self.forecast.get(f"{self.base_url}/forecast", params)
        if status != 200:
            reason = error_message(body, "reason")
            raise errors.BadGateway(
                f"Open-Meteo forecast answered HTTP {status}" + (f": {reason}" if reason else "")
            )
        now = self.forecast.check(body, FORECAST_SCHEMA, "forecast")["current"]
        label = place["name"]
        if place.get("country_code"):
            label = f"{label}, {place['country_code']}"
        return Observation(
            city=label,
            temperature=float(now["temperature_2m"]),
            description=describe(int(now["weather_code"])),
            humidity=float(now["relative_humidity_2m"]),
            wind_speed=float(now["wind_speed_10m"]),
            observed_at=timestamp(int(now["time"])),
        )
