"""Weather providers: each turns (city, units) into one current-weather observation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sdk import errors


@dataclass(frozen=True, slots=True)
class Observation:
    city: str
    temperature: float
    description: str
    humidity: float
    wind_speed: float
    observed_at: datetime

    def to_result(self, units: str, provider: str) -> dict[str, object]:
        return {
            "city": self.city,
            "temperature": round(self.temperature, 1),
            "description": self.description,
            "humidity": round(self.humidity),
            "wind_speed": round(self.wind_speed, 1),
            "units": units,
            "provider": provider,
            "observed_at": self.observed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class Provider(Protocol):
    name: str

    async def current(self, city: str, units: str) -> Observation:
        """Current weather; raises NotFound (CITY_NOT_FOUND), BadGateway, GatewayTimeout."""


def split_city(city: str) -> tuple[str, str]:
    """``"Paris, US"`` -> ``("Paris", "US")``; the qualifier may be a country code,
    a country or a region name."""
    name, _, qualifier = city.rpartition(",") if "," in city else (city, "", "")
    return " ".join(name.split()), " ".join(qualifier.split())


def city_not_found(city: str) -> errors.Problem:
    return errors.NotFound(f"No city named {city!r} was found", code="CITY_NOT_FOUND")


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
