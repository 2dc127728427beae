from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.openweathermap import FakeOpenWeatherMap


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with FakeOpenMeteo() as fake:
        yield fake


@pytest.fixture
async def owm() -> AsyncIterator[FakeOpenWeatherMap]:
    async with FakeOpenWeatherMap(api_key="owm-secret") as fake:
        yield fake
