"""A faulty LLM provider plugin is named: a third-party-like plugin whose provider raises
mid-stream, or yields something that is not a ``StreamEvent``, gives the client 502
``UPSTREAM_ERROR`` naming the provider, its type and the plugin over REST, SSE and
WebSocket; the log names the plugin, ``llm_calls{outcome="error"}`` counts the failures
and ``/health`` shows the plugin's recent failures. A stopped turn is no failure: the
provider's generator is closed at once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from sdk import Identity, LLMProvider, Plugin, StreamEvent, Usage, errors, hookimpl, services
from tests.prometheus import scrape, value

from .helpers import frames_until, is_done, read_sse

# what the slow provider saw of its own end (the cancellation contract)
SLOW_LOG: list[str] = []


class ExplodingProvider(LLMProvider):
    """Says a word, then fails with a plain exception (a bug in the plugin)."""

    type = "explodes"

    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, **_: Any):
        yield StreamEvent("delta", text="Hal")
        raise RuntimeError("the flux capacitor melted")


class WrongTypeProvider(LLMProvider):
    """Yields plain strings instead of ``StreamEvent``s."""

    type = "wrongtype"

    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, **_: Any):
        yield "just a string"


class SlowProvider(LLMProvider):
    """Streams a word every 50 ms until it is stopped."""

    type = "slow"

    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, **_: Any):
        try:
            for i in range(200):
                yield StreamEvent("delta", text=f"w{i} ")
                await asyncio.sleep(0.05)
            yield StreamEvent("usage", usage=Usage(1, 200))
            yield StreamEvent("finish", finish_reason="stop")
        except asyncio.CancelledError:
            SLOW_LOG.append("cancelled")
            raise
        except GeneratorExit:
            SLOW_LOG.append("closed")
            raise
        finally:
            SLOW_LOG.append("finally")


class BrokenLLMPlugin(Plugin):
    name = "brokenllm"
    description = "LLM providers that misbehave (tests only)"

    @hookimpl
    def register_llm_providers(self) -> list[type[LLMProvider]]:
        return [ExplodingProvider, WrongTypeProvider, SlowProvider]


def config() -> dict[str, Any]:
    return {
        "plugins": {
            "enabled": ["metrics", "chat", "brokenllm"],
            "chat": {
                "default_provider": "boom",
                "max_retries": 0,
                "providers": {
                    "boom": {"type": "explodes", "model": "x-1"},
                    "odd": {"type": "wrongtype", "model": "w-1"},
                    "snail": {"type": "slow", "model": "s-1"},
                },
                "characters": {
                    "hal": {"name": "Hal", "provider": "boom"},
                    "odd": {"name": "Odd", "provider": "odd"},
                    "snail": {"name": "Snail", "provider": "snail"},
                },
            },
        }
    }


CASES = [
    ("hal", "boom", "explodes", "x-1", "raised RuntimeError mid-stream"),
    ("odd", "odd", "wrongtype", "w-1", "yielded str, not sdk.StreamEvent"),
]


def names_the_provider(text: str, provider: str, kind: str) -> bool:
    return (
        f"provider {provider!r}" in text
        and f"type {kind!r}" in text
        and "plugin 'brokenllm'" in text
    )


@pytest.mark.parametrize(("character", "provider", "kind", "model", "what"), CASES)
async def test_a_faulty_provider_is_named_everywhere(
    llmmc: Any,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    character: str,
    provider: str,
    kind: str,
    model: str,
    what: str,
) -> None:
    client = await llmmc(
        config(), plugins={"brokenllm": BrokenLLMPlugin}, database_url=database_url
    )
    h = client.auth_headers("ada")
    caplog.set_level(logging.ERROR, logger="llmmultichat.chat")

    # REST: a Problem, 502 UPSTREAM_ERROR, naming provider, type and plugin
    r = await client.post(
        "/api/v1/chat", json={"user_input": "hello", "character": character}, headers=h
    )
    body = await r.json()
    assert r.status == 502, body
    assert body["code"] == "UPSTREAM_ERROR"
    assert names_the_provider(body["detail"], provider, kind) and what in body["detail"]
    assert body["session_id"] and body["user_message_id"]  # where the turn was left

    # SSE: an error event with the same code and detail
    async with client.stream(
        "POST", "/api/v1/chat/stream", json={"user_input": "hi", "character": character}, headers=h
    ) as resp:
        assert resp.status == 200
        events = await read_sse(resp)
    kind_, data = events[-1]
    assert kind_ == "error", events
    assert data["code"] == "UPSTREAM_ERROR" and data["status"] == 502
    assert names_the_provider(data["detail"], provider, kind)

    # WebSocket: an error frame, UPSTREAM_ERROR (not WEBSOCKET_ERROR); the socket stays open
    async with client.ws_connect("/ws/chat", headers=h) as ws:
        await ws.send_json(
            {"type": "chat", "message": "hey", "character": character, "request_id": "r1"}
        )
        frames = await frames_until(ws, is_done("r1"))
        error = frames[-1]
        assert error["type"] == "error", frames
        assert error["code"] == "UPSTREAM_ERROR" and error["status"] == 502
        assert names_the_provider(error["message"], provider, kind)
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=5))["type"] == "pong"

    # the log names the plugin
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "llmmultichat.chat"]
    assert sum(names_the_provider(line, provider, kind) for line in lines) == 3, lines

    # the metrics count the three failed calls
    samples = await scrape(client)
    labels = {"provider": provider, "model": model}
    assert value(samples, "llmmc_chat_llm_calls_total", **labels, outcome="error") == 3
    assert value(samples, "llmmc_chat_llm_calls_total", **labels, outcome="ok") == 0
    assert value(samples, "llmmc_chat_upstream_errors_total", **labels, code="UPSTREAM_ERROR") == 3

    # /health: the plugin is degraded by its recent failures
    health = await (await client.get("/health")).json()
    plugin = health["plugins"]["brokenllm"]
    assert plugin["status"] == "degraded", plugin
    assert plugin["recent_failures"]["count"] == 3
    assert plugin["recent_failures"]["last"]["kind"] == "llm"
    assert "UPSTREAM_ERROR" in plugin["recent_failures"]["last"]["error"]
    assert health["status"] == "degraded"
    assert "recent_failures" not in health["plugins"]["chat"]

    # the user's message is kept, and the failed reply
    r = await client.get(f"/api/v1/chat/history/{body['session_id']}", headers=h)
    messages = (await r.json())["messages"]
    assert messages[0]["content"] == "hello"
    assert [m["status"] for m in messages[1:]] == ["failed"]
    assert body["message_id"] == messages[1]["message_id"]

    # the history names the provider, the model and the user
    events_ = client.kernel.recent_failures("brokenllm")
    assert {e.actor_id for e in events_} == {"ada"}
    assert all(
        e.detail == f"provider {provider!r} (type {kind!r}), model {model!r}" for e in events_
    )


async def test_a_stopped_turn_closes_the_provider_and_is_no_failure(llmmc: Any) -> None:
    SLOW_LOG.clear()
    client = await llmmc(config(), plugins={"brokenllm": BrokenLLMPlugin})
    h = client.auth_headers("ada")
    async with client.ws_connect("/ws/chat", headers=h) as ws:
        await ws.send_json(
            {"type": "chat", "message": "go", "character": "snail", "request_id": "r1"}
        )
        await frames_until(ws, lambda f: f["type"] == "chunk")
        await ws.send_json({"type": "cancel", "request_id": "r1"})
        frames = await frames_until(ws, is_done("r1"))
    done = frames[-1]
    assert done["type"] == "complete" and done["cancelled"] is True, frames
    assert done["replies"][0]["status"] == "stopped"
    # the provider's generator ended at once, its finally block ran
    assert SLOW_LOG and SLOW_LOG[-1] == "finally", SLOW_LOG
    assert SLOW_LOG[0] in ("cancelled", "closed")
    samples = await scrape(client)
    labels = {"provider": "snail", "model": "s-1"}
    assert value(samples, "llmmc_chat_llm_calls_total", **labels, outcome="error") == 0
    health = await (await client.get("/health")).json()
    assert "recent_failures" not in health["plugins"]["brokenllm"]
    assert health["plugins"]["brokenllm"]["status"] == "ok"


async def test_a_faulty_provider_behind_the_llm_service_and_the_openai_door(llmmc: Any) -> None:
    client = await llmmc(config(), plugins={"brokenllm": BrokenLLMPlugin})
    llm = client.kernel.services.get(services.LLM)
    with pytest.raises(errors.BadGateway) as caught:
        await llm.complete(
            [{"role": "user", "content": "hi"}], provider="boom", identity=Identity("bob")
        )
    assert caught.value.code == "UPSTREAM_ERROR"
    assert names_the_provider(caught.value.detail, "boom", "explodes")
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "character:odd", "messages": [{"role": "user", "content": "hi"}]},
        headers=client.auth_headers("ada"),
    )
    body = await r.json()
    assert r.status == 502, body
    assert body["error"]["code"] == "UPSTREAM_ERROR"
    assert names_the_provider(body["error"]["message"], "odd", "wrongtype")
    failures = client.kernel.recent_failures("brokenllm")
    assert [e.actor_id for e in failures] == ["ada", "bob"]
