"""A chat turn reserves tokens of the daily quota when it is admitted and settles when it
ends, so that turns started in parallel cannot together overshoot the quota by more than
one turn (without reservations, 30 parallel turns of a fresh user all got in)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sdk import Identity, Plugin, Request, Route, events, hookimpl
from tests.serverproc import unique_prefix

from .conftest import rl_config

TURN_TOKENS = 650  # what each simulated turn spends


class TurnPlugin(Plugin):
    """``POST /test/turn``: a chat-class route that, like a chat turn, spends tokens (an
    ``llm.usage`` event) a moment after it starts, and ends a moment later."""

    name = "turns"
    config_schema = {"type": "object"}

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def turn(req: Request) -> Any:
            identity = req.require_identity()
            await asyncio.sleep(0.3)  # the model answers
            await self.context.bus.publish(
                events.LLM_USAGE,
                {
                    "user_id": identity.user_id,
                    "prompt_tokens": TURN_TOKENS - 50,
                    "completion_tokens": 50,
                    "provider": "fake",
                    "model": "m",
                    "character": "lumina",
                },
            )
            await asyncio.sleep(0.05)
            return {"ok": True}

        return [Route("POST", "/test/turn", turn, auth="user", rate_limit="chat")]


def config(backend: str, reserve: int) -> dict[str, Any]:
    rl: dict[str, Any] = {
        "quotas": {"tokens_per_day": {"user": 3000}, "reserve_tokens": reserve},
    }
    kernel = None
    if backend == "redis":
        prefix = unique_prefix()
        url = "redis://127.0.0.1:6379/7"
        rl.update(backend="redis", redis_url=url, key_prefix=prefix)
        kernel = {"bus": {"backend": "redis", "redis_url": url, "channel_prefix": prefix}}
    return rl_config(rl, kernel=kernel, enabled=("ratelimit", "turns"))


async def used(server: Any, user: str) -> int:
    identity = Identity(user_id=user, roles=("user",), username=user, scheme="jwt")
    return int((await server.plugin("ratelimit").limiter.usage(identity))["used_today"])


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_thirty_parallel_turns_overshoot_the_quota_by_one_turn_at_most(
    llmmc: Any, backend: str
) -> None:
    server = await llmmc(config(backend, reserve=700), plugins={"turns": TurnPlugin})
    headers = server.auth_headers("dana")
    answers = await asyncio.gather(*(server.post("/test/turn", headers=headers) for _ in range(30)))
    statuses = [a.status for a in answers]
    admitted = statuses.count(200)
    assert admitted == 5, statuses  # 0, 700, ... 2800 reserved: the 6th would reach 3500
    refused = [await a.json() for a in answers if a.status == 429]
    assert {p["code"] for p in refused} == {"QUOTA_EXCEEDED"}
    assert "set aside for turns still running" in refused[0]["detail"]
    spent = await used(server, "dana")
    assert spent == admitted * TURN_TOKENS
    assert spent <= 3000 + TURN_TOKENS
    # every reservation was settled: what was used alone decides now
    assert (await server.post("/test/turn", headers=headers)).status == 429


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_finished_turn_gives_back_what_it_did_not_use(llmmc: Any, backend: str) -> None:
    server = await llmmc(config(backend, reserve=2500), plugins={"turns": TurnPlugin})
    headers = server.auth_headers("erin")
    for _ in range(4):  # 650 each, one after the other: each starts with the others settled
        r = await server.post("/test/turn", headers=headers)
        assert r.status == 200, await r.text()
    assert await used(server, "erin") == 4 * TURN_TOKENS
    # 2600 used: one more turn may start (and overshoot by at most itself)
    assert (await server.post("/test/turn", headers=headers)).status == 200
    assert (await server.post("/test/turn", headers=headers)).status == 429


async def test_without_reservations_parallel_turns_all_get_in(llmmc: Any) -> None:
    """What reserve_tokens = 0 gives (and what every turn did before reservations)."""
    server = await llmmc(config("memory", reserve=0), plugins={"turns": TurnPlugin})
    headers = server.auth_headers("fay")
    answers = await asyncio.gather(*(server.post("/test/turn", headers=headers) for _ in range(10)))
    assert [a.status for a in answers] == [200] * 10
