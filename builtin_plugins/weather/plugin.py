"""The weather plugin: the ``weather`` tool over Open-Meteo (default, no key) or
OpenWeatherMap (needs ``api_key``). See docs/weather.md."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp

from sdk import Health, Plugin, Tool, ToolCall, errors, hookimpl
from sdk.http import Upstream, client_session, close_session, upstream_latency

from .cache import Cache, MemoryCache, RedisCache
from .providers import Provider
from .providers.open_meteo import OpenMeteo
from .providers.openweathermap import DEFAULT_BASE_URL as OWM_DEFAULT_BASE_URL
from .providers.openweathermap import OpenWeatherMap
from .service import PARAMETERS, RESULT, WeatherService

OPEN_METEO_BASE_URL = "https://api.open-meteo.com/v1"
OPEN_METEO_GEOCODING_URL = "https://geocoding-api.open-meteo.com/v1"
# http(s), a host name or an IP (IPv6 in brackets), an optional port and path; no query,
# fragment or credentials. jsonschema does not enforce "format": "uri", so a pattern does.
URL_PATTERN = (
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
REDIS_URL_PATTERN = r"^$|^(redis|rediss|unix)://\S+$"
NEEDS_KEY = {"openweathermap"}


class WeatherPlugin(Plugin):
    name = "weather"
    version = "0.1.0"
    description = "Current weather for a city (Open-Meteo or OpenWeatherMap), as a tool."
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "provider": {
                "type": "string",
                "enum": ["open-meteo", "openweathermap"],
                "default": "open-meteo",
            },
            "base_url": {
                "type": "string",
                "pattern": URL_PATTERN,
                "default": OPEN_METEO_BASE_URL,
                "description": "Forecast API base (open-meteo) or Current Weather API base "
                "(openweathermap; the Open-Meteo default means "
                f"{OWM_DEFAULT_BASE_URL}).",
            },
            "geocoding_url": {
                "type": "string",
                "pattern": URL_PATTERN,
                "default": OPEN_METEO_GEOCODING_URL,
            },
            "api_key": {"type": "string", "default": "", "x-secret": True},
            "cache_seconds": {"type": "integer", "minimum": 0, "maximum": 86400, "default": 600},
            "timeout_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 120,
                "default": 10,
                "description": "Total time allowed for one upstream request.",
            },
            "connect_timeout_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 60,
                "default": 5,
            },
            "redis_url": {
                "type": "string",
                "pattern": REDIS_URL_PATTERN,
                "default": "",
                "x-secret": True,
                "description": "Cache in this Redis; empty: the kernel bus's Redis when "
                "[kernel.bus] backend = 'redis', else in process.",
            },
            "cache_prefix": {
                "type": "string",
                "maxLength": 100,
                "default": "llmmc:weather:",
            },
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._session: aiohttp.ClientSession | None = None
        self._cache: Cache | None = None
        self._service: WeatherService | None = None

    # ---- configuration ----------------------------------------------------------------
    @property
    def provider_name(self) -> str:
        return str(self.config["provider"])

    def missing_setting(self) -> str:
        """The setting that keeps the provider from working, or ""."""
        if self.provider_name in NEEDS_KEY and not self.config["api_key"]:
            return "plugins.weather.api_key"
        return ""

    def _redis_url(self) -> str:
        return self.shared_redis_url(str(self.config["redis_url"] or ""))

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        total = float(self.config["timeout_seconds"])
        timeout = aiohttp.ClientTimeout(
            total=total, connect=float(self.config["connect_timeout_seconds"])
        )
        self._session = client_session(
            timeout=timeout,
            headers={"User-Agent": f"llmmultichat-weather/{self.version}"},
            raise_for_status=False,
        )
        redis_url = self._redis_url()
        if redis_url:
            self._cache = RedisCache(redis_url, str(self.config["cache_prefix"]), self.log)
        else:
            self._cache = MemoryCache()
        self._service = WeatherService(
            self._provider(self._session, total),
            self._cache,
            int(self.config["cache_seconds"]),
            self.context.metrics.counter(
                "cache_lookups", "Weather cache lookups, by result (hit or miss)", ("result",)
            ),
        )
        if missing := self.missing_setting():
            self.log.warning(
                "weather provider %s needs %s; the weather tool answers 503 until it is set",
                self.provider_name,
                missing,
            )

    def _provider(self, session: aiohttp.ClientSession, timeout: float) -> Provider:
        base_url = str(self.config["base_url"])
        key = str(self.config["api_key"] or "")
        latency = upstream_latency(self.context.metrics)
        if self.provider_name == "openweathermap":
            if base_url.rstrip("/") == OPEN_METEO_BASE_URL:
                base_url = OWM_DEFAULT_BASE_URL
            upstream = Upstream(session, "OpenWeatherMap", timeout, latency=latency)
            return OpenWeatherMap(upstream, base_url, key)
        return OpenMeteo(
            Upstream(session, "Open-Meteo forecast", timeout, latency=latency),
            Upstream(session, "Open-Meteo geocoding", timeout, latency=latency),
            base_url,
            str(self.config["geocoding_url"]),
            key,
        )

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.close()
            self._service = None
        if self._cache is not None:
            await self._cache.close()
            self._cache = None
        if self._session is not None:
            await close_session(self._session)
            self._session = None

    async def health(self) -> Health:
        checks: dict[str, Any] = {"provider": self.provider_name}
        if missing := self.missing_setting():
            checks["api_key"] = "missing"
            return Health(
                status="unavailable",
                detail=f"provider {self.provider_name} needs the setting {missing}",
                checks=checks,
            )
        if self._cache is None:
            return Health(status="unavailable", detail="not started", checks=checks)
        cache_state = await self._cache.check()
        checks["cache"] = self._cache.kind if cache_state == "ok" else cache_state
        if cache_state != "ok":
            return Health(
                status="degraded", detail=f"cache: {cache_state}; serving uncached", checks=checks
            )
        return Health(status="ok", checks=checks)

    # ---- the tool ---------------------------------------------------------------------
    async def _weather(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        if missing := self.missing_setting():
            raise errors.ServiceUnavailable(
                f"The weather provider {self.provider_name} needs an API key: "
                f"set {missing} in plugins.toml",
                code="MISSING_SETTING",
                extra={"setting": missing},
            )
        if self._service is None:
            raise errors.ServiceUnavailable("The weather plugin is not running")
        return await self._service.weather(
            str(params["city"]), str(params.get("units") or "metric")
        )

    @hookimpl
    def register_tools(self) -> list[Tool]:
        return [
            Tool(
                name="weather",
                description="Current weather for a city: temperature, conditions, humidity "
                "and wind speed.",
                parameters=PARAMETERS,
                handler=self._weather,
                result=RESULT,
            )
        ]
