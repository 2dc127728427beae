"""One client's bad input costs nobody else anything: concurrent good and bad writers,
over REST and over the bus (a broken upstream's reply holding a lone surrogate)."""

from __future__ import annotations

import asyncio
from typing import Any

from .conftest import BASE, settle

CONFIG = {
    "plugins": {
        "enabled": ["memory"],
        "memory": {"embedder": "hashing", "redis_url": "none", "short_term_turns": 100},
    }
}


async def test_concurrent_bad_writers_cost_good_writers_nothing(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    bad_bodies = [
        b'{"content": "poison \\ud800 pill"}',  # was a 500
        b'{"content": "ok", "metadata": {"k": "\\udfff"}}',
        b'{"content": ' + b"[" * 200 + b"]" * 200 + b"}",
        b'{"content": "x", "importance": 1e999}',
    ]

    async def good(user: str, i: int) -> int:
        r = await client.post(
            BASE, json={"content": f"{user} note {i}"}, headers=client.auth_headers(user)
        )
        return r.status

    async def bad(i: int) -> int:
        r = await client.post(
            BASE,
            data=bad_bodies[i % len(bad_bodies)],
            headers={**client.auth_headers("mallory"), "Content-Type": "application/json"},
        )
        return r.status

    jobs = [good(user, i) for i in range(12) for user in ("ann", "bob")]
    jobs += [bad(i) for i in range(24)]
    statuses = await asyncio.gather(*jobs)
    assert statuses[:24] == [201] * 24
    assert all(s in (400, 422) for s in statuses[24:]), statuses[24:]
    for user in ("ann", "bob"):
        r = await client.get(f"{BASE}/stats", headers=client.auth_headers(user))
        assert (await r.json())["total"] == 12
    r = await client.get(f"{BASE}/stats", headers=client.auth_headers("mallory"))
    assert (await r.json())["total"] == 0


async def test_a_broken_reply_on_the_bus_is_kept_and_loses_no_other_turn(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    bus = client.kernel.bus
    contents = ["hello there", "broken \ud800 reply", "all good", "pair \ud83d\ude00 ok"]
    await asyncio.gather(
        *(
            bus.publish(
                "chat.message.created",
                {
                    "user_id": "carol",
                    "session_id": "s1",
                    "message_id": f"m{i}",
                    "role": "assistant",
                    "character": "lumina",
                    "content": content,
                },
            )
            for i, content in enumerate(contents)
        )
    )
    await settle(client)
    r = await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers("carol"))
    assert r.status == 200
    stored = sorted(t["content"] for t in (await r.json())["recent_turns"])
    assert stored == sorted(
        ["hello there", "broken \ufffd reply", "all good", "pair \U0001f600 ok"]
    )
