"""translate, detect_language and languages on LibreTranslate (the default provider)."""

from __future__ import annotations

import pytest

from tests.fakes.libretranslate import FakeLibreTranslate
from tests.fakes.upstream import MODES
from tests.translate.helpers import EXECUTE, FIELDS, config, result, run


async def test_translate_detects_the_source(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    out = await result(client, "translate", text="Hello", target_lang="es")
    assert out == {
        "original_text": "Hello",
        "translated_text": "Hola",
        "source_lang": "auto",
        "target_lang": "es",
        "detected_source_lang": "en",
        "provider": "libretranslate",
    }
    sent = libre.last("/translate").body
    assert sent == {"q": "Hello", "source": "auto", "target": "es", "format": "text"}


async def test_translate_with_a_source_and_codes_in_any_case(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    out = await result(client, "translate", text="Danke", source_lang="DE", target_lang="zh-hans")
    assert set(out) == FIELDS
    assert out["translated_text"] == "谢谢"
    assert out["source_lang"] == "de"
    assert out["target_lang"] == "zh-Hans"
    assert out["detected_source_lang"] is None
    assert libre.last("/translate").body["target"] == "zh-Hans"


async def test_region_variant_falls_back_to_the_language(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    out = await result(client, "translate", text="Thank you", target_lang="pt-BR")
    assert out["target_lang"] == "pt"
    assert out["translated_text"] == "Obrigado"


async def test_same_source_and_target_needs_no_upstream(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    out = await result(client, "translate", text="Hello", source_lang="en", target_lang="en")
    assert out["translated_text"] == "Hello"
    assert libre.count("/translate") == 0


async def test_detect_language(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    out = await result(client, "detect_language", text="今日の天気はどうですか？")
    assert out == {"language": "ja", "confidence": 0.95, "provider": "libretranslate"}


async def test_languages_listed_and_fetched_once(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    out = await result(client, "languages")
    assert out["provider"] == "libretranslate"
    codes = [lang["code"] for lang in out["languages"]]
    assert codes == sorted(codes)
    assert {"en", "ja", "zh-Hans"} <= set(codes)
    assert {"code": "de", "name": "German", "source": True, "target": True} in out["languages"]
    await result(client, "translate", text="Hello", target_lang="de")
    await result(client, "translate", text="Hello", target_lang="fr")
    assert libre.count("/languages") == 1


async def test_languages_cache_zero_refetches(llmmc, libre):
    client = await llmmc(config(base_url=libre.url, languages_cache_seconds=0))
    await result(client, "translate", text="Hello", target_lang="de")
    await result(client, "translate", text="Hello", target_lang="fr")
    assert libre.count("/languages") == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"target_lang": "xx"}, "/target_lang"),
        ({"target_lang": "de", "source_lang": "tlh"}, "/source_lang"),
    ],
)
async def test_unsupported_language_is_422_with_the_list(llmmc, libre, params, field):
    client = await llmmc(config(base_url=libre.url))
    r = await run(client, "translate", text="Hello", **params)
    assert r.status == 422
    problem = await r.json()
    assert problem["code"] == "UNSUPPORTED_LANGUAGE"
    assert problem["supported"] == sorted(["de", "en", "es", "fr", "ja", "pt", "zh-Hans"])
    assert problem["errors"][0]["path"] == field
    assert "zh-Hans" in problem["errors"][0]["message"]
    assert libre.count("/translate") == 0


async def test_upstream_saying_not_supported_is_422(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    await result(client, "languages")
    libre.fail_next(400, body={"error": "es is not supported"})
    r = await run(client, "translate", text="Hello", target_lang="es")
    assert r.status == 422
    assert (await r.json())["code"] == "UNSUPPORTED_LANGUAGE"


async def test_too_long_text_is_413(llmmc, libre):
    client = await llmmc(config(base_url=libre.url, max_text_chars=10))
    ok = await run(client, "translate", text="x" * 10, target_lang="de")
    assert ok.status == 200
    for tool, params in (
        ("translate", {"text": "x" * 11, "target_lang": "de"}),
        ("detect_language", {"text": "x" * 11}),
    ):
        r = await run(client, tool, **params)
        assert r.status == 413
        problem = await r.json()
        assert problem["code"] == "TEXT_TOO_LONG"
        assert problem["max_text_chars"] == 10
        assert "plugins.translate.max_text_chars" in problem["detail"]
    assert libre.count("/translate") == 1
    assert libre.count("/detect") == 0


async def test_api_key_is_sent_and_refusals_name_the_setting(llmmc):
    async with FakeLibreTranslate(api_key="libre-key") as fake:
        good = await llmmc(config(base_url=fake.url, api_key="libre-key"))
        await result(good, "translate", text="Hello", target_lang="de")
        assert fake.last("/translate").body["api_key"] == "libre-key"

        for table in ({"api_key": "wrong"}, {}):
            client = await llmmc(config(base_url=fake.url, **table))
            r = await run(client, "detect_language", text="Hello")
            assert r.status == 502
            problem = await r.json()
            assert problem["code"] == "UPSTREAM_AUTH_FAILED"
            assert "plugins.translate.api_key" in problem["detail"]


async def test_upstream_429_is_502_rate_limited(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    libre.fail_next(429, body={"error": "Too many request limits violations"})
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 502
    assert (await r.json())["code"] == "UPSTREAM_RATE_LIMITED"


@pytest.mark.parametrize("mode", [m for m in MODES if m is not None])
@pytest.mark.parametrize("path", ["/languages", "/translate", "/detect"])
async def test_broken_upstream_is_502(llmmc, libre, mode, path):
    client = await llmmc(config(base_url=libre.url))
    libre.mode, libre.mode_paths = mode, {path}
    tool = "detect_language" if path == "/detect" else "translate"
    params = (
        {"text": "Hello"} if tool == "detect_language" else {"text": "Hello", "target_lang": "de"}
    )
    r = await run(client, tool, **params)
    assert r.status == 502, await r.text()
    assert (await r.json())["code"] == "UPSTREAM_ERROR"


async def test_failed_language_list_is_not_cached(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    libre.fail_next(500)
    assert (await run(client, "languages")).status == 502
    assert (await run(client, "languages")).status == 200


async def test_slow_upstream_is_504(llmmc, libre):
    client = await llmmc(config(base_url=libre.url, timeout_seconds=0.3))
    libre.delay = 5
    r = await run(client, "detect_language", text="Hello")
    assert r.status == 504
    assert (await r.json())["code"] == "UPSTREAM_TIMEOUT"


async def test_execute_without_a_token_is_401(llmmc, libre):
    client = await llmmc(config(base_url=libre.url))
    for tool, params in (
        ("translate", {"text": "Hello", "target_lang": "de"}),
        ("detect_language", {"text": "Hello"}),
        ("languages", {}),
    ):
        r = await client.post(EXECUTE, json={"tool": tool, "params": params})
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert libre.count() == 0


@pytest.mark.parametrize(
    ("tool", "params"),
    [
        ("translate", {"text": "Hello"}),
        ("translate", {"target_lang": "de"}),
        ("translate", {"text": "", "target_lang": "de"}),
        ("translate", {"text": "  ", "target_lang": "de"}),
        ("translate", {"text": "Hello", "target_lang": "d e"}),
        ("translate", {"text": "Hello", "target_lang": "de", "source_lang": "automatic"}),
        ("translate", {"text": "Hello", "target_lang": "de", "formality": "more"}),
        ("detect_language", {"text": 5}),
        ("languages", {"all": True}),
    ],
)
async def test_bad_params_are_422(llmmc, libre, tool, params):
    client = await llmmc(config(base_url=libre.url))
    r = await run(client, tool, **params)
    assert r.status == 422
    assert libre.count() == 0


async def test_results_match_the_declared_result_schemas(llmmc, libre):
    import jsonschema

    client = await llmmc(config(base_url=libre.url))
    info = await (
        await client.get("/api/v1/plugins/translate", headers=client.auth_headers("u1"))
    ).json()
    schemas = {t["name"]: t["result"] for t in info["tools"]}
    jsonschema.validate(await result(client, "languages"), schemas["languages"])
    for params in (
        {"text": "Hello", "target_lang": "fr"},
        {"text": "Hello", "target_lang": "fr", "source_lang": "en"},
        {"text": "Hello", "target_lang": "en", "source_lang": "en"},
    ):
        jsonschema.validate(await result(client, "translate", **params), schemas["translate"])
    jsonschema.validate(
        await result(client, "detect_language", text="Hola"), schemas["detect_language"]
    )
