"""A character calls the weather tool through function calling, end to end: the fake
OpenAI model asks for it, the kernel runs it against the fake Open-Meteo, and the result
goes back to the model."""

from __future__ import annotations

import json

from tests.fakes.openai_server import FakeOpenAI
from tests.translate.chat_setup import with_chat


def tool_messages(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m.get("role") == "tool"]


async def test_character_calls_weather_through_function_calling(llmmc, open_meteo):
    async with FakeOpenAI() as fake:
        weather = {"base_url": open_meteo.url, "geocoding_url": open_meteo.url}
        client = await llmmc(with_chat(fake.url, ("weather",), weather=weather))
        fake.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Tokyo"}}])
        fake.queue("It is 27 °C with slight rain in Tokyo.")
        h = client.auth_headers("u1")
        r = await client.post("/api/v1/chat", json={"user_input": "Weather in Tokyo?"}, headers=h)
        assert r.status == 200, await r.text()
        assert (await r.json())["response"] == "It is 27 °C with slight rain in Tokyo."

        first, second = fake.requests[-2:]
        [offered] = [t["function"] for t in first["tools"] if t["function"]["name"] == "weather"]
        assert offered["parameters"]["required"] == ["city"]
        assert open_meteo.count("/v1/forecast") == 1
        [tool_msg] = tool_messages(second)
        result = json.loads(tool_msg["content"])
        assert result["city"] == "Tokyo, JP"
        assert result["temperature"] == 27.0
        assert result["description"] == "Slight rain"
        assert result["provider"] == "open-meteo"

        # the same city again, now from the API: served from the cache
        r = await client.post(
            "/api/v1/plugins/weather/execute",
            json={"tool": "weather", "params": {"city": "tokyo"}},
            headers=h,
        )
        assert (await r.json())["result"] == result
        assert open_meteo.count("/v1/forecast") == 1


async def test_unknown_city_reaches_the_model_as_an_error(llmmc, open_meteo):
    async with FakeOpenAI() as fake:
        weather = {"base_url": open_meteo.url, "geocoding_url": open_meteo.url}
        client = await llmmc(with_chat(fake.url, ("weather",), weather=weather))
        fake.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Atlantis"}}])
        fake.queue("I could not find Atlantis.")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "Weather in Atlantis?"},
            headers=client.auth_headers("u1"),
        )
        assert r.status == 200
        [tool_msg] = tool_messages(fake.requests[-1])
        error = json.loads(tool_msg["content"])["error"]
        assert error["code"] == "CITY_NOT_FOUND"
        assert error["status"] == 404
