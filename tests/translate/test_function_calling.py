"""A character calls the translate tools through function calling, end to end: the fake
OpenAI model asks for the tool, the kernel runs it against the fake LibreTranslate, and
the result goes back to the model."""

from __future__ import annotations

import json

from tests.fakes.openai_server import FakeOpenAI
from tests.translate.chat_setup import with_chat


def tool_messages(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m.get("role") == "tool"]


async def test_character_translates_through_function_calling(llmmc, libre):
    async with FakeOpenAI() as fake:
        client = await llmmc(with_chat(fake.url, ("translate",), translate={"base_url": libre.url}))
        fake.queue(
            tool_calls=[
                {"name": "translate", "arguments": {"text": "Thank you", "target_lang": "ja"}}
            ]
        )
        fake.queue("In Japanese that is ありがとう.")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "How do I say thank you in Japanese?"},
            headers=client.auth_headers("u1"),
        )
        assert r.status == 200, await r.text()
        assert (await r.json())["response"] == "In Japanese that is ありがとう."

        first, second = fake.requests[-2:]
        offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
        assert {"translate", "detect_language", "languages"} <= set(offered)
        assert offered["translate"]["parameters"]["required"] == ["text", "target_lang"]

        assert libre.count("/translate") == 1
        assert libre.last("/translate").body["target"] == "ja"
        [tool_msg] = tool_messages(second)
        assert json.loads(tool_msg["content"]) == {
            "original_text": "Thank you",
            "translated_text": "ありがとう",
            "source_lang": "auto",
            "target_lang": "ja",
            "detected_source_lang": "en",
            "provider": "libretranslate",
        }


async def test_tool_errors_reach_the_model_not_the_user(llmmc, libre):
    async with FakeOpenAI() as fake:
        client = await llmmc(
            with_chat(
                fake.url, ("translate",), translate={"base_url": libre.url, "max_text_chars": 5}
            )
        )
        fake.queue(
            tool_calls=[
                {"name": "translate", "arguments": {"text": "Hello", "target_lang": "tlh"}},
                {"name": "detect_language", "arguments": {"text": "far too long"}},
            ]
        )
        fake.queue("Sorry, I cannot translate into Klingon.")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "Say hello in Klingon"},
            headers=client.auth_headers("u1"),
        )
        assert r.status == 200
        assert (await r.json())["response"] == "Sorry, I cannot translate into Klingon."
        contents = [json.loads(m["content"]) for m in tool_messages(fake.requests[-1])]
        codes = sorted(c["error"]["code"] for c in contents)
        assert codes == ["TEXT_TOO_LONG", "UNSUPPORTED_LANGUAGE"]
        assert libre.count("/translate") == 0
