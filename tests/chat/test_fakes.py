"""The fake upstreams speak their protocols (checked with plain aiohttp clients)."""

from __future__ import annotations

import json

import aiohttp

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


async def _sse_data(resp: aiohttp.ClientResponse) -> list[str]:
    out = []
    async for raw in resp.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            out.append(line[6:])
    return out


async def test_openai_plain_stream_tools_usage_and_failures():
    async with FakeOpenAI(api_key="sk-test") as fake, aiohttp.ClientSession() as http:
        h = {"Authorization": "Bearer sk-test"}
        body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}
        r = await http.post(fake.url + "/chat/completions", json=body, headers=h)
        data = await r.json()
        assert r.status == 200
        assert data["choices"][0]["message"]["content"] == "Hello! You said: hi there"
        assert data["usage"]["completion_tokens"] > 0

        fake.queue("one two three", usage={"prompt_tokens": 7, "completion_tokens": 3})
        r = await http.post(
            fake.url + "/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
            headers=h,
        )
        frames = await _sse_data(r)
        assert frames[-1] == "[DONE]"
        chunks = [json.loads(f) for f in frames[:-1]]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "one two three"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10

        fake.queue(tool_calls=[{"name": "weather", "arguments": {"city": "東京"}}])
        r = await http.post(
            fake.url + "/chat/completions", json={**body, "stream": True}, headers=h
        )
        chunks = [json.loads(f) for f in (await _sse_data(r))[:-1]]
        args = "".join(
            tc["function"].get("arguments", "")
            for c in chunks
            for tc in c["choices"][0]["delta"].get("tool_calls") or []
        )
        assert json.loads(args) == {"city": "東京"}
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

        fake.fail_next(429, times=1)
        r = await http.post(fake.url + "/chat/completions", json=body, headers=h)
        assert r.status == 429 and (await r.json())["error"]["type"] == "rate_limit_error"
        r = await http.post(fake.url + "/chat/completions", json=body)
        assert r.status == 401
        assert len(fake.requests) == 5

        r = await http.post(
            fake.url + "/embeddings", json={"input": ["a b", "a b"], "dimensions": 8}, headers=h
        )
        vecs = [d["embedding"] for d in (await r.json())["data"]]
        assert len(vecs[0]) == 8 and vecs[0] == vecs[1]
        r = await http.get(fake.url + "/models", headers=h)
        assert (await r.json())["data"][0]["id"] == "gpt-4o-mini"


async def test_anthropic_plain_stream_tool_use_and_errors():
    async with FakeAnthropic(api_key="k") as fake, aiohttp.ClientSession() as http:
        h = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        body = {"model": "c", "max_tokens": 50, "messages": [{"role": "user", "content": "hey"}]}
        r = await http.post(fake.url + "/v1/messages", json=body, headers=h)
        data = await r.json()
        assert data["content"][0]["text"] == "Hello! You said: hey"
        assert data["stop_reason"] == "end_turn" and data["usage"]["output_tokens"] > 0

        fake.queue(
            "Let me check.", tool_calls=[{"name": "weather", "arguments": {"city": "Paris"}}]
        )
        r = await http.post(fake.url + "/v1/messages", json={**body, "stream": True}, headers=h)
        events = [json.loads(d) for d in await _sse_data(r)]
        kinds = [e["type"] for e in events]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        partial = "".join(
            e["delta"]["partial_json"]
            for e in events
            if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
        )
        assert json.loads(partial) == {"city": "Paris"}
        assert (
            next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"]
            == "tool_use"
        )

        fake.fail_next(529)
        r = await http.post(fake.url + "/v1/messages", json=body, headers=h)
        assert r.status == 529 and (await r.json())["error"]["type"] == "overloaded_error"
        r = await http.post(
            fake.url + "/v1/messages", json=body, headers={"anthropic-version": "x"}
        )
        assert r.status == 401
