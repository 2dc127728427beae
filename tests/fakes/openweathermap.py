"""A fake OpenWeatherMap Current Weather API 2.5: ``GET /data/2.5/weather?q=City[,CC]&appid=KEY&units=``.

    async with FakeOpenWeatherMap(api_key="k123") as fake:
        config = {"provider": "openweathermap", "base_url": fake.url, "api_key": "k123"}

Errors are spelled like the real service: ``{"cod": "404", "message": "city not found"}``
and ``{"cod": 401, "message": "Invalid API key. ..."}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .open_meteo import CITIES, City
from .upstream import FakeUpstream

__all__ = ["FakeOpenWeatherMap"]

# WMO code of the shared city table -> OpenWeatherMap condition (id, main, description, icon)
CONDITIONS = {
    0: (800, "Clear", "clear sky", "01d"),
    2: (802, "Clouds", "scattered clouds", "03d"),
    3: (804, "Clouds", "overcast clouds", "04d"),
    61: (500, "Rain", "light rain", "10d"),
    65: (502, "Rain", "heavy intensity rain", "10d"),
    73: (601, "Snow", "snow", "13d"),
    95: (211, "Thunderstorm", "thunderstorm", "11d"),
}


class FakeOpenWeatherMap(FakeUpstream):
    url_suffix = "/data/2.5"

    def __init__(
        self,
        *,
        api_key: str | None = "test-owm-key",
        cities: list[City] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.cities = list(CITIES if cities is None else cities)
        self.observed = 1718450130

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/data/2.5/weather", self._weather)

    def error_response(self, status: int, message: str) -> web.Response:
        # The real API answers "cod" as a string for most errors and a number for 401.
        cod: Any = status if status == 401 else str(status)
        return web.json_response({"cod": cod, "message": message}, status=status)

    def hostile_body(self, path: str) -> Any:
        return {
            "cod": 200,
            "main": {"temp": "warm", "humidity": -5},
            "weather": "sunny",
            "name": ["x"],
        }

    async def _weather(self, request: web.Request) -> web.Response:
        q = request.query
        if self.api_key is not None and q.get("appid") != self.api_key:
            return self.error_response(
                401,
                "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
            )
        units = q.get("units", "standard")
        if units not in ("standard", "metric", "imperial"):
            units = "standard"  # the real API silently falls back
        city: City | None = None
        if "q" in q:
            name, _, country = q["q"].partition(",")
            name, country = name.strip().casefold(), country.strip().upper()
            if not name:
                return self.error_response(400, "Nothing to geocode")
            candidates = [
                c
                for c in sorted(self.cities, key=lambda c: -c.population)
                if c.name.casefold() == name and (not country or c.country_code == country)
            ]
            city = candidates[0] if candidates else None
        elif "lat" in q and "lon" in q:
            try:
                lat, lon = float(q["lat"]), float(q["lon"])
            except ValueError:
                return self.error_response(400, "wrong latitude")
            city = min(
                self.cities, key=lambda c: (c.latitude - lat) ** 2 + (c.longitude - lon) ** 2
            )
        else:
            return self.error_response(400, "Nothing to geocode")
        if city is None:
            return self.error_response(404, "city not found")

        temp_c = city.temperature_c
        wind_ms = city.wind_kmh / 3.6
        if units == "metric":
            temp, wind = temp_c, wind_ms
        elif units == "imperial":
            temp, wind = temp_c * 9 / 5 + 32, wind_ms * 2.236936
        else:
            temp, wind = temp_c + 273.15, wind_ms
        cond = CONDITIONS.get(city.weather_code, (803, "Clouds", "broken clouds", "04d"))
        return web.json_response(
            {
                "coord": {"lon": city.longitude, "lat": city.latitude},
                "weather": [
                    {"id": cond[0], "main": cond[1], "description": cond[2], "icon": cond[3]}
                ],
                "base": "stations",
                "main": {
                    "temp": round(temp, 2),
                    "feels_like": round(temp - 0.8, 2),
                    "temp_min": round(temp - 1.5, 2),
                    "temp_max": round(temp + 1.2, 2),
                    "pressure": 1013,
                    "humidity": city.humidity,
                    "sea_level": 1013,
                    "grnd_level": 1004,
                },
                "visibility": 10000,
                "wind": {"speed": round(wind, 2), "deg": 250, "gust": round(wind * 1.4, 2)},
                "clouds": {"all": 40},
                "dt": self.observed,
                "sys": {
                    "type": 2,
                    "id": 2075535,
                    "country": city.country_code,
                    "sunrise": 1718420000,
                    "sunset": 1718478000,
                },
                "timezone": 3600,
                "id": city.id,
                "name": city.name,
                "cod": 200,
            }
        )
