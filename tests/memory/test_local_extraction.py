"""Fact extraction on the embedded model, offline: its answer is held to the facts' JSON
schema by a llama.cpp grammar, so it parses (before, every answer was "not JSON; using the
rules")."""

from __future__ import annotations

from typing import Any

import pytest

from .test_events import facts, say


@pytest.mark.model
async def test_the_embedded_model_extracts_facts(llmmc: Any) -> None:
    pytest.importorskip("llama_cpp", reason="needs the [local] extra (llama-cpp-python)")
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["chat", "memory"],
                "chat": {
                    "default_provider": "local",
                    "providers": {"local": {"type": "llama_cpp"}},
                    "characters": {"lumina": {"name": "Lumina"}},
                },
                "memory": {"embedder": "hashing", "extractor": "llm", "redis_url": "none"},
            }
        }
    )
    await say(client, "dana", "s1", "My name is Dana. I live in Osaka and I have two cats.")
    got = await facts(client, "dana")
    assert got, "no fact was stored"
    # every fact came from the model's JSON, none from the rules' fallback
    assert {f["metadata"]["source"] for f in got} == {"llm"}
    assert all(f["content"].strip() for f in got)
