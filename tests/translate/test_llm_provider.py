"""The llm provider: translation through the chat plugin's "llm" service."""

from __future__ import annotations

from tests.translate.helpers import config, run


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
