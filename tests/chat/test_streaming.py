"""SSE: event order, errors as events, and a client that leaves mid-stream."""

from __future__ import annotations

import asyncio

from tests.chat.helpers import chat_config, read_sse
from tests.fakes.openai_server import FakeOpenAI


async def wait_for_history(client, sid, headers, count):
    for _ in range(200):
        r = await client.get(f"/api/v1/chat/history/{sid}", headers=headers)
        msgs = (await r.json())["messages"]
        if len(msgs) >= count:
            return msgs
        await asyncio.sleep(0.05)
    raise AssertionError(f"history has {len(msgs)} messages, expected {count}")


async def test_sse_events_and_real_usage(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        fake.queue("Good morning to you", usage={"prompt_tokens": 9, "completion_tokens": 4})
        async with client.stream(
            "POST", "/api/v1/chat/stream", json={"user_input": "morning"}, headers=h
        ) as resp:
            assert resp.status == 200
            assert resp.headers.get("X-Request-ID")
            events = await read_sse(resp)
        assert events[0][0] == "start" and events[0][1]["character"] == "lumina"
        sid = events[0][1]["session_id"]
        text = "".join(d["delta"] for e, d in events if e == "chunk")
        assert text == "Good morning to you"
        end = next(d for e, d in events if e == "end")
        assert end["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
        assert events[-1] == ("done", {"session_id": sid})
        assert fake.requests[-1]["stream"] is True
        msgs = await wait_for_history(client, sid, h, 2)
        assert msgs[1]["message_id"] == end["message_id"] and msgs[1]["content"] == text


async def test_sse_upstream_error_is_an_error_event(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        fake.fail_next(500, times=2)
        async with client.stream(
            "POST",
            "/api/v1/chat/stream",
            json={"user_input": "x"},
            headers=client.auth_headers("u"),
        ) as resp:
            events = await read_sse(resp)
        assert events[-1][0] == "error"
        assert events[-1][1]["code"] == "UPSTREAM_ERROR" and events[-1][1]["status"] == 502
        # a broken stream after output started is an error too, not a hang
        fake.queue("one two three four five six", error_after=3)
        async with client.stream(
            "POST",
            "/api/v1/chat/stream",
            json={"user_input": "x"},
            headers=client.auth_headers("u"),
        ) as resp:
            events = await read_sse(resp)
        assert events[-1][0] == "error" and events[-1][1]["code"] == "UPSTREAM_ERROR"


async def test_reply_is_stored_when_the_client_disconnects_mid_stream(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        words = [f"w{i} " for i in range(30)]
        fake.queue("".join(words), chunk_delay=0.02)
        async with client.stream(
            "POST", "/api/v1/chat/stream", json={"user_input": "tell me"}, headers=h
        ) as resp:
            sid = None
            async for raw in resp.content:
                line = raw.decode()
                if line.startswith("data:") and "session_id" in line:
                    import json

                    sid = json.loads(line[5:])["session_id"]
                if line.startswith("event: chunk"):
                    break
            resp.close()  # the client goes away after the first chunk
        assert sid is not None
        msgs = await wait_for_history(client, sid, h, 2)
        assert msgs[1]["content"] == "".join(words)
        assert fake.streams_completed == 1


async def test_sse_and_v1_streams_carry_rate_limit_headers(llmmc):
    async with FakeOpenAI() as fake:
        config = chat_config(
            fake.url,
            enabled=("ratelimit", "chat"),
            extra_plugins={"ratelimit": {"routes": {"POST /api/v1/chat/stream": "7/minute"}}},
        )
        client = await llmmc(config)
        h = client.auth_headers("u1")
        async with client.stream(
            "POST", "/api/v1/chat/stream", json={"user_input": "hi"}, headers=h
        ) as resp:
            assert resp.status == 200
            assert resp.headers["RateLimit-Limit"] == "7"
            assert resp.headers["RateLimit-Remaining"] == "6"
            await read_sse(resp)
        body = {
            "model": "character:lumina",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=h) as resp:
            assert resp.status == 200
            assert "RateLimit-Limit" in resp.headers and resp.headers.get("X-Request-ID")
            await resp.read()
