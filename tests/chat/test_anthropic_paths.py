"""The Anthropic Messages provider behind every chat path: SSE, WebSocket and the
OpenAI-compatible door (REST and tool use are in test_tools_and_services.py)."""

from __future__ import annotations

import json

from tests.chat.helpers import chat_config, read_sse
from tests.chat.test_websocket import frames_until, is_done
from tests.fakes.anthropic_server import FakeAnthropic

USAGE = {"prompt_tokens": 11, "completion_tokens": 5}


def anthropic_config(url: str) -> dict:
    return chat_config(url, provider_type="anthropic", api_key="ak")


async def test_anthropic_over_sse(llmmc):
    async with FakeAnthropic(api_key="ak") as fake:
        client = await llmmc(anthropic_config(fake.url))
        fake.queue("Streaming from Claude", chunks=["Streaming ", "from ", "Claude"], usage=USAGE)
        async with client.stream(
            "POST",
            "/api/v1/chat/stream",
            json={"user_input": "hi"},
            headers=client.auth_headers("u1"),
        ) as resp:
            events = await read_sse(resp)
        assert "".join(d["delta"] for e, d in events if e == "chunk") == "Streaming from Claude"
        end = next(d for e, d in events if e == "end")
        assert end["usage"]["prompt_tokens"] == 11 and end["usage"]["completion_tokens"] == 5
        assert fake.requests[-1]["stream"] is True
        assert fake.requests[-1]["system"]  # the persona goes in Anthropic's system field


async def test_anthropic_over_websocket(llmmc):
    async with FakeAnthropic(api_key="ak") as fake:
        client = await llmmc(anthropic_config(fake.url))
        fake.queue("Hello over a socket", chunks=["Hello ", "over a socket"])
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "r1"})
            frames = await frames_until(ws, is_done("r1"))
        assert "".join(f["data"] for f in frames if f["type"] == "chunk") == "Hello over a socket"
        assert frames[-1]["type"] == "complete"


async def test_anthropic_behind_the_openai_door(llmmc):
    async with FakeAnthropic(api_key="ak") as fake:
        client = await llmmc(anthropic_config(fake.url))
        h = client.auth_headers("u1")
        fake.queue("Plain answer", usage=USAGE)
        body = {"model": "character:lumina", "messages": [{"role": "user", "content": "hi"}]}
        r = await client.post("/v1/chat/completions", json=body, headers=h)
        data = await r.json()
        assert r.status == 200 and data["choices"][0]["message"]["content"] == "Plain answer"
        assert data["usage"]["prompt_tokens"] == 11
        fake.queue("Streamed answer", chunks=["Streamed ", "answer"])
        async with client.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=h
        ) as resp:
            raw = (await resp.read()).decode()
        deltas = [
            json.loads(line[6:])["choices"][0]["delta"].get("content", "")
            for line in raw.splitlines()
            if line.startswith("data: {") and json.loads(line[6:]).get("choices")
        ]
        assert "".join(deltas) == "Streamed answer"
        assert raw.rstrip().endswith("data: [DONE]")
