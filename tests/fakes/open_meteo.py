"""A fake Open-Meteo: the geocoding API (``GET /v1/search``) and the forecast API
(``GET /v1/forecast`` with ``current=...``) on one real aiohttp server.

    async with FakeOpenMeteo() as fake:
        config = {"base_url": fake.url, "geocoding_url": fake.url}   # both ".../v1"
        fake.count("/v1/search"), fake.count("/v1/forecast")

Errors are spelled like the real service: HTTP 400 ``{"error": true, "reason": "..."}``.
A name with no match answers 200 with no ``results`` key, as the real geocoder does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .upstream import FakeUpstream

__all__ = ["CITIES", "City", "FakeOpenMeteo"]


@dataclass(frozen=True, slots=True)
class City:
    id: int
    name: str
    latitude: float
    longitude: float
    country_code: str
    country: str
    admin1: str
    timezone: str
    population: int
    # "Current" weather at this place (metric: °C, %, km/h), and its WMO code.
    temperature_c: float
    humidity: int
    wind_kmh: float
    weather_code: int


# fmt: off
CITIES: list[City] = [
    City(2950159, "Berlin", 52.52437, 13.41053, "DE", "Germany", "Land Berlin", "Europe/Berlin", 3426354, 21.5, 48, 18.0, 2),
    City(1850147, "Tokyo", 35.6895, 139.69171, "JP", "Japan", "Tokyo", "Asia/Tokyo", 8336599, 27.0, 74, 9.0, 61),
    City(2643743, "London", 51.50853, -0.12574, "GB", "United Kingdom", "England", "Europe/London", 7556900, 14.2, 81, 22.3, 3),
    City(2988507, "Paris", 48.85341, 2.3488, "FR", "France", "Île-de-France", "Europe/Paris", 2138551, 18.0, 60, 11.5, 0),
    City(4013708, "Paris", 33.66094, -95.55551, "US", "United States", "Texas", "America/Chicago", 24782, 31.0, 55, 14.0, 95),
    City(5128581, "New York", 40.71427, -74.00597, "US", "United States", "New York", "America/New_York", 8175133, -3.5, 40, 30.0, 73),
    City(2643123, "Manchester", 53.48095, -2.23743, "GB", "United Kingdom", "England", "Europe/London", 395515, 9.0, 93, 25.0, 65),
]
# fmt: on

CURRENT_VARIABLES = {
    "temperature_2m",
    "relative_humidity_2m",
    "apparent_temperature",
    "is_day",
    "precipitation",
    "weather_code",
    "cloud_cover",
    "pressure_msl",
    "wind_speed_10m",
    "wind_direction_10m",
}
WIND_FACTORS = {
    "kmh": (1.0, "km/h"),
    "ms": (1 / 3.6, "m/s"),
    "mph": (0.621371, "mp/h"),
    "kn": (0.539957, "kn"),
}


class FakeOpenMeteo(FakeUpstream):
    url_suffix = "/v1"

    def __init__(self, *, cities: list[City] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cities = list(CITIES if cities is None else cities)
        # the observation time of every "current" block (unix seconds, on a 15-minute step)
        self.observed = 1718450100  # 2024-06-15T11:15:00Z

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/search", self._search)
        app.router.add_get("/v1/forecast", self._forecast)

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": True, "reason": message}, status=status)

    def hostile_body(self, path: str) -> Any:
        if path == "/v1/search":
            return {"results": [{"name": 42, "latitude": "north", "longitude": None}]}
        return {"latitude": 1.0, "current": {"time": "yesterday", "temperature_2m": "hot"}}

    # ---- geocoding ------------------------------------------------------------------
    async def _search(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        name = request.query.get("name", "")
        try:
            count = int(request.query.get("count", "10"))
        except ValueError:
            return self.error_response(400, "Parameter 'count' must be an integer")
        if not 1 <= count <= 100:
            return self.error_response(400, "Parameter count must be between 1 and 100.")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "protobuf"):
            return self.error_response(
                400,
                f"Cannot initialize OutputFormat from invalid String value {fmt} for key format",
            )
        # Like the real geocoder: fewer than 2 characters finds nothing, 2 match exactly,
        # 3 or more match a prefix (case-insensitive).
        wanted = name.strip().casefold()
        matches: list[City] = []
        if len(wanted) >= 2:
            for city in sorted(self.cities, key=lambda c: -c.population):
                folded = city.name.casefold()
                if folded == wanted or (len(wanted) >= 3 and folded.startswith(wanted)):
                    matches.append(city)
        body: dict[str, Any] = {
            "generationtime_ms": round((time.perf_counter() - started) * 1000, 3)
        }
        if matches:
            body["results"] = [self._geo(c) for c in matches[:count]]
        return web.json_response(body)

    @staticmethod
    def _geo(city: City) -> dict[str, Any]:
        return {
            "id": city.id,
            "name": city.name,
            "latitude": city.latitude,
            "longitude": city.longitude,
            "elevation": 34.0,
            "feature_code": "PPLC" if city.population > 1_000_000 else "PPL",
            "country_code": city.country_code,
            "admin1_id": city.id + 1,
            "timezone": city.timezone,
            "population": city.population,
            "country_id": city.id + 2,
            "country": city.country,
            "admin1": city.admin1,
        }

    # ---- forecast -------------------------------------------------------------------
    async def _forecast(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            lat = float(q["latitude"])
            lon = float(q["longitude"])
        except KeyError:
            return self.error_response(
                400, "Parameter 'latitude' and 'longitude' must have the same number of elements"
            )
        except ValueError:
            return self.error_response(400, "Cannot initialize Float from invalid String value")
        if not -90 <= lat <= 90:
            return self.error_response(
                400, f"Latitude must be in range of -90 to 90°. Given: {lat}."
            )
        if not -180 <= lon <= 180:
            return self.error_response(
                400, f"Longitude must be in range of -180 to 180°. Given: {lon}."
            )
        variables = [v for v in q.get("current", "").split(",") if v]
        for v in variables:
            if v not in CURRENT_VARIABLES:
                return self.error_response(
                    400,
                    f"Cannot initialize ForecastVariable from invalid String value {v} for key current",
                )
        temp_unit = q.get("temperature_unit", "celsius")
        if temp_unit not in ("celsius", "fahrenheit"):
            return self.error_response(
                400,
                f"Cannot initialize TemperatureUnit from invalid String value {temp_unit} for key temperature_unit",
            )
        wind_unit = q.get("wind_speed_unit", "kmh")
        if wind_unit not in WIND_FACTORS:
            return self.error_response(
                400,
                f"Cannot initialize WindspeedUnit from invalid String value {wind_unit} for key wind_speed_unit",
            )
        timeformat = q.get("timeformat", "iso8601")
        if timeformat not in ("iso8601", "unixtime"):
            return self.error_response(
                400,
                f"Cannot initialize Timeformat from invalid String value {timeformat} for key timeformat",
            )

        city = min(self.cities, key=lambda c: (c.latitude - lat) ** 2 + (c.longitude - lon) ** 2)
        factor, wind_label = WIND_FACTORS[wind_unit]
        temp = city.temperature_c if temp_unit == "celsius" else city.temperature_c * 9 / 5 + 32
        values: dict[str, Any] = {
            "temperature_2m": round(temp, 1),
            "relative_humidity_2m": city.humidity,
            "apparent_temperature": round(temp - 1.0, 1),
            "is_day": 1,
            "precipitation": 0.0,
            "weather_code": city.weather_code,
            "cloud_cover": 40,
            "pressure_msl": 1013.2,
            "wind_speed_10m": round(city.wind_kmh * factor, 1),
            "wind_direction_10m": 250,
        }
        units: dict[str, Any] = {
            "temperature_2m": "°C" if temp_unit == "celsius" else "°F",
            "apparent_temperature": "°C" if temp_unit == "celsius" else "°F",
            "relative_humidity_2m": "%",
            "is_day": "",
            "precipitation": "mm",
            "weather_code": "wmo code",
            "cloud_cover": "%",
            "pressure_msl": "hPa",
            "wind_speed_10m": wind_label,
            "wind_direction_10m": "°",
        }
        if timeformat == "unixtime":
            when: Any = self.observed
        else:
            when = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(self.observed))
        body: dict[str, Any] = {
            "latitude": round(lat, 4),
            "longitude": round(lon, 4),
            "generationtime_ms": 0.05,
            "utc_offset_seconds": 0,
            "timezone": "GMT",
            "timezone_abbreviation": "GMT",
            "elevation": 38.0,
        }
        if variables:
            body["current_units"] = {"time": timeformat, "interval": "seconds"} | {
                v: units[v] for v in variables
            }
            body["current"] = {"time": when, "interval": 900} | {v: values[v] for v in variables}
        return web.json_response(body)
