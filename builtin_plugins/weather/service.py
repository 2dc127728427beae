"""The weather tool's logic: cache lookup, one upstream fetch per (city, units) at a time,
and the result in the SPEC's shape."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema

from sdk.metrics import CounterMetric

from .cache import Cache, cache_key
from .providers import Provider

UNITS = ("metric", "imperial")

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": r"\S",
            "description": 'City name, optionally with a country code or region: "Paris" or "Paris, US".',
        },
        "units": {
            "type": "string",
            "enum": list(UNITS),
            "default": "metric",
            "description": "metric: °C and m/s; imperial: °F and mph.",
        },
    },
    "required": ["city"],
    "additionalProperties": False,
}

RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The place found, with its country code."},
        "temperature": {"type": "number", "description": "°C (metric) or °F (imperial)."},
        "description": {"type": "string"},
        "humidity": {"type": "number", "minimum": 0, "maximum": 100, "description": "Percent."},
        "wind_speed": {
            "type": "number",
            "minimum": 0,
            "description": "m/s (metric) or mph (imperial).",
        },
        "units": {"type": "string", "enum": list(UNITS)},
        "provider": {"type": "string"},
        "observed_at": {"type": "string", "format": "date-time", "description": "UTC, ISO 8601."},
    },
    "required": [
        "city",
        "temperature",
        "description",
        "humidity",
        "wind_speed",
        "units",
        "provider",
        "observed_at",
    ],
    "additionalProperties": False,
}

_RESULT_VALIDATOR = jsonschema.Draft202012Validator(RESULT)


class WeatherService:
    def __init__(
        self,
        provider: Provider,
        cache: Cache | None,
        cache_seconds: int,
        cache_lookups: CounterMetric,
    ) -> None:
        self.provider = provider
        self.cache_hits = cache_lookups.labels(result="hit")
        self.cache_misses = cache_lookups.labels(result="miss")
        self.cache = cache if cache_seconds > 0 else None
        self.cache_seconds = cache_seconds
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def weather(self, city: str, units: str = "metric") -> dict[str, Any]:
        city = " ".join(city.split())
        key = cache_key(self.provider.name, units, city)
        if self.cache is not None:
            hit = await self.cache.get(key)
            if hit is not None and _RESULT_VALIDATOR.is_valid(hit):
                self.cache_hits.inc()
                return hit
            self.cache_misses.inc()
        # Concurrent calls for the same (city, units) share one upstream fetch.
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, city, units))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._forget(key, t))
        return dict(await asyncio.shield(task))

    def _forget(self, key: str, task: asyncio.Task[dict[str, Any]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: waiters that were cancelled must not leave a warning

    async def _fetch(self, key: str, city: str, units: str) -> dict[str, Any]:
        observation = await self.provider.current(city, units)
        result = observation.to_result(units, self.provider.name)
        if self.cache is not None:
            await self.cache.set(key, result, self.cache_seconds)
        return result

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
