"""Readiness waits for the embedded model: the llama.cpp provider loads it when the server
starts, /readyz says so meanwhile, and once it answers 200 no turn waits for a load."""

from __future__ import annotations

import asyncio

import pytest

from builtin_plugins.chat.providers import llama_cpp


@pytest.mark.model
async def test_readyz_waits_for_the_local_model(llmmc):
    pytest.importorskip("llama_cpp", reason="needs the [local] extra (llama-cpp-python)")
    path = str(llama_cpp.find_packaged_model())
    llama_cpp._close_models()  # as a fresh process: nothing loaded yet
    llama_cpp._models.clear()
    config = {
        "plugins": {
            "enabled": ["chat"],
            "chat": {
                "default_provider": "local",
                "providers": {"local": {"type": "llama_cpp"}},
                "characters": {"lumina": {"name": "Lumina"}},
            },
        }
    }
    client = await llmmc(config)
    r = await client.get("/readyz")
    if r.status == 503:  # (a very fast machine may have loaded it already)
        reasons = (await r.json())["reasons"]
        assert any("provider 'local' is loading its model" in x for x in reasons), reasons
        assert path not in llama_cpp._models
    for _ in range(600):
        r = await client.get("/readyz")
        if r.status == 200:
            break
        await asyncio.sleep(0.1)
    assert r.status == 200
    assert path in llama_cpp._models  # ready means loaded: the first turn loads nothing


async def test_no_preload_when_switched_off(llmmc):
    config = {
        "plugins": {
            "enabled": ["chat"],
            "chat": {
                "default_provider": "local",
                "providers": {"local": {"type": "llama_cpp", "preload": False}},
                "characters": {"lumina": {"name": "Lumina"}},
            },
        }
    }
    client = await llmmc(config)
    assert (await client.get("/readyz")).status == 200
    assert client.plugin("chat").service.providers.providers["local"]._preload is None
