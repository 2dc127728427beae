"""The translate config schema refuses unknown providers and bad URLs before anything starts."""

from __future__ import annotations

import pytest

from kernel.config import ConfigError
from tests.translate.helpers import config


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"provider": "babelfish"}, "provider"),
        ({"base_url": "localhost:5000"}, "base_url"),
        ({"base_url": "file:///etc/passwd"}, "base_url"),
        ({"base_url": "http://user:pw@example.com"}, "base_url"),
        ({"max_text_chars": 0}, "max_text_chars"),
        ({"llm_provider": "a b"}, "llm_provider"),
        ({"target": "de"}, "target"),
    ],
)
async def test_bad_config_stops_startup_and_names_the_key(llmmc, table, key):
    with pytest.raises(ConfigError) as info:
        await llmmc(config(**table))
    text = "\n".join(info.value.problems)
    assert "translate" in text
    assert key in text


async def test_defaults_are_the_spec_values(llmmc):
    client = await llmmc(config())
    info = await (
        await client.get("/api/v1/plugins/translate", headers=client.auth_headers("a", admin=True))
    ).json()
    assert info["config"]["provider"] == "libretranslate"
    assert info["config"]["base_url"] == "http://127.0.0.1:5000"
    assert info["config"]["max_text_chars"] == 5000
    assert {t["name"] for t in info["tools"]} == {"translate", "detect_language", "languages"}


async def test_tools_are_documented_in_openapi(llmmc):
    client = await llmmc(config())
    spec = await (await client.get("/openapi.json")).json()
    text = str(spec)
    for tool in ("translate", "detect_language", "languages"):
        assert tool in text
    assert "detected_source_lang" in text
