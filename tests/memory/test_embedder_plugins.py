"""Embedders are a plugin contract (sdk.Embedder, the register_embedders hook): the memory
plugin stores and searches with a type a third-party plugin registers, named by
``[plugins.memory] embedder`` and set up from ``embedder_settings``; an unknown type, or
one that cannot be built, makes memory unavailable (503 naming why) and a plugin that
registers something else is named in the log while the others go on. The example
distribution (examples/llmmultichat-bow) is installed with pip, found through its entry
point, and used the same way."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from sdk import Embedder, Plugin, hookimpl
from sdk.embedder import collect_embedder_classes, embedder_class_problem
from tests.serverproc import ROOT

from .conftest import BASE, memory_plugin

EMBEDDED: list[str] = []


class VowelEmbedder(Embedder):
    """Counts of each vowel: deterministic, and unlike any built-in's vectors."""

    type = "vowels"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.dim = 5
        self.model_id = f"vowels-{self.settings.get('flavour', 'plain')}"
        if self.settings.get("flavour") == "broken":
            raise ValueError("flavour 'broken' cannot work")

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        EMBEDDED.extend(texts)

        def count() -> np.ndarray:
            return np.array(
                [[t.lower().count(v) + 0.01 for v in "aeiou"] for t in texts], dtype=np.float32
            )

        return await self.run_blocking(count)


class NotAnEmbedder:
    type = "nothing"


class VowelPlugin(Plugin):
    name = "vowels"
    config_schema = {"type": "object"}

    @hookimpl
    def register_embedders(self) -> list[Any]:
        return [VowelEmbedder]


class ConfusedPlugin(Plugin):
    name = "confused"
    config_schema = {"type": "object"}

    @hookimpl
    def register_embedders(self) -> Any:
        return [NotAnEmbedder, VowelEmbedder]  # (the second: a type vowels registered)


async def test_memory_uses_an_embedder_a_plugin_registers(llmmc: Any) -> None:
    EMBEDDED.clear()
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory", "vowels"],
                "memory": {
                    "embedder": "vowels",
                    "embedder_settings": {"flavour": "salty"},
                    "redis_url": "none",
                },
            }
        },
        plugins={"vowels": VowelPlugin},
    )
    h = client.auth_headers("u1")
    for text in ("aaaa aaa", "uuu uuuu", "ooo"):
        r = await client.post(BASE, json={"content": text}, headers=h)
        assert r.status == 201, await r.text()
    r = await client.post(
        f"{BASE}/search", json={"query": "a a a", "mode": "semantic", "top_k": 3}, headers=h
    )
    results = (await r.json())["results"]
    assert results[0]["content"] == "aaaa aaa" and results[0]["score"] > 0.99
    assert "aaaa aaa" in EMBEDDED and "a a a" in EMBEDDED  # its vectors, not a built-in's
    plugin = memory_plugin(client)
    assert isinstance(plugin.embedder, VowelEmbedder)
    r = await client.get(f"{BASE}/stats", headers=h)
    stats = await r.json()
    assert stats["embedder"]["embedder"] == "vowels"
    assert stats["embedder"]["model"] == "vowels-salty" and stats["embedder"]["dim"] == 5
    assert stats["embedded"] == 3
    r = await client.get("/health")
    assert (await r.json())["plugins"]["memory"]["status"] == "ok"


@pytest.mark.parametrize(
    ("embedder", "settings", "why"),
    [
        ("nonesuch", {}, "no embedder type 'nonesuch' is registered (known: "),
        ("vowels", {"flavour": "broken"}, "flavour 'broken' cannot work"),
    ],
)
async def test_an_embedder_that_cannot_serve_makes_memory_unavailable(
    llmmc: Any, embedder: str, settings: dict[str, Any], why: str
) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory", "vowels"],
                "memory": {
                    "embedder": embedder,
                    "embedder_settings": settings,
                    "redis_url": "none",
                },
            }
        },
        plugins={"vowels": VowelPlugin},
    )
    r = await client.post(BASE, json={"content": "hello"}, headers=client.auth_headers("u1"))
    body = await r.json()
    assert r.status == 503 and why in body["detail"], body
    if embedder == "nonesuch":
        assert "hashing, local, openai, vowels" in body["detail"]
    r = await client.get("/health")
    memory = (await r.json())["plugins"]["memory"]
    assert memory["status"] == "unavailable" and why in memory["detail"]


async def test_a_plugin_registering_something_else_is_named(llmmc: Any, caplog: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory", "vowels", "confused"],
                "memory": {"embedder": "vowels", "redis_url": "none"},
            }
        },
        plugins={"vowels": VowelPlugin, "confused": ConfusedPlugin},
    )
    r = await client.post(BASE, json={"content": "aeiou"}, headers=client.auth_headers("u1"))
    assert r.status == 201
    logged = caplog.text
    assert "register_embedders of plugin 'confused'" in logged
    assert "is not a subclass of sdk.Embedder" in logged
    # (whichever of the two answered second is named)
    assert "registers embedder type 'vowels', which plugin" in logged


def test_what_makes_an_embedder_class() -> None:
    assert embedder_class_problem(VowelEmbedder) is None
    assert "not a subclass" in str(embedder_class_problem(NotAnEmbedder))
    assert "sets no embedder type" in str(embedder_class_problem(Embedder))

    class Lazy(Embedder):
        type = "lazy"

    assert "does not implement _embed_batch" in str(embedder_class_problem(Lazy))
    types, problems = collect_embedder_classes([("a", [VowelEmbedder]), ("b", "nope")])
    assert types == {"vowels": VowelEmbedder} and "returned str" in problems[0]


PIP = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]


@pytest.fixture(scope="module")
def bow_installed() -> Any:
    subprocess.run([*PIP, str(ROOT / "examples" / "llmmultichat-bow")], check=True, timeout=300)
    yield
    subprocess.run(
        [sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", "llmmultichat-bow"],
        check=False,
        timeout=120,
    )


async def test_the_example_embedder_distribution_is_found_and_used(
    bow_installed: Any, llmmc: Any
) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory", "bow"],
                "memory": {"embedder": "bow", "redis_url": "none"},
            }
        }
    )
    h = client.auth_headers("ada")
    r = await client.post(BASE, json={"content": "Ada keeps bees on the roof"}, headers=h)
    assert r.status == 201, await r.text()
    r = await client.post(f"{BASE}/search", json={"query": "bees"}, headers=h)
    assert (await r.json())["results"][0]["content"] == "Ada keeps bees on the roof"
    r = await client.get(f"{BASE}/stats", headers=h)
    assert (await r.json())["embedder"]["model"] == "bow-64"
