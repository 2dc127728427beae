"""Chat as operators see it: its metrics after REST, SSE and WebSocket turns, request ids
reaching the LLM upstream, the WebSocket's access-log line, and an honest /health."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakes.openai_server import FakeOpenAI
from tests.prometheus import scrape, value

from .helpers import chat_config, read_sse

FAKE = {"provider": "fake", "model": "fake-model"}


async def test_chat_metrics_and_request_ids(llmmc: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("metrics", "accesslog", "chat"))
        cfg["plugins"]["accesslog"] = {"path": str(log), "format": "json"}
        client = await llmmc(cfg)
        h = client.auth_headers("u1")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "hello", "character": "lumina"},
            headers={**h, "X-Request-ID": "rest-turn-1"},
        )
        assert r.status == 200
        assert fake.headers[-1]["X-Request-ID"] == "rest-turn-1"
        usage = (await r.json())["replies"][0]["usage"]

        async with client.stream(
            "POST", "/api/v1/chat/stream", json={"user_input": "hi", "character": "nox"}, headers=h
        ) as resp:
            events = await read_sse(resp)
        assert events[-1][0] == "done"

        async with client.ws_connect("/ws/chat", headers=h) as ws:
            during = await scrape(client)
            await ws.send_json({"type": "chat", "message": "hey", "request_id": "ws-msg-7"})
            frames = 1
            while (msg := await ws.receive_json(timeout=10))["type"] != "complete":
                assert msg["type"] in ("start", "chunk"), msg
                frames += 1
            # counted as they pass: a scrape during a long session sees its messages
            mid_session = await scrape(client)
        assert fake.headers[-1]["X-Request-ID"] == "ws-msg-7"

        fake.fail_next(500, times=2)  # the one retry fails too
        r = await client.post(
            "/api/v1/chat", json={"user_input": "again", "character": "lumina"}, headers=h
        )
        assert r.status == 502
        after = await scrape(client)

    assert value(during, "llmmc_chat_websockets_open") == 1
    messages = "llmmc_chat_websocket_messages_total"
    assert value(during, messages, direction="received") == 0
    assert value(mid_session, "llmmc_chat_websockets_open") == 1
    assert value(mid_session, messages, direction="received") == 1
    assert value(mid_session, messages, direction="sent") == frames >= 3
    assert value(after, "llmmc_chat_websockets_open") == 0
    assert value(after, "llmmc_chat_turns_total", **FAKE) == 3
    assert value(after, "llmmc_chat_llm_calls_total", **FAKE, outcome="ok") == 3
    assert value(after, "llmmc_chat_llm_calls_total", **FAKE, outcome="error") == 1
    assert value(after, "llmmc_chat_upstream_errors_total", **FAKE, code="UPSTREAM_ERROR") == 1
    assert value(after, "llmmc_chat_time_to_first_token_seconds_count", **FAKE) == 3
    prompt = value(after, "llmmc_chat_tokens_total", **FAKE, kind="prompt")
    completion = value(after, "llmmc_chat_tokens_total", **FAKE, kind="completion")
    assert prompt >= 3 * usage["prompt_tokens"] > 0 and completion > 0
    assert value(after, messages, direction="received") == 1
    assert value(after, messages, direction="sent") == frames
    http = "llmmc_http_requests_total"
    assert value(after, http, route="/api/v1/chat", method="POST", status="200") == 1
    assert value(after, http, route="/api/v1/chat", method="POST", status="502") == 1
    assert value(after, http, route="/api/v1/chat/stream", method="POST", status="200") == 1
    assert value(after, http, route="/ws/chat", method="GET", status="101") == 1

    client.plugin("accesslog").flush()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    ws_lines = [x for x in lines if x["message"] == "websocket closed"]
    assert len(ws_lines) == 1
    line = ws_lines[0]
    assert line["route"] == "/ws/chat" and line["status"] == 101 and line["user_id"] == "u1"
    assert line["messages_in"] == 1 and line["messages_out"] >= 3


async def test_unused_provider_without_key_does_not_degrade_health(llmmc: Any) -> None:
    """A fresh install's openai and anthropic tables have no keys; no character uses
    them, so nothing a user would notice is impaired."""
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url)
        cfg["plugins"]["chat"]["providers"].update(
            {
                "openai": {"type": "openai", "api_key": "", "model": "gpt-4o-mini"},
                "anthropic": {"type": "anthropic", "api_key": "", "model": "claude-sonnet-4-5"},
            }
        )
        client = await llmmc(cfg)
        body = await (await client.get("/health")).json()
        assert body["status"] == "healthy" and body["problems"] == []
        chat = body["plugins"]["chat"]
        assert chat["status"] == "ok"
        assert chat["checks"]["unused_unavailable_providers"] == ["anthropic", "openai"]

        # a character that falls back is noticed (a different model answers), and said
        cfg["plugins"]["chat"]["characters"]["nox"].update(provider="openai", fallback=["fake"])
        client = await llmmc(cfg)
        body = await (await client.get("/health")).json()
        assert body["status"] == "degraded"
        assert body["problems"] == [
            "chat: character 'Nox' answers through 'fake' instead of 'openai' "
            "(provider 'openai' is not configured: missing setting "
            "plugins.chat.providers.openai.api_key)"
        ]
