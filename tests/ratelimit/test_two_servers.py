"""Two real server processes sharing Redis: one limit for both."""

from __future__ import annotations

import aiohttp
import pytest

pytestmark = pytest.mark.redis


async def test_a_10_per_hour_route_admits_10_in_total(two_servers):
    a, b = two_servers
    statuses = []
    async with aiohttp.ClientSession() as session:
        for i in range(16):
            server = (a, b)[i % 2]
            async with session.post(
                server.base_url + "/api/v1/auth/login",
                # one email per attempt: auth's per-account lock is not what is tested here
                json={"email": f"nobody{i}@example.com", "password": "Wrong-pass1"},
            ) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert int(r.headers["Retry-After"]) > 0
                    assert r.headers["RateLimit-Limit"] == "10"
    assert statuses.count(401) == 10, statuses
    assert statuses.count(429) == 6, statuses
    assert statuses[:10] == [401] * 10
