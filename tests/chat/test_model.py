"""End to end over HTTP with the real embedded model (SmolLM2-135M-Instruct, llama.cpp)."""

from __future__ import annotations

import pytest

from tests.chat.helpers import read_sse

pytestmark = pytest.mark.model


async def test_smollm2_answers_over_rest_and_sse(llmmc):
    pytest.importorskip("llama_cpp", reason="needs the [local] extra (llama-cpp-python)")
    config = {
        "plugins": {
            "enabled": ["chat"],
            "chat": {
                "providers": {"local": {"type": "llama_cpp", "max_tokens": 24, "temperature": 0}},
                "characters": {
                    "lumina": {
                        "name": "Lumina",
                        "provider": "local",
                        "persona": "You are Lumina, a friendly assistant.",
                    }
                },
            },
        }
    }
    client = await llmmc(config)
    h = client.auth_headers("u1")
    r = await client.get("/health")
    assert (await r.json())["plugins"]["chat"]["status"] == "ok"
    r = await client.post(
        "/api/v1/chat", json={"user_input": "Say hello in one short sentence."}, headers=h
    )
    body = await r.json()
    assert r.status == 200, body
    reply = body["replies"][0]
    assert reply["content"].strip()
    assert reply["usage"]["completion_tokens"] > 0 and reply["usage"]["prompt_tokens"] > 0
    async with client.stream(
        "POST",
        "/api/v1/chat/stream",
        json={"user_input": "What is 2 + 2?", "session_id": body["session_id"]},
        headers=h,
    ) as resp:
        events = await read_sse(resp)
    assert events[-1][0] == "done", events[-3:]
    assert "".join(d["delta"] for e, d in events if e == "chunk").strip()
