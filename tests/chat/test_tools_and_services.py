"""Characters call tools through function calling; the "llm" service and summarize_text."""

from __future__ import annotations

import json

from sdk import LLMProvider, Plugin, Route, StreamEvent, Tool, Usage, errors, hookimpl, services
from tests.chat.helpers import chat_config, frames_until, is_done
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

CALLS: list[dict] = []


class ReverseProvider(LLMProvider):
    """A third-party provider type: answers with the user's text reversed."""

    type = "reverse"

    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, temperature=None):
        text = messages[-1]["content"][::-1]
        yield StreamEvent("delta", text=text)
        yield StreamEvent("usage", usage=Usage(1, 1))
        yield StreamEvent("finish", finish_reason="stop")


class ToolsPlugin(Plugin):
    """A third-party plugin with two tools, a memory_context hook, and a route that uses
    the chat plugin's "llm" service and summarize_text hook."""

    name = "toolbox"
    config_schema = {"type": "object"}

    async def _forecast(self, params, call):
        CALLS.append({"params": params, "origin": call.origin, "user": call.identity.user_id})
        if params["city"] == "Atlantis":
            raise errors.NotFound("no such city", code="CITY_NOT_FOUND")
        return {"city": params["city"], "temperature": 21.5, "description": "sunny"}

    @hookimpl
    def register_tools(self):
        return [
            Tool(
                "forecast",
                "Weather in a city",
                {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string"}},
                },
                self._forecast,
            )
        ]

    @hookimpl
    def register_characters(self):
        return [
            {
                "id": "sage",
                "name": "Sage",
                "aliases": ["賢者"],
                "provider": "rev",
                "description": "From a plugin",
            }
        ]

    @hookimpl
    def register_llm_providers(self):
        return [ReverseProvider]

    @hookimpl
    async def memory_context(self, identity, session_id, query, max_tokens):
        return [
            {
                "tier": "long_term",
                "content": f"{identity.user_id} likes green tea",
                "score": 0.9,
                "memory_id": "m1",
            }
        ]

    async def _use_llm(self, req):
        llm = self.context.services.get(services.LLM)
        text = await llm.complete(
            [{"role": "user", "content": req.body["text"]}], identity=req.identity
        )
        summaries = await self.context.hooks.call(
            "summarize_text", identity=req.identity, text=req.body["text"], max_words=3
        )
        return {"text": text, "summaries": summaries}

    @hookimpl
    def register_routes(self):
        return [Route("POST", "/toolbox/llm", self._use_llm, request_schema={"type": "object"})]


async def test_tool_call_round_trip_and_history(llmmc):
    CALLS.clear()
    async with FakeOpenAI() as fake:
        client = await llmmc(
            chat_config(fake.url, enabled=("chat", "toolbox")), plugins={"toolbox": ToolsPlugin}
        )
        h = client.auth_headers("u1")
        fake.queue(
            tool_calls=[{"name": "forecast", "arguments": {"city": "Tokyo"}}],
            usage={"prompt_tokens": 10, "completion_tokens": 4},
        )
        fake.queue(
            "It is sunny in Tokyo, 21.5°C.", usage={"prompt_tokens": 20, "completion_tokens": 8}
        )
        r = await client.post("/api/v1/chat", json={"user_input": "weather in Tokyo?"}, headers=h)
        body = await r.json()
        assert r.status == 200, body
        assert body["response"] == "It is sunny in Tokyo, 21.5°C."
        assert body["replies"][0]["usage"] == {
            "prompt_tokens": 30,
            "completion_tokens": 12,
            "total_tokens": 42,
        }
        assert CALLS == [{"params": {"city": "Tokyo"}, "origin": "llm", "user": "u1"}]
        first, second = fake.requests
        fn = first["tools"][0]["function"]
        assert fn["name"] == "forecast" and fn["parameters"]["required"] == ["city"]
        assert "u1 likes green tea" in first["messages"][0]["content"]  # memory context
        tool_msg = second["messages"][-1]
        assert tool_msg["role"] == "tool"
        assert json.loads(tool_msg["content"]) == {
            "city": "Tokyo",
            "temperature": 21.5,
            "description": "sunny",
        }
        assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "forecast"
        r = await client.get(f"/api/v1/chat/history/{body['session_id']}", headers=h)
        msgs = (await r.json())["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
        assert msgs[1]["tool_calls"][0]["function"]["name"] == "forecast"
        assert msgs[2]["tool_name"] == "forecast" and "sunny" in msgs[2]["content"]


async def test_tool_failure_goes_back_to_the_model(llmmc):
    CALLS.clear()
    async with FakeOpenAI() as fake:
        client = await llmmc(
            chat_config(fake.url, enabled=("chat", "toolbox")), plugins={"toolbox": ToolsPlugin}
        )
        fake.queue(
            tool_calls=[
                {"name": "forecast", "arguments": {"city": "Atlantis"}},
                {"name": "no_such_tool", "arguments": {}},
            ]
        )
        fake.queue("I could not find Atlantis.")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "weather in Atlantis?"},
            headers=client.auth_headers("u1"),
        )
        assert r.status == 200 and (await r.json())["response"] == "I could not find Atlantis."
        results = [
            json.loads(m["content"]) for m in fake.requests[1]["messages"] if m["role"] == "tool"
        ]
        assert (
            results[0]["error"]["code"] == "CITY_NOT_FOUND" and results[0]["error"]["status"] == 404
        )
        assert results[1]["error"]["code"] == "UNKNOWN_TOOL"


async def test_tool_rounds_are_bounded(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(
            chat_config(fake.url, enabled=("chat", "toolbox"), max_tool_rounds=2),
            plugins={"toolbox": ToolsPlugin},
        )
        for _ in range(2):
            fake.queue(tool_calls=[{"name": "forecast", "arguments": {"city": "Oslo"}}])
        fake.queue("Enough tools.")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "loop"}, headers=client.auth_headers("u1")
        )
        assert (await r.json())["response"] == "Enough tools."
        assert "tools" not in fake.requests[2]  # the last call offers no tools


async def test_anthropic_tool_use_round_trip(llmmc):
    async with FakeAnthropic(api_key="ak") as fake:
        cfg = chat_config(
            fake.url, enabled=("chat", "toolbox"), provider_type="anthropic", api_key="ak"
        )
        client = await llmmc(cfg, plugins={"toolbox": ToolsPlugin})
        fake.queue(
            "Let me look.", tool_calls=[{"name": "forecast", "arguments": {"city": "Paris"}}]
        )
        fake.queue("Sunny in Paris.")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "Paris?"}, headers=client.auth_headers("u1")
        )
        body = await r.json()
        assert body["response"] == "Let me look.\n\nSunny in Paris."
        sent = fake.requests[1]["messages"]
        assert sent[-1]["content"][0]["type"] == "tool_result"
        assert json.loads(sent[-1]["content"][0]["content"])["city"] == "Paris"


async def test_llm_service_and_summarize_hook_for_other_plugins(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(
            chat_config(fake.url, enabled=("chat", "toolbox")), plugins={"toolbox": ToolsPlugin}
        )
        fake.queue("a completion")
        fake.queue("one two three four five")
        r = await client.post(
            "/toolbox/llm", json={"text": "long text here"}, headers=client.auth_headers("u1")
        )
        assert await r.json() == {"text": "a completion", "summaries": ["one two three"]}
        assert fake.requests[1]["messages"][0]["role"] == "system"
        fake.fail_next(500, times=2)
        r = await client.post("/toolbox/llm", json={"text": "x"}, headers=client.auth_headers("u1"))
        assert r.status == 502


async def test_plugins_register_characters_and_provider_types(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("chat", "toolbox"))
        cfg["plugins"]["chat"]["providers"]["rev"] = {"type": "reverse"}
        client = await llmmc(cfg, plugins={"toolbox": ToolsPlugin})
        h = client.auth_headers("u1")
        r = await client.get("/api/v1/chat/characters", headers=h)
        sage = next(c for c in await r.json() if c["id"] == "sage")
        assert sage["provider"] == "rev" and sage["description"] == "From a plugin"
        r = await client.post("/api/v1/chat", json={"user_input": "賢者、abc"}, headers=h)
        body = await r.json()
        assert body["character"] == "sage" and body["response"] == "cba、者賢"
        r = await client.get("/health")
        assert (await r.json())["plugins"]["chat"]["status"] == "ok"


async def test_a_tool_call_is_announced_over_the_websocket(llmmc):
    CALLS.clear()
    async with FakeOpenAI() as fake:
        client = await llmmc(
            chat_config(fake.url, enabled=("chat", "toolbox")), plugins={"toolbox": ToolsPlugin}
        )
        fake.queue(tool_calls=[{"name": "forecast", "arguments": {"city": "Tokyo"}}])
        fake.queue("Sunny.")
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            await ws.send_json({"type": "chat", "message": "weather?", "request_id": "w1"})
            frames = await frames_until(ws, is_done("w1"))
        tool = [f for f in frames if f["type"] == "tool"]
        assert tool == [
            {
                "type": "tool",
                "request_id": "w1",
                "character": "lumina",
                "name": "forecast",
                "arguments": '{"city": "Tokyo"}',
                "ok": True,
            }
        ]
        kinds = [f["type"] for f in frames]
        # announced after the call ran, before the answer that uses its result
        assert kinds.index("tool") < kinds.index("chunk") < kinds.index("complete")
