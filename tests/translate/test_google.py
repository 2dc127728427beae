"""The google provider (Cloud Translation v2) against the fake Google server."""

from __future__ import annotations

import pytest

from tests.fakes.upstream import MODES
from tests.translate.helpers import config, result, run


def gconfig(fake, **extra):
    return config(provider="google", base_url=fake.url, api_key="g-key", **extra)


async def test_translate_sends_key_and_reads_detection(llmmc, google):
    client = await llmmc(gconfig(google))
    out = await result(client, "translate", text="Bonjour", target_lang="ja")
    assert out == {
        "original_text": "Bonjour",
        "translated_text": "こんにちは",
        "source_lang": "auto",
        "target_lang": "ja",
        "detected_source_lang": "fr",
        "provider": "google",
    }
    sent = google.last("/language/translate/v2")
    assert sent.query["key"] == "g-key"
    assert sent.body == {"q": "Bonjour", "target": "ja", "format": "text"}


async def test_translate_with_source_and_google_codes(llmmc, google):
    client = await llmmc(gconfig(google))
    out = await result(client, "translate", text="Hello", source_lang="en", target_lang="zh-cn")
    assert out["translated_text"] == "你好"
    assert out["target_lang"] == "zh-CN"
    assert out["detected_source_lang"] is None
    assert google.last("/language/translate/v2").body["source"] == "en"


async def test_detect_and_languages(llmmc, google):
    client = await llmmc(gconfig(google))
    out = await result(client, "detect_language", text="Wie ist das Wetter heute?")
    assert out == {"language": "de", "confidence": 0.95, "provider": "google"}
    langs = await result(client, "languages")
    assert {"code": "zh-CN", "name": "Chinese", "source": True, "target": True} in langs[
        "languages"
    ]
    assert google.last("/language/translate/v2/languages").query["target"] == "en"


async def test_unsupported_language_is_422(llmmc, google):
    client = await llmmc(gconfig(google))
    r = await run(client, "translate", text="Hello", target_lang="ko")
    assert r.status == 422
    problem = await r.json()
    assert problem["code"] == "UNSUPPORTED_LANGUAGE"
    assert "zh-CN" in problem["supported"]


async def test_missing_key_is_503_and_unavailable(llmmc, google):
    client = await llmmc(config(provider="google", base_url=google.url))
    assert client.plugin_state("translate") == "RUNNING"
    for tool, params in (
        ("translate", {"text": "Hello", "target_lang": "de"}),
        ("detect_language", {"text": "Hello"}),
        ("languages", {}),
    ):
        r = await run(client, tool, **params)
        assert r.status == 503
        problem = await r.json()
        assert problem["code"] == "MISSING_SETTING"
        assert problem["setting"] == "plugins.translate.api_key"
    assert google.count() == 0
    health = await (await client.get("/health")).json()
    assert health["plugins"]["translate"]["status"] == "unavailable"
    assert "plugins.translate.api_key" in health["plugins"]["translate"]["detail"]


async def test_invalid_key_is_502_auth_failed(llmmc, google):
    client = await llmmc(config(provider="google", base_url=google.url, api_key="nope"))
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 502
    problem = await r.json()
    assert problem["code"] == "UPSTREAM_AUTH_FAILED"
    assert "nope" not in problem["detail"]


async def test_quota_reason_is_rate_limited(llmmc, google):
    client = await llmmc(gconfig(google))
    google.fail_next(
        403,
        body={
            "error": {
                "code": 403,
                "message": "User Rate Limit Exceeded",
                "errors": [
                    {
                        "message": "User Rate Limit Exceeded",
                        "domain": "usageLimits",
                        "reason": "userRateLimitExceeded",
                    }
                ],
            }
        },
    )
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_RATE_LIMITED"


async def test_server_error_message_is_passed_on(llmmc, google):
    client = await llmmc(gconfig(google))
    google.fail_next(500)
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 502
    assert "Injected failure 500" in (await r.json())["detail"]


@pytest.mark.parametrize("mode", [m for m in MODES if m is not None])
async def test_broken_upstream_is_502(llmmc, google, mode):
    client = await llmmc(gconfig(google))
    google.mode = mode
    for tool, params in (
        ("translate", {"text": "Hello", "target_lang": "de"}),
        ("detect_language", {"text": "Hi"}),
    ):
        r = await run(client, tool, **params)
        assert r.status == 502, await r.text()
        assert (await r.json())["code"] == "UPSTREAM_ERROR"


async def test_libretranslate_default_url_means_google_endpoint(llmmc):
    from builtin_plugins.translate.plugin import TranslatePlugin

    client = await llmmc(config(provider="google", api_key="k"))
    plugin = client.kernel.records["translate"].instance
    assert isinstance(plugin, TranslatePlugin)
    assert plugin.base_url() == "https://translation.googleapis.com/language/translate/v2"
