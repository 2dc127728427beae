"""The llm provider: translation through the chat plugin's "llm" service."""

from __future__ import annotations

from tests.fakes.openai_server import FakeOpenAI
from tests.translate.chat_setup import with_chat
from tests.translate.helpers import config, result, run


async def test_without_chat_llm_provider_is_503_naming_chat(llmmc):
    client = await llmmc(config(provider="llm"))
    assert client.plugin_state("translate") == "RUNNING"
    r = await run(client, "translate", text="Hello", target_lang="de")
    assert r.status == 503
    problem = await r.json()
    assert problem["code"] == "LLM_UNAVAILABLE"
    assert "chat" in problem["detail"]
    assert problem["setting"] == "plugins.enabled"
    health = await (await client.get("/health")).json()
    assert health["plugins"]["translate"]["status"] == "unavailable"
    assert "chat" in health["plugins"]["translate"]["detail"]


async def test_llm_languages_are_built_in(llmmc):
    """The list needs no chat plugin: clients can see what llm translation would accept."""
    client = await llmmc(config(provider="llm"))
    r = await run(client, "languages")
    assert r.status == 200
    out = (await r.json())["result"]
    assert out["provider"] == "llm"
    codes = {lang["code"] for lang in out["languages"]}
    assert {"en", "ja", "de", "fr", "zh"} <= codes
    r = await run(client, "translate", text="Hello", target_lang="xx")
    assert r.status == 422
    assert "ja" in (await r.json())["supported"]


async def test_llm_translate_provider_against_the_fake_openai_server(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(with_chat(fake.url, ("translate",), translate={"provider": "llm"}))
        health = await (await client.get("/health")).json()
        assert health["plugins"]["translate"]["status"] == "ok"

        fake.queue("“Hallo”")  # a model that wraps its answer in quotes
        out = await result(client, "translate", text="Hello", source_lang="en", target_lang="de")
        assert out == {
            "original_text": "Hello",
            "translated_text": "Hallo",
            "source_lang": "en",
            "target_lang": "de",
            "detected_source_lang": None,
            "provider": "llm",
        }
        sent = fake.requests[-1]
        assert sent["messages"][0]["role"] == "system"
        assert "from English into German" in sent["messages"][0]["content"]
        assert sent["messages"][1] == {"role": "user", "content": "Hello"}
        assert sent["temperature"] == 0
        assert "tools" not in sent  # a plain completion, not a character turn

        fake.queue("Language: fr.")
        out = await result(client, "detect_language", text="Bonjour")
        assert out == {"language": "fr", "confidence": None, "provider": "llm"}
        fake.queue("Japanese")
        assert (await result(client, "detect_language", text="こんにちは"))["language"] == "ja"

        fake.queue("I could not say.")
        r = await run(client, "detect_language", text="???")
        assert r.status == 502
        assert (await r.json())["code"] == "UPSTREAM_ERROR"

        fake.fail_next(500, times=3)
        r = await run(client, "translate", text="Hello", target_lang="de")
        assert r.status == 502


async def test_llm_provider_setting_picks_the_chat_provider(llmmc):
    async with FakeOpenAI() as default, FakeOpenAI() as other:
        cfg = with_chat(
            default.url, ("translate",), translate={"provider": "llm", "llm_provider": "other"}
        )
        cfg["plugins"]["chat"]["providers"]["other"] = {
            "type": "openai",
            "base_url": other.url,
            "model": "other-model",
        }
        client = await llmmc(cfg)
        other.queue("Bonjour")
        out = await result(client, "translate", text="Hello", target_lang="fr")
        assert out["translated_text"] == "Bonjour"
        assert len(other.requests) == 1 and other.requests[0]["model"] == "other-model"
        assert default.requests == []
