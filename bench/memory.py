"""Memory store benchmark: one user's store filled with 10k, 100k (and, with --full,
1M) memories of random unit vectors (384 dimensions, like all-MiniLM-L6-v2) and
sentences of twelve words drawn from a 5,000-word vocabulary with Zipf frequencies (for
the keyword index); at each size it reports search latency p50/p99 of the plugin's
search path (the in-process index for a user that big, then the candidates read back
from DuckDB and ranked), of the keyword search (BM25 over ``memory_terms`` in SQL), of
the hybrid search's store work (both at once, then the rows of the fused top), of the
plain DuckDB path (``array_cosine_similarity`` in SQL) for comparison, the time to load
the index from DuckDB, and insert throughput (bulk, as knowledge chunks and re-embedding
use it, and one at a time, as the REST API and chat turns use it). Embedding the query
is not included (bench/locomo.py measures the whole route).

    .venv/bin/python bench/memory.py                 # 10k and 100k
    .venv/bin/python bench/memory.py --full          # 10k, 100k and 1M
    .venv/bin/python bench/memory.py --sizes 5000 --queries 50

Runs against a DuckDB file in a temporary folder (or --data-dir), through the same
database layer the kernel gives plugins. Prints a table; --json writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builtin_plugins.memory.domain import Memory, new_id, utcnow
from builtin_plugins.memory.keywords import fuse
from builtin_plugins.memory.service import rank
from builtin_plugins.memory.store import MIGRATIONS, MemoryStore
from builtin_plugins.memory.vectors.index import VectorIndex, build_ivf
from builtin_plugins.memory.vectors.search import VectorSearch
from builtin_plugins.storage.engines import DuckDatabase
from builtin_plugins.storage.migrations import migrate

DIM = 384
MODEL = "bench-random-384"
USER = "bench-user"
TIERS = ("long_term", "knowledge", "mid_term", "short_term")


def memories(n: int, start: int) -> list[Memory]:
    now = utcnow()
    out = []
    for i in range(start, start + n):
        out.append(
            Memory(
                memory_id=new_id(),
                user_id=USER,
                tier=TIERS[i % 10 % 4] if i % 10 < 4 else "long_term",
                session_id=f"s{i % 500}",
                content=sentence(i),
                metadata={},
                importance=0.5,
                fact_key=None,
                parent_id=None,
                source_message_id=None,
                searchable=True,
                created_at=now,
                updated_at=now,
            )
        )
    return out


VOCAB = [f"w{i}" for i in range(5000)]
_ZIPF = 1 / np.arange(1, len(VOCAB) + 1)
_ZIPF /= _ZIPF.sum()


def sentence(i: int) -> str:
    rng = np.random.default_rng(i)
    return " ".join(VOCAB[j] for j in rng.choice(len(VOCAB), 12, p=_ZIPF))


def query_words(rng: np.random.Generator) -> list[str]:
    return [VOCAB[j] for j in rng.choice(len(VOCAB), int(rng.integers(3, 7)), p=_ZIPF)]


CENTRES: np.ndarray | None = None  # --clustered: topic centres the vectors gather around


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    if CENTRES is not None:
        # Like sentence embeddings: each vector near one of many topics (cosine ~0.6-0.7).
        x = CENTRES[rng.integers(0, len(CENTRES), n)] + 0.06 * x
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, p))


async def timed_searches(
    vectors: VectorSearch, qs: np.ndarray, found: list[list[str]] | None = None, **kw: object
) -> list[float]:
    for q in qs[:5]:  # warm up
        await vectors.search(USER, q, MODEL, limit=20, **kw)
    lat = []
    for q in qs[5:]:
        t0 = time.perf_counter()
        top = rank(await vectors.search(USER, q, MODEL, limit=20, **kw), 5)
        lat.append(time.perf_counter() - t0)
        if found is not None:
            found.append([m.memory_id for m in top])
    return lat


async def timed_keyword(
    vectors: VectorSearch, rng: np.random.Generator, n: int, qs: np.ndarray | None = None
) -> list[float]:
    """Keyword searches alone, or (``qs``) hybrid: the vector and keyword searches at
    once, then the rows of the fused top (what the service does after the embedding)."""
    store = vectors.store
    lat = []
    for i in range(n + 5):
        words = query_words(rng)
        t0 = time.perf_counter()
        if qs is None:
            await store.keyword_search(USER, words, limit=50)
        else:
            dense, sparse = await asyncio.gather(
                vectors.search(USER, qs[i % len(qs)], MODEL, limit=50, rows=False),
                store.keyword_search(USER, words, limit=50),
            )
            fused = fuse([[(m.memory_id, m.score or 0.0) for m in dense], sparse])
            # the rows of the fused top (top_k * 2 + 8 for top_k 5, as the service reads)
            await store.get_many(USER, sorted(fused, key=lambda k: fused[k], reverse=True)[:18])
        if i >= 5:
            lat.append(time.perf_counter() - t0)
    return lat


async def run(
    sizes: list[int], queries: int, data_dir: Path, batch: int, sql_max: int, ivf: float
) -> list[dict]:
    db = DuckDatabase(data_dir / "bench.duckdb")
    await db.open()
    index = VectorIndex(min_vectors=1, max_bytes=8 * 1024**3)
    # the plugin's path: the vector index and the keyword postings in process
    store = MemoryStore(db, keyword_bytes=1024**3)
    vectors = VectorSearch(store, index)
    sql_store = MemoryStore(db)  # cosine and BM25 in DuckDB only
    sql_vectors = VectorSearch(sql_store, None)
    await migrate(db, [("memory", MIGRATIONS)])
    await store.load_dims()
    await sql_store.load_dims()
    await store.ensure_dim(DIM)
    await sql_store.ensure_dim(DIM)
    rng = np.random.default_rng(42)
    have = 0
    results = []
    for size in sizes:
        t0 = time.perf_counter()
        added = 0
        while have < size:
            n = min(batch, size - have)
            await store.insert(memories(n, have), unit(rng, n), MODEL)
            have += n
            added += n
        bulk_rate = added / (time.perf_counter() - t0) if added else float("nan")
        # One at a time (the REST path): 200 single inserts.
        singles = 200
        t0 = time.perf_counter()
        for i in range(singles):
            await store.insert(memories(1, have + i), unit(rng, 1), MODEL)
        single_rate = singles / (time.perf_counter() - t0)
        have += singles
        # Loading the index from DuckDB (first search of a big user after a restart).
        fresh_store = MemoryStore(db)
        fresh = VectorSearch(fresh_store, VectorIndex(min_vectors=1, max_bytes=8 * 1024**3))
        await fresh_store.load_dims()
        t0 = time.perf_counter()
        await fresh.search(USER, unit(rng, 1)[0], MODEL, limit=20)
        load_s = time.perf_counter() - t0
        del fresh, fresh_store
        qs = unit(rng, queries + 5)
        exact: list[list[str]] = []
        lat = await timed_searches(vectors, qs, exact)
        lat_tier = await timed_searches(
            vectors, qs[: 5 + max(10, queries // 2)], tiers=["long_term"]
        )
        t0 = time.perf_counter()
        await store.keyword_search(USER, ["w1"], limit=1)  # loads the postings
        kw_load_s = time.perf_counter() - t0
        lat_kw = await timed_keyword(vectors, rng, queries)
        lat_hybrid = await timed_keyword(vectors, rng, queries, qs)
        row: dict = {
            "memories": have,
            "index_search_min_ms": round(min(lat) * 1000, 2),
            "index_search_p50_ms": round(pct(lat, 50), 2),
            "index_search_p99_ms": round(pct(lat, 99), 2),
            "index_tier_filter_p50_ms": round(pct(lat_tier, 50), 2),
            "index_tier_filter_p99_ms": round(pct(lat_tier, 99), 2),
            "index_load_s": round(load_s, 2),
            "keyword_load_s": round(kw_load_s, 2),
            "keyword_search_p50_ms": round(pct(lat_kw, 50), 2),
            "keyword_search_p99_ms": round(pct(lat_kw, 99), 2),
            "hybrid_search_p50_ms": round(pct(lat_hybrid, 50), 2),
            "hybrid_search_p99_ms": round(pct(lat_hybrid, 99), 2),
            "bulk_insert_per_s": round(bulk_rate, 1),
            "single_insert_per_s": round(single_rate, 1),
            "queries": queries,
        }
        sql_note = ""
        if have <= sql_max:
            sql_lat = await timed_searches(sql_vectors, qs[: 5 + max(10, queries // 4)])
            row["sql_search_p50_ms"] = round(pct(sql_lat, 50), 2)
            row["sql_search_p99_ms"] = round(pct(sql_lat, 99), 2)
            sql_kw = await timed_keyword(sql_vectors, rng, max(10, queries // 4))
            row["sql_keyword_p50_ms"] = round(pct(sql_kw, 50), 2)
            row["sql_keyword_p99_ms"] = round(pct(sql_kw, 99), 2)
            sql_note = (
                f" | DuckDB SQL p50 {row['sql_search_p50_ms']:7.2f} ms  p99 {row['sql_search_p99_ms']:7.2f} ms"
                f", BM25 in SQL p50 {row['sql_keyword_p50_ms']:7.2f} p99 {row['sql_keyword_p99_ms']:7.2f} ms"
            )
        ivf_note = ""
        if ivf > 0:
            entry = index._entries[(USER, MODEL)]
            t0 = time.perf_counter()
            entry.ivf = await asyncio.to_thread(build_ivf, entry.matrix, entry.alive, entry.n, ivf)
            row["ivf_build_s"] = round(time.perf_counter() - t0, 2)
            approx: list[list[str]] = []
            ivf_lat = await timed_searches(vectors, qs, approx)
            entry.ivf = None  # the next size fills more rows: measure exact again
            recall = float(
                np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact, strict=True)])
            )
            row["ivf_probe_fraction"] = ivf
            row["ivf_search_p50_ms"] = round(pct(ivf_lat, 50), 2)
            row["ivf_search_p99_ms"] = round(pct(ivf_lat, 99), 2)
            row["ivf_recall_at_5_vs_exact"] = round(recall, 3)
            ivf_note = (
                f" | IVF(probe {ivf}) p50 {row['ivf_search_p50_ms']:6.2f} ms  p99 {row['ivf_search_p99_ms']:6.2f} ms"
                f" recall@5 {recall:.2f} build {row['ivf_build_s']:.1f} s"
            )
        results.append(row)
        print(
            f"{have:>9,} memories | index min {row['index_search_min_ms']:6.2f}  p50 {row['index_search_p50_ms']:7.2f} ms  p99 {row['index_search_p99_ms']:7.2f} ms"
            f" (tier-filtered p99 {row['index_tier_filter_p99_ms']:6.2f} ms, load {load_s:5.2f} s)"
            f" | keyword p50 {row['keyword_search_p50_ms']:6.2f} p99 {row['keyword_search_p99_ms']:6.2f} ms"
            f" (load {kw_load_s:5.2f} s)"
            f" | hybrid p50 {row['hybrid_search_p50_ms']:6.2f} p99 {row['hybrid_search_p99_ms']:6.2f} ms{sql_note}"
            f" | bulk insert {bulk_rate:9,.0f}/s | single insert {single_rate:5,.0f}/s{ivf_note}",
            flush=True,
        )
    await db.close()
    return results


async def http_ingest(n: int) -> dict[str, float]:
    """Memories stored through the HTTP API by one client, embedded defaults (the local
    model, DuckDB): ``n`` one by one (``POST /api/v1/memory``), then ``n`` in batches of
    100 (``POST /api/v1/memory/batch``); distinct texts, so no embedding is cached."""
    import logging

    from kernel.testing import start_kernel

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="llmmc-bench-http-") as tmp:
        client = await start_kernel(
            {"plugins": {"enabled": ["memory"], "memory": {"redis_url": "none"}}},
            data_dir=Path(tmp),
        )
        try:
            await client.plugin("memory").idle()
            h = client.auth_headers("ingest-user")
            texts = [f"{sentence(i)} (memory {i})" for i in range(2 * n)]
            t0, c0 = time.perf_counter(), time.process_time()
            for text in texts[:n]:
                r = await client.post("/api/v1/memory", json={"content": text}, headers=h)
                assert r.status == 201, await r.text()
            single = n / (time.perf_counter() - t0)
            single_cpu = (time.process_time() - c0) / n
            await client.plugin("memory").idle()
            t0, c0 = time.perf_counter(), time.process_time()
            for start in range(n, 2 * n, 100):
                items = [{"content": t} for t in texts[start : start + 100]]
                r = await client.post("/api/v1/memory/batch", json={"items": items}, headers=h)
                assert r.status == 201, await r.text()
            batch = n / (time.perf_counter() - t0)
            await client.plugin("memory").idle()  # (a batch's links follow in the background)
            batch_cpu = (time.process_time() - c0) / n
        finally:
            await client.close()
    # CPU: of this whole process (client, server and their threads), per memory; on a
    # busy machine it says more than the wall-clock rate, which other processes set.
    return {
        "http_single_per_s": round(single, 1),
        "http_batch_per_s": round(batch, 1),
        "http_single_cpu_ms": round(single_cpu * 1000, 2),
        "http_batch_cpu_ms": round(batch_cpu * 1000, 2),
    }


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--full", action="store_true", help="also fill to 1,000,000 memories (slow)")
    ap.add_argument("--sizes", type=int, nargs="*", help="explicit sizes (overrides --full)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=10_000, help="memories per bulk insert")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument(
        "--clustered",
        type=int,
        default=0,
        metavar="TOPICS",
        help="draw vectors around this many random topic centres instead of uniformly",
    )
    ap.add_argument(
        "--ivf",
        type=float,
        default=0.0,
        metavar="PROBE_FRACTION",
        help="also build inverted lists at each size and time them (recall@5 against the exact search)",
    )
    ap.add_argument(
        "--sql-max",
        type=int,
        default=200_000,
        help="also time the DuckDB-only search (array_cosine_similarity) up to this size",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument(
        "--http-ingest",
        type=int,
        default=0,
        metavar="N",
        help="only measure storing N memories one by one and N in batches of 100 through "
        "the HTTP API (local model, DuckDB, long_term memories, one client)",
    )
    args = ap.parse_args()
    if args.http_ingest:
        print(f"load average before: {load_average()}", flush=True)
        figures = asyncio.run(http_ingest(args.http_ingest))
        print(
            f"{args.http_ingest} memories one by one: {figures['http_single_per_s']:.0f}/s "
            f"({figures['http_single_cpu_ms']:.1f} ms of CPU each); in batches of 100: "
            f"{figures['http_batch_per_s']:.0f}/s ({figures['http_batch_cpu_ms']:.1f} ms of CPU "
            f"each, links included) (load average after: {load_average()})",
            flush=True,
        )
        return
    if args.clustered:
        global CENTRES
        c = np.random.default_rng(7).standard_normal((args.clustered, DIM)).astype(np.float32)
        CENTRES = c / np.linalg.norm(c, axis=1, keepdims=True)
    sizes = args.sizes or ([10_000, 100_000, 1_000_000] if args.full else [10_000, 100_000])
    with tempfile.TemporaryDirectory(prefix="llmmc-bench-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        print(f"DuckDB file in {data_dir}; dim {DIM}; {args.queries} queries per size", flush=True)
        print(f"load average before: {load_average()}", flush=True)
        results = asyncio.run(
            run(sorted(sizes), args.queries, data_dir, args.batch, args.sql_max, args.ivf)
        )
        print(
            f"load average after: {load_average()} (other processes share these 2 cores)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
