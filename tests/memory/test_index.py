"""The in-process vector index gives exactly the SQL path's answers and stays in step."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from builtin_plugins.memory.vectors.index import VectorIndex

from .conftest import BASE, memory_plugin


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


async def test_entry_filters_and_order() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 50)
    ids = [f"m{i}" for i in range(50)]
    tiers = ["long_term" if i % 2 else "knowledge" for i in range(50)]
    sessions = [f"s{i % 3}" if i % 5 else None for i in range(50)]

    async def loader() -> Any:
        return ids, tiers, sessions, vectors

    index = VectorIndex(min_vectors=10, max_bytes=1 << 20)
    assert await index.ensure("u", "m", 5, loader) is None  # too few vectors: SQL path
    entry = await index.ensure("u", "m", 50, loader)
    assert entry is not None
    q = vectors[7]
    exact = np.argsort(-(vectors @ q))
    assert [h[0] for h in entry.search(q, 5, None, None, None, None)] == [ids[i] for i in exact[:5]]
    hits = entry.search(q, 50, ["knowledge"], None, None, None)
    assert hits and all(tiers[int(h[0][1:])] == "knowledge" for h in hits)
    hits = entry.search(q, 50, None, "s1", None, None)
    assert hits and all(sessions[int(h[0][1:])] == "s1" for h in hits)
    hits = entry.search(q, 50, None, None, ("s1", ["long_term"]), None)
    assert all(
        not (sessions[int(h[0][1:])] == "s1" and tiers[int(h[0][1:])] == "long_term") for h in hits
    )
    assert entry.search(q, 50, None, "unknown-session", None, None) == []
    assert all(s >= 0.2 for _, s in entry.search(q, 50, None, None, None, 0.2))
    # Removing and re-adding.
    index.on_remove("u", ["m7"])
    assert "m7" not in [h[0] for h in entry.search(q, 50, None, None, None, None)]
    index.on_add("u", "m", ["m7"], ["long_term"], [None], vectors[7:8])
    assert entry.search(q, 1, None, None, None, None)[0][0] == "m7"
    index.drop_user("u")
    assert not index.has("u", "m")


async def test_an_entry_grows_with_the_memories_kept_not_with_every_turn_ever() -> None:
    """Chat turns are recorded and trimmed all the time: after 2 000 turns of which the
    newest 12 are kept, the user's entry holds about what is kept and finds exactly
    what a fresh entry of the kept vectors finds."""
    rng = np.random.default_rng(4)
    index = VectorIndex(min_vectors=1, max_bytes=1 << 30)
    first = unit(rng, 2)

    async def loader() -> Any:
        return ["t0", "t1"], ["short_term"] * 2, ["s"] * 2, first

    assert await index.ensure("u", "m", 2, loader) is not None
    kept: dict[str, np.ndarray] = {"t0": first[0], "t1": first[1]}
    for i in range(2, 2000, 2):
        pair = unit(rng, 2)
        new_ids = [f"t{i}", f"t{i + 1}"]
        index.on_add("u", "m", new_ids, ["short_term"] * 2, ["s"] * 2, pair)
        kept.update(zip(new_ids, pair, strict=True))
        gone = list(kept)[:-12]
        for memory_id in gone:
            del kept[memory_id]
        index.on_remove("u", gone)
    entry = await index.ensure("u", "m", 12, loader)
    assert entry is not None
    assert entry.alive_count == 12
    assert entry.n < 256 and entry.matrix.shape[0] <= 512
    assert index.nbytes() < 512 * 16 * 4 * 2
    ids = list(kept)
    matrix = np.stack([kept[i] for i in ids])
    for q in unit(rng, 5):
        order = np.argsort(-(matrix @ q))
        found = entry.search(q, 5, None, None, None, None)
        assert [h[0] for h in found] == [ids[i] for i in order[:5]]


async def test_changes_during_a_load_are_replayed() -> None:
    rng = np.random.default_rng(2)
    vectors = unit(rng, 20)
    gate = asyncio.Event()

    async def slow_loader() -> Any:
        await gate.wait()
        return [f"m{i}" for i in range(20)], ["long_term"] * 20, [None] * 20, vectors

    index = VectorIndex(min_vectors=1, max_bytes=1 << 20)
    task = asyncio.create_task(index.ensure("u", "m", 20, slow_loader))
    await asyncio.sleep(0)
    index.on_remove("u", ["m3"])
    index.on_add("u", "m", ["new"], ["long_term"], [None], vectors[3:4])
    gate.set()
    entry = await task
    found = [h[0] for h in entry.search(vectors[3], 2, None, None, None, None)]
    assert found[0] == "new" and "m3" not in found


async def test_eviction_by_memory_budget() -> None:
    rng = np.random.default_rng(3)

    def loader_for(n: int) -> Any:
        async def load() -> Any:
            return [f"m{i}" for i in range(n)], ["long_term"] * n, [None] * n, unit(rng, n, 64)

        return load

    index = VectorIndex(min_vectors=1, max_bytes=300 * 1024)
    await index.ensure("a", "m", 1000, loader_for(1000))
    await index.ensure("b", "m", 1000, loader_for(1000))
    assert index.has("b", "m") and not index.has("a", "m")
    assert index.nbytes() <= 300 * 1024


async def test_index_and_sql_agree_through_the_api(llmmc: Any) -> None:
    contents = [
        f"note {i}: the {w} of {v}"
        for i, (w, v) in enumerate(
            (w, v)
            for w in ("colour", "price", "weight", "owner", "age")
            for v in ("the boat", "a lamp", "my bike", "the house")
        )
    ]
    answers = {}
    for mode, cfg in (("sql", {"index_max_mb": 0}), ("index", {"index_min_vectors": 1})):
        client = await llmmc(
            {"plugins": {"enabled": ["memory"], "memory": {"embedder": "hashing", **cfg}}}
        )
        h = client.auth_headers("u")
        for i, c in enumerate(contents):
            await client.post(BASE, json={"content": c, "session_id": f"s{i % 2}"}, headers=h)
        got = []
        for query in ("price of the boat", "who owns my bike", "lamp weight"):
            for extra in ({}, {"session_id": "s1"}, {"min_score": 0.3}):
                r = await client.post(
                    f"{BASE}/search", json={"query": query, "top_k": 4, **extra}, headers=h
                )
                got.append(
                    [(x["content"], round(x["score"], 4)) for x in (await r.json())["results"]]
                )
        answers[mode] = got
        plugin = memory_plugin(client)
        assert (plugin.index.has("u", plugin.embedder.model_id)) == (mode == "index")
    assert answers["sql"] == answers["index"]


def clustered(rng: np.random.Generator, n: int, k: int, dim: int = 32) -> np.ndarray:
    centres = unit(rng, k, dim)
    x = centres[rng.integers(0, k, n)] + 0.25 * rng.standard_normal((n, dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


async def test_ivf_recall_tail_removals_and_filters() -> None:
    rng = np.random.default_rng(5)
    vectors = clustered(rng, 6000, 60)
    ids = [f"m{i}" for i in range(6000)]
    tiers = ["knowledge" if i % 3 == 0 else "long_term" for i in range(6000)]

    async def loader() -> Any:
        return ids, tiers, [None] * 6000, vectors

    index = VectorIndex(
        min_vectors=1, max_bytes=1 << 30, ivf_min_vectors=5000, ivf_probe_fraction=0.2
    )
    entry = await index.ensure("u", "m", 6000, loader)
    queries = clustered(rng, 50, 60)
    exact = [[h[0] for h in entry.search(q, 5, None, None, None, None)] for q in queries]
    index.maybe_build_ivf(entry)
    await index.wait_builds()
    assert entry.ivf is not None and entry.ivf.nprobe < entry.ivf.centroids.shape[0]
    approx = [[h[0] for h in entry.search(q, 5, None, None, None, None)] for q in queries]
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9, recall
    # Rows added after the build (the tail) are searched exactly; removed rows never show.
    index.on_add("u", "m", ["late"], ["long_term"], [None], queries[0:1])
    assert entry.search(queries[0], 1, None, None, None, None)[0][0] == "late"
    top = approx[1][0]
    index.on_remove("u", [top])
    assert top not in [h[0] for h in entry.search(queries[1], 5, None, None, None, None)]
    # Filters apply to IVF candidates too.
    hits = entry.search(queries[2], 10, ["knowledge"], None, None, None)
    assert hits and all(int(h[0][1:]) % 3 == 0 for h in hits)


async def test_ivf_through_the_api(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {
                    "embedder": "hashing",
                    "index_min_vectors": 1,
                    "index_ivf_min_vectors": 1000,
                    "index_ivf_probe_fraction": 0.25,
                    "knowledge_chunk_chars": 100,
                    "knowledge_chunk_overlap": 0,
                },
            }
        }
    )
    h = client.auth_headers("u")
    text = "\n\n".join(
        f"Ledger entry {i}: crate {i} of item{i} shipped to port{i % 37}." for i in range(1100)
    )
    r = await client.post(BASE, json={"content": text, "tier": "knowledge"}, headers=h)
    assert r.status == 201
    plugin = memory_plugin(client)
    r = await client.post(f"{BASE}/search", json={"query": "crate 77 of item77"}, headers=h)
    await plugin.index.wait_builds()
    entry = plugin.index._entries[("u", plugin.embedder.model_id)]
    assert entry.ivf is not None
    r = await client.post(
        f"{BASE}/search", json={"query": "crate 777 of item777", "top_k": 3}, headers=h
    )
    results = (await r.json())["results"]
    assert any("item777 " in x["content"] for x in results)


async def test_float16_prefilter_matches_the_full_float32_scan() -> None:
    """Big entries are scanned in float16 first and re-scored exactly: the answers (ids,
    order, scores and filters) must be those of the plain float32 scan. The float16 scan
    runs on torch, which the default install no longer has (LLMMC_TORCH=1 make setup)."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    n, dim = 3000, 384
    # clustered like real embeddings, so many rows sit close to the cut
    centres = unit(rng, 30, dim)
    vectors = centres[rng.integers(0, 30, n)] + 0.05 * rng.standard_normal((n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"m{i}" for i in range(n)]
    tiers = ["long_term" if i % 3 else "knowledge" for i in range(n)]
    sessions = [f"s{i % 4}" for i in range(n)]

    async def loader() -> Any:
        return ids, tiers, sessions, vectors

    plain = await VectorIndex(min_vectors=1, max_bytes=1 << 30, half_min_vectors=0).ensure(
        "u", "m", n, loader
    )
    halved = await VectorIndex(min_vectors=1, max_bytes=1 << 30, half_min_vectors=1000).ensure(
        "u", "m", n, loader
    )
    assert plain is not None and plain.half is None
    assert halved is not None and halved.half is not None
    for q in list(vectors[:20]) + list(unit(rng, 20, dim)):
        for args in [
            (5, None, None, None, None),
            (20, ["knowledge"], None, None, None),
            (10, None, "s2", None, 0.5),
            (10, None, None, ("s1", ["long_term"]), None),
        ]:
            want = plain.search(q, *args)
            got = halved.search(q, *args)
            assert [m for m, _ in got] == [m for m, _ in want]
            assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-6)
    # kept in step: a removed row disappears, an added one is found at once
    index = VectorIndex(min_vectors=1, max_bytes=1 << 30, half_min_vectors=1000)
    entry = await index.ensure("u", "m", n, loader)
    index.on_remove("u", ["m0"])
    assert "m0" not in [m for m, _ in entry.search(vectors[0], 5, None, None, None, None)]
    fresh = unit(rng, 1, dim)
    index.on_add("u", "m", ["new"], ["long_term"], [None], fresh)
    assert entry.search(fresh[0], 1, None, None, None, None)[0][0] == "new"
