from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.deepl import FakeDeepL
from tests.fakes.google_translate import FakeGoogleTranslate
from tests.fakes.libretranslate import FakeLibreTranslate


@pytest.fixture
async def libre() -> AsyncIterator[FakeLibreTranslate]:
    async with FakeLibreTranslate() as fake:
        yield fake


@pytest.fixture
async def google() -> AsyncIterator[FakeGoogleTranslate]:
    async with FakeGoogleTranslate(api_key="g-key") as fake:
        yield fake


@pytest.fixture
async def deepl() -> AsyncIterator[FakeDeepL]:
    async with FakeDeepL(api_key="d-key:fx") as fake:
        yield fake
