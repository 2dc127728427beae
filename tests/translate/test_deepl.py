"""The deepl provider against the fake DeepL server."""

from __future__ import annotations

import pytest

from tests.fakes.deepl import FakeDeepL
from tests.fakes.upstream import MODES
from tests.translate.helpers import config, result, run


def dconfig(fake, **extra):
    return config(provider="deepl", base_url=fake.url, api_key="d-key:fx", **extra)


async def test_translate_uses_deepl_codes_and_auth_header(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    out = await result(client, "translate", text="Gracias", target_lang="en")
    assert out == {
        "original_text": "Gracias",
        "translated_text": "Thank you",
        "source_lang": "auto",
        "target_lang": "en-US",  # DeepL translates into variants; "en" means en-US
        "detected_source_lang": "es",
        "provider": "deepl",
    }
    sent = deepl.last("/v2/translate")
    assert sent.headers["Authorization"] == "DeepL-Auth-Key d-key:fx"
    assert sent.body == {"text": ["Gracias"], "target_lang": "EN-US"}


async def test_source_variant_falls_back_and_target_variant_is_kept(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    out = await result(
        client, "translate", text="Thank you", source_lang="en-GB", target_lang="pt-br"
    )
    assert out["source_lang"] == "en"
    assert out["target_lang"] == "pt-BR"
    assert out["translated_text"] == "Obrigado"
    assert out["detected_source_lang"] is None
    assert deepl.last("/v2/translate").body == {
        "text": ["Thank you"],
        "target_lang": "PT-BR",
        "source_lang": "EN",
    }


async def test_languages_merge_source_and_target_lists(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    langs = {lang["code"]: lang for lang in (await result(client, "languages"))["languages"]}
    assert langs["en"]["source"] is True and langs["en"]["target"] is False
    assert langs["en-US"]["source"] is False and langs["en-US"]["target"] is True
    assert langs["de"]["source"] is True and langs["de"]["target"] is True
    assert "zh-Hans" in langs
    assert deepl.count("/v2/languages") == 2


async def test_unsupported_target_lists_deepl_variants(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    r = await run(client, "translate", text="Hallo", source_lang="ja", target_lang="ko")
    assert r.status == 422
    assert "en-US" in (await r.json())["supported"]


async def test_detect_reads_detected_source_language(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    out = await result(client, "detect_language", text="Quel temps fait-il aujourd'hui ?")
    assert out == {"language": "fr", "confidence": None, "provider": "deepl"}


async def test_quota_exceeded_456_is_rate_limited(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    deepl.fail_next(456, body={"message": "Quota Exceeded"})
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_RATE_LIMITED"


async def test_upstream_unsupported_target_is_422(llmmc, deepl):
    client = await llmmc(dconfig(deepl))
    await result(client, "languages")
    deepl.fail_next(400, body={"message": "Value for 'target_lang' not supported."})
    r = await run(client, "translate", text="Hello", target_lang="de")
    assert r.status == 422
    assert (await r.json())["code"] == "UNSUPPORTED_LANGUAGE"


async def test_wrong_key_is_502_and_missing_key_503(llmmc, deepl):
    wrong = await llmmc(config(provider="deepl", base_url=deepl.url, api_key="other"))
    r = await run(wrong, "translate", text="Hello", target_lang="de")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_AUTH_FAILED"
    missing = await llmmc(config(provider="deepl", base_url=deepl.url))
    r = await run(missing, "translate", text="Hello", target_lang="de")
    assert r.status == 503
    assert (await r.json())["setting"] == "plugins.translate.api_key"


@pytest.mark.parametrize("mode", [m for m in MODES if m is not None])
async def test_broken_upstream_is_502(llmmc, deepl, mode):
    client = await llmmc(dconfig(deepl))
    deepl.mode = mode
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 502, await r.text()
    assert (await r.json())["code"] == "UPSTREAM_ERROR"


async def test_slow_upstream_is_504(llmmc, deepl):
    client = await llmmc(dconfig(deepl, timeout_seconds=0.3))
    deepl.delay = 5
    r = await run(client, "translate", text="Hello", target_lang="de")
    assert r.status == 504


@pytest.mark.parametrize(
    ("key", "url"),
    [("abc:fx", "https://api-free.deepl.com/v2"), ("abc", "https://api.deepl.com/v2")],
)
async def test_default_endpoint_follows_the_key_kind(llmmc, key, url):
    client = await llmmc(config(provider="deepl", api_key=key))
    assert client.kernel.records["translate"].instance.base_url() == url


async def test_redirects_are_not_followed_so_the_key_stays_home(llmmc, deepl):
    async with FakeDeepL(api_key=None) as elsewhere:
        client = await llmmc(dconfig(deepl))
        deepl.fail_next(307, body="", headers={"Location": elsewhere.url + "/translate"})
        r = await run(client, "detect_language", text="Hello")
        assert r.status == 502
        assert "307" in (await r.json())["detail"]
        assert elsewhere.count() == 0
