"""Each embedder behind the one interface; the openai one against the fake server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builtin_plugins.memory.embedders.hashing import HashingEmbedder
from builtin_plugins.memory.embedders.local import (
    LocalEmbedder,
    LocalModelMissing,
    local_model_available,
    torch_installed,
)
from builtin_plugins.memory.embedders.openai import OpenAIEmbedder
from sdk import errors
from tests.fakes.openai_server import FakeOpenAI, fake_embedding

from .conftest import BASE


async def test_hashing_is_deterministic_normalised_and_batched() -> None:
    emb = HashingEmbedder(dim=256)
    try:
        texts = [f"text number {i} about gardening" for i in range(300)] + [""]
        a = await emb.embed(texts)
        b = await asyncio.gather(*(emb.embed([t]) for t in texts[:50]))
        assert a.shape == (301, 256) and a.dtype == np.float32
        assert np.allclose(np.linalg.norm(a[:300], axis=1), 1.0, atol=1e-5)
        assert np.allclose(a[:50], np.concatenate(b))
        assert not a[300].any()  # an empty text is the zero vector, not NaN
        near = float(a[0] @ (await emb.embed_one("text number 0 about the garden")))
        far = float(a[0] @ (await emb.embed_one("quarterly tax filing deadline")))
        assert near > far
    finally:
        await emb.close()


async def test_openai_embedder_against_fake() -> None:
    async with FakeOpenAI(api_key="sk-test") as fake:
        emb = OpenAIEmbedder(fake.url, "text-embedding-3-small", "sk-test", timeout=5)
        try:
            emb.max_batch = 4
            texts = [f"sentence {i}" for i in range(10)]
            vectors = await emb.embed(texts)
            assert vectors.shape == (10, 384)
            assert np.allclose(
                vectors[3], np.asarray(fake_embedding("sentence 3"), dtype=np.float32), atol=1e-6
            )
            assert [len(r["input"]) for r in fake.requests] == [4, 4, 2]
            assert fake.requests[0]["model"] == "text-embedding-3-small"
            assert fake.headers[0]["Authorization"] == "Bearer sk-test"
            # Upstream failures become Problems (502), never a 500.
            fake.fail_next(500)
            with pytest.raises(errors.BadGateway):
                await emb.embed(["x"])
            # The batcher keeps working after a failure.
            assert (await emb.embed(["y"])).shape == (1, 384)
        finally:
            await emb.close()
        bad = OpenAIEmbedder(fake.url, "m", "wrong-key", timeout=5)
        try:
            with pytest.raises(errors.BadGateway):
                await bad.embed(["x"])
        finally:
            await bad.close()
        fake.delay = 2
        slow = OpenAIEmbedder(fake.url, "m", "sk-test", timeout=0.3)
        try:
            with pytest.raises(errors.GatewayTimeout):
                await slow.embed(["x"])
        finally:
            await slow.close()
    gone = OpenAIEmbedder(f"http://127.0.0.1:{fake.port}/v1", "m", timeout=2)
    try:
        with pytest.raises(errors.BadGateway):
            await gone.embed(["x"])
    finally:
        await gone.close()


async def test_openai_embedder_through_the_plugin(llmmc: Any) -> None:
    async with FakeOpenAI() as fake:
        client = await llmmc(
            {
                "plugins": {
                    "enabled": ["memory"],
                    "memory": {
                        "embedder": "openai",
                        "base_url": fake.url,
                        "model": "text-embedding-3-small",
                    },
                }
            }
        )
        h = client.auth_headers("u1")
        r = await client.post(BASE, json={"content": "the user plays the cello"}, headers=h)
        assert r.status == 201
        await client.post(BASE, json={"content": "tax forms are due in April"}, headers=h)
        r = await client.post(f"{BASE}/search", json={"query": "cello player"}, headers=h)
        results = (await r.json())["results"]
        assert results[0]["content"] == "the user plays the cello"
        stats = await (await client.get(f"{BASE}/stats", headers=h)).json()
        assert (
            stats["embedder"]["model"] == "openai:text-embedding-3-small"
            and stats["embedder"]["dim"] == 384
        )
        assert any(r.get("input") == ["cello player"] for r in fake.requests)
        # The upstream failing: 502 Problem, not 500.
        fake.fail_next(503, times=3)
        r = await client.post(f"{BASE}/search", json={"query": "cello"}, headers=h)
        assert r.status == 502
        assert (await r.json())["code"] == "EMBEDDING_UPSTREAM_ERROR"


async def _stored_then_switched(
    tmp_path: Any, before: dict[str, Any], after: dict[str, Any]
) -> Any:
    """A kernel whose memory plugin has settings ``before`` stores one memory of user "u"
    and stops; a second one on the same data starts with ``after`` and finishes its
    warm-up. Returns the second (the caller closes it)."""
    from kernel.testing import start_kernel

    data = tmp_path / "shared"

    def config(memory: dict[str, Any]) -> dict[str, Any]:
        return {"plugins": {"enabled": ["memory"], "memory": {"redis_url": "none", **memory}}}

    first = await start_kernel(config(before), data_dir=data)
    try:
        r = await first.post(
            BASE, json={"content": "the user plays the cello"}, headers=first.auth_headers("u")
        )
        assert r.status == 201
    finally:
        await first.close()
    second = await start_kernel(config(after), data_dir=data)
    try:
        await second.plugin("memory").idle()
    except BaseException:
        await second.close()
        raise
    return second


async def test_switching_embedder_reembeds_existing_memories(tmp_path: Any) -> None:
    """Vectors of two models are never compared: after a switch, existing memories are
    embedded again for the new model in the background."""
    second = await _stored_then_switched(
        tmp_path,
        {"embedder": "hashing", "hashing_dim": 512},
        {"embedder": "hashing", "hashing_dim": 256},
    )
    try:
        stats = await (await second.get(f"{BASE}/stats", headers=second.auth_headers("u"))).json()
        assert stats["embedder"]["dim"] == 256 and stats["embedded"] == 1
        r = await second.post(
            f"{BASE}/search", json={"query": "cello"}, headers=second.auth_headers("u")
        )
        assert (await r.json())["results"][0]["content"] == "the user plays the cello"
    finally:
        await second.close()


@pytest.mark.model
async def test_local_embedder_minilm() -> None:
    ok, why = local_model_available()
    if not ok:
        pytest.skip(f"local model not installed: {why}")
    emb = LocalEmbedder()
    try:
        assert not emb.loaded  # (what the memory plugin reports as not ready yet)
        await emb.load()
        assert emb.loaded
        vectors = await emb.embed(
            [
                "The cat sits on the mat.",
                "A kitten is resting on the rug.",
                "Stock markets fell sharply today.",
            ]
        )
        assert vectors.shape == (3, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2
        assert emb.model_dir is not None
    finally:
        await emb.close()


@pytest.mark.model
async def test_local_embedder_runs_on_onnx_runtime_with_torchs_vectors() -> None:
    """The fast runtime must not move the vector space: stored vectors (maybe embedded by
    torch before an upgrade) and new queries are compared with each other. (Without torch,
    test_local_embedder_vectors compares with torch's vectors stored in the test.)"""
    ok, why = local_model_available()
    if not ok:
        pytest.skip(f"local model not installed: {why}")
    if not torch_installed():
        pytest.skip("torch and sentence-transformers are not installed (the torch extra)")
    fast, slow = LocalEmbedder(precision="float32"), LocalEmbedder(runtime="torch")
    alone = LocalEmbedder(precision="float32")
    texts = [
        "My name is Ada and I live in Lyon.",
        "クラリス、説明して",
        "ok",
        "A longer message, to be padded against the short ones in the same batch: "
        "what should I cook tonight with leeks, potatoes and a little cream?",
        "Longer than the model's 256 tokens, so cut: " + "jazz, Bill Evans, trains " * 120,
    ]
    try:
        assert fast.describe()["runtime"] == "not loaded yet"  # (what /health says at start)
        ours, theirs = await fast.embed(texts), await slow.embed(texts)
        assert fast.describe()["runtime"] == "onnxruntime"
        assert slow.describe()["runtime"] == "torch"
        assert ours.shape == theirs.shape == (5, 384)
        assert np.all((ours * theirs).sum(axis=1) > 0.9999)
        # alone (no padding, another embedder: no cached vector) gives the batch's vector
        assert float((await alone.embed(texts[:1]))[0] @ ours[0]) > 0.9999
    finally:
        await fast.close()
        await slow.close()
        await alone.close()


@pytest.mark.model
async def test_the_default_int8_copy_is_its_own_vector_space_near_torchs() -> None:
    """int8 (the default) names a vector space of its own, so vectors of the float model
    are never compared with its own; it stays near them, and a text's vector does not
    depend on the texts embedded with it (dynamic quantisation scales a whole call)."""
    ok, why = local_model_available()
    if not ok:
        pytest.skip(f"local model not installed: {why}")
    # (the float32 graph gives torch's vectors: test_local_embedder_vectors)
    quick, exact, alone = LocalEmbedder(), LocalEmbedder(precision="float32"), LocalEmbedder()
    texts = [
        "My name is Ada and I live in Lyon.",
        "クラリス、説明して",
        "ok",
        "Longer than the model's 256 tokens, so cut: " + "jazz, Bill Evans, trains " * 120,
        "The cat sits on the mat.",
        "A kitten is resting on the rug.",
        "Stock markets fell sharply today.",
    ]
    try:
        ours, theirs = await quick.embed(texts), await exact.embed(texts)
        assert quick.describe()["precision"] == "int8"
        assert quick.model_id == "all-MiniLM-L6-v2-int8" != exact.model_id
        assert np.all((ours * theirs).sum(axis=1) > 0.95)
        assert float(ours[4] @ ours[5]) > float(ours[4] @ ours[6]) + 0.2
        # (a foreground call of several texts runs two at a time, on two threads: each
        # text still alone, so its vector is the one it has alone)
        for i, text in enumerate(texts):  # one by one, in another embedder (no cache)
            assert float((await alone.embed([text]))[0] @ ours[i]) > 0.99999
        # the background lane (its own thread) gives the foreground's vectors
        behind = await LocalEmbedder().embed(texts, background=True)
        assert np.all((behind * ours).sum(axis=1) > 0.99999)
    finally:
        await quick.close()
        await exact.close()
        await alone.close()


@pytest.mark.model
async def test_memories_of_the_float_model_are_embedded_again_for_int8(tmp_path: Any) -> None:
    """An upgrade from float32 vectors: at start, the warm-up embeds every memory for the
    int8 copy, and search finds them; the two spaces are never mixed."""
    ok, why = local_model_available()
    if not ok:
        pytest.skip(f"local model not installed: {why}")
    second = await _stored_then_switched(
        tmp_path,
        {"embedder": "local", "local_precision": "float32"},
        {"embedder": "local", "local_precision": "int8"},
    )
    try:
        h = second.auth_headers("u")
        stats = await (await second.get(f"{BASE}/stats", headers=h)).json()
        assert stats["embedder"]["model"] == "all-MiniLM-L6-v2-int8"
        assert stats["embedded"] == 1
        r = await second.post(f"{BASE}/search", json={"query": "what instrument?"}, headers=h)
        assert (await r.json())["results"][0]["content"] == "the user plays the cello"
    finally:
        await second.close()


def _cls_pooled_copy(source: Path, target_dir: Path) -> None:
    """The packaged model folder (weights linked, not copied) with CLS pooling."""
    for item in source.rglob("*"):
        target = target_dir / item.relative_to(source)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif item.name == "config.json" and item.parent.name.endswith("Pooling"):
            config = json.loads(item.read_text())
            for key in list(config):
                if key.startswith("pooling_mode_"):
                    config[key] = key == "pooling_mode_cls_token"
            target.write_text(json.dumps(config))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(item)


@pytest.mark.model
async def test_a_model_that_is_not_mean_pooled_needs_torch(tmp_path: Any) -> None:
    """CLS pooling is not what the ONNX path computes: such a model runs on torch when it
    is installed, and is refused (never run wrongly) when it is not."""
    ok, where = local_model_available()
    if not ok:
        pytest.skip(f"local model not installed: {where}")
    _cls_pooled_copy(Path(where), tmp_path)
    with pytest.raises(LocalModelMissing):
        await LocalEmbedder(str(tmp_path), runtime="onnxruntime").load()
    emb = LocalEmbedder(str(tmp_path))
    try:
        if not torch_installed():
            with pytest.raises(LocalModelMissing, match="torch"):
                await emb.load()
            assert not emb.loaded and emb.describe()["runtime"] == "not loaded yet"
            return
        vector = (await emb.embed(["hello there"]))[0]
        assert emb.describe()["runtime"] == "torch"
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    finally:
        await emb.close()
