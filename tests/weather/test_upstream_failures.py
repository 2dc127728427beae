"""Every way an upstream can fail ends in a 502/504 Problem, never a 500."""

from __future__ import annotations

import pytest

from tests.fakes.upstream import MODES
from tests.weather.helpers import config, weather

BROKEN = [m for m in MODES if m is not None]


@pytest.mark.parametrize("mode", BROKEN)
@pytest.mark.parametrize("path", ["/v1/search", "/v1/forecast"])
async def test_broken_open_meteo_is_502(llmmc, open_meteo, mode, path):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    open_meteo.mode = mode
    open_meteo.mode_paths = {path}
    r = await weather(client, "Berlin")
    assert r.status == 502, await r.text()
    problem = await r.json()
    assert problem["code"] == "UPSTREAM_ERROR"
    assert problem["detail"]
    # aiohttp retries an idempotent request once when a pooled connection is dropped
    assert open_meteo.count(path) == (1 if mode != "close" else pytest.approx(1.5, abs=0.5))


async def test_upstream_error_body_reason_is_reported(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    open_meteo.fail_next(400, body={"error": True, "reason": "Latitude must be in range"})
    r = await weather(client, "Berlin")
    assert r.status == 502
    assert "Latitude must be in range" in (await r.json())["detail"]


async def test_failure_is_not_cached(llmmc, open_meteo):
    client = await llmmc(config(base_url=open_meteo.url, geocoding_url=open_meteo.url))
    open_meteo.fail_next(503)
    assert (await weather(client, "Berlin")).status == 502
    assert (await weather(client, "Berlin")).status == 200


async def test_slow_upstream_is_504(llmmc, open_meteo):
    client = await llmmc(
        config(base_url=open_meteo.url, geocoding_url=open_meteo.url, timeout_seconds=0.3)
    )
    open_meteo.delay = 5
    r = await weather(client, "Berlin")
    assert r.status == 504
    problem = await r.json()
    assert problem["code"] == "UPSTREAM_TIMEOUT"
    assert "0.3 seconds" in problem["detail"]


async def test_unreachable_upstream_is_502(llmmc, open_meteo):
    url = open_meteo.url
    await open_meteo.close()
    client = await llmmc(config(base_url=url, geocoding_url=url))
    r = await weather(client, "Berlin")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_ERROR"
