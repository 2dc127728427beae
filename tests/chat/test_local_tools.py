"""Offline tool calls on the embedded model: the decision and argument steps, the
prompts and schemas they use, and a real weather call end to end."""

from __future__ import annotations

import json

import pytest

from builtin_plugins.chat.providers import local_tools
from builtin_plugins.weather.service import PARAMETERS as WEATHER_PARAMETERS
from tests.chat.helpers import frames_until, is_done
from tests.fakes.open_meteo import FakeOpenMeteo

NOX = (
    "You are Nox (ノクス), the sceptic of the group. You search for and check current "
    "information with the tools you have (call a tool rather than guess when one fits)."
)


def test_a_tool_is_offered_only_for_a_users_message_not_yet_answered_by_a_tool():
    ask = {"role": "user", "content": "東京の天気は？"}
    assert (
        local_tools.pending_request([{"role": "system", "content": "x"}, ask]) == "東京の天気は？"
    )
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c1", "function": {"name": "weather", "arguments": "{}"}}],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": "{}"}
    assert local_tools.pending_request([ask, call, result]) is None
    # another character's line in the same turn is not the user's request
    said = {"role": "user", "content": "[Claris said]: It is sunny."}
    assert local_tools.pending_request([ask, said]) is None
    assert local_tools.pending_request([{"role": "system", "content": "x"}]) is None
    long = "x" * 5000 + " Is it raining in Oslo?"
    assert local_tools.pending_request([{"role": "user", "content": long}]).endswith("Oslo?")
    assert len(local_tools.pending_request([{"role": "user", "content": long}])) == 400


def test_tool_schemas_become_grammars_llama_cpp_accepts():
    llama_cpp = pytest.importorskip("llama_cpp", reason="needs llama-cpp-python")
    cleaned = local_tools.grammar_schema(WEATHER_PARAMETERS)
    # llama.cpp's converter handles only anchored patterns; "\\S" would fail its assertion
    assert "pattern" not in cleaned["properties"]["city"]
    assert WEATHER_PARAMETERS["properties"]["city"]["pattern"] == r"\S"  # not modified
    assert cleaned["properties"]["city"]["maxLength"] == 100
    llama_cpp.LlamaGrammar.from_json_schema(json.dumps(cleaned), verbose=False)
    schema = local_tools.decision_schema(["weather", "translate"])
    assert schema["properties"]["tool"]["enum"] == ["weather", "translate", "none"]
    llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    anchored = {"type": "string", "pattern": "^[a-z]{2}$"}
    assert local_tools.grammar_schema(anchored) == anchored


def test_the_decision_prompt_shows_examples_only_of_the_tools_offered():
    tools = [{"name": "weather", "description": "Current weather for a city.", "parameters": {}}]
    messages = local_tools.decision_messages(tools, "Is it windy in Oslo?")
    answers = [json.loads(m["content"])["tool"] for m in messages if m["role"] == "assistant"]
    assert set(answers) == {"weather", "none"}
    assert answers.count("weather") >= 4 and answers.count("none") >= 4
    assert "weather: Current weather for a city." in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Is it windy in Oslo?"}
    args = local_tools.arguments_messages(
        {**tools[0], "parameters": WEATHER_PARAMETERS}, "Is it windy in Oslo?"
    )
    assert "- city: City name" in args[0]["content"]
    assert json.loads(args[2]["content"]) == {"city": "Madrid"}


def _config(fake_url: str) -> dict:
    return {
        "plugins": {
            "enabled": ["chat", "weather"],
            "chat": {
                "default_provider": "local",
                "providers": {"local": {"type": "llama_cpp", "max_tokens": 48, "seed": 1}},
                "characters": {"nox": {"name": "Nox", "aliases": ["ノクス"], "persona": NOX}},
            },
            "weather": {"base_url": fake_url, "geocoding_url": fake_url},
        }
    }


@pytest.mark.model
async def test_the_local_model_calls_the_weather_tool_and_answers_with_its_result(llmmc):
    pytest.importorskip("llama_cpp", reason="needs the [local] extra (llama-cpp-python)")
    async with FakeOpenMeteo() as fake:
        client = await llmmc(_config(fake.url))
        h = client.auth_headers("u1")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "What's the weather like in Berlin right now?"},
            headers=h,
        )
        body = await r.json()
        assert r.status == 200, body
        assert body["response"].strip()
        r = await client.get(f"/api/v1/chat/history/{body['session_id']}", headers=h)
        messages = (await r.json())["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
        call = messages[1]["tool_calls"][0]["function"]
        assert call["name"] == "weather"
        assert json.loads(call["arguments"])["city"] == "Berlin"
        assert json.loads(messages[2]["content"])["city"].startswith("Berlin")
        assert fake.count("/v1/forecast") == 1

        # a Japanese question names its city in Japanese; one that needs no tool calls none
        r = await client.post(
            "/api/v1/chat", json={"user_input": "東京の天気はどうですか？"}, headers=h
        )
        body = await r.json()
        r = await client.get(f"/api/v1/chat/history/{body['session_id']}", headers=h)
        messages = (await r.json())["messages"]
        assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "東京"}
        # the web client's tool card comes from the same "tool" frame as with OpenAI
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json(
                {"type": "chat", "message": "Is it raining in London today?", "request_id": "w1"}
            )
            frames = await frames_until(ws, is_done("w1"), limit=120)
        tool = [f for f in frames if f["type"] == "tool"]
        assert len(tool) == 1 and tool[0]["name"] == "weather" and tool[0]["ok"], frames
        assert json.loads(tool[0]["arguments"]) == {"city": "London"}
        assert frames[-1]["type"] == "complete"
        r = await client.post(
            "/api/v1/chat", json={"user_input": "Hi! How are you today?"}, headers=h
        )
        body = await r.json()
        r = await client.get(f"/api/v1/chat/history/{body['session_id']}", headers=h)
        assert [m["role"] for m in (await r.json())["messages"]] == ["user", "assistant"]
