"""LoCoMo retrieval benchmark: does memory search find the turns that answer a question?

LoCoMo (Maharana et al., "Evaluating Very Long-Term Conversational Memory of LLM Agents",
ACL 2024): very long two-person conversations, each question tied to the turns
(``evidence``) that hold its answer. The protocol:

1. each conversation belongs to a user of its own; every turn is stored, as
   ``Speaker: text`` (a shared photo's caption appended), with ``occurred_at`` the
   session's date, through ``POST /api/v1/memory/batch`` (``--via api``, the bodies of
   ``POST /api/v1/memory``, one session a batch) or as chat turns
   (``--via chat``: the ``chat.message.created`` events the chat plugin publishes, the
   first speaker as the user and the second as a character, recorded by the plugin's
   pipeline: short-term turns, summaries, facts);
2. every question of categories 1-4 (multi-hop, temporal, open-domain, single-hop; 5 is
   adversarial, without evidence) goes to ``POST /api/v1/memory/search`` with
   ``top_k = 25``, in each ``mode``;
3. recall@k: the share of a question's evidence turns among the first k results,
   averaged per category and over all questions.

In the same run, on the same texts, two baselines: BM25 alone (Okapi, k1 = 1.5, b = 0.75,
lower-cased ``\\w+`` words, as rank_bm25 does) and plain all-MiniLM-L6-v2 cosine (float32).

    .venv/bin/python bench/locomo.py                         # /work/shared/data/locomo
    .venv/bin/python bench/locomo.py PATH --via chat --modes hybrid
    .venv/bin/python bench/locomo.py --json out.json

The data is not part of this repository (it is the paper's; see its licence).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_DATA = "/work/shared/data/locomo"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 25)
TOP_K = max(KS)


# -- the data -------------------------------------------------------------------------
def evidence_ids(raw: list[str]) -> list[str]:
    """Evidence ids, repaired (``D8:6; D9:17``, ``D:11:26``, ``D30:05``)."""
    out = []
    for item in raw:
        for part in str(item).split(";"):
            m = re.match(r"^\s*D:?(\d+):0*(\d+)\s*$", part)
            if m:
                out.append(f"D{int(m.group(1))}:{int(m.group(2))}")
    return list(dict.fromkeys(out))


def session_date(text: str) -> datetime | None:
    """``1:56 pm on 8 May, 2023`` as a datetime."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")
    except ValueError:
        return None


def load_conversation(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    conv = data.get("conversation", data)
    turns = []
    n = 1
    while f"session_{n}_date_time" in conv:
        when = session_date(conv[f"session_{n}_date_time"])
        for t in conv.get(f"session_{n}") or []:
            text = str(t.get("text") or "").strip()
            if t.get("blip_caption"):
                text = f"{text} [shares a photo: {t['blip_caption']}]".strip()
            if text:
                turns.append(
                    {
                        "dia_id": t["dia_id"],
                        "speaker": t["speaker"],
                        "text": text,
                        "session": n,
                        "when": when,
                    }
                )
        n += 1
    questions = [
        {"question": q["question"], "category": int(q["category"]), "evidence": ev}
        for q in data.get("qa") or conv.get("qa") or []
        if int(q.get("category", 0)) in CATEGORIES and (ev := evidence_ids(q.get("evidence", [])))
    ]
    return {
        "name": path.stem,
        "speakers": (conv.get("speaker_a"), conv.get("speaker_b")),
        "turns": turns,
        "questions": questions,
    }


def stored_text(turn: dict[str, Any]) -> str:
    return f"{turn['speaker']}: {turn['text']}"


# -- the baselines ----------------------------------------------------------------------
class PlainBM25:
    """Okapi BM25 as rank_bm25's BM25Okapi computes it (k1 = 1.5, b = 0.75, its idf with
    the 0.25 x mean floor), on lower-cased ``\\w+`` words."""

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.docs = [Counter(re.findall(r"\w+", t.lower())) for t in texts]
        self.lengths = np.array([sum(d.values()) for d in self.docs], dtype=float)
        self.avgdl = float(self.lengths.mean()) if len(self.docs) else 1.0
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        idf = {w: math.log(n - f + 0.5) - math.log(f + 0.5) for w, f in df.items()}
        floor = 0.25 * (sum(idf.values()) / len(idf)) if idf else 0.0
        self.idf = {w: (v if v >= 0 else floor) for w, v in idf.items()}
        self.k1, self.b = k1, b

    def rank(self, query: str, k: int) -> list[int]:
        words = re.findall(r"\w+", query.lower())
        scores = np.zeros(len(self.docs))
        norm = self.k1 * (1 - self.b + self.b * self.lengths / self.avgdl)
        for w in words:
            if w not in self.idf:
                continue
            tf = np.array([d.get(w, 0) for d in self.docs], dtype=float)
            scores += self.idf[w] * tf * (self.k1 + 1) / (tf + norm)
        return list(np.argsort(-scores, kind="stable")[:k])


async def minilm_baseline(
    convs: list[dict[str, Any]],
) -> dict[str, dict[str, list[str]]]:
    """Plain all-MiniLM-L6-v2 (float32) cosine: conversation -> question -> ranked ids."""
    from builtin_plugins.memory.embedders.local import LocalEmbedder

    embedder = LocalEmbedder("", precision="float32")
    await embedder.load()
    out: dict[str, dict[str, list[str]]] = {}
    for conv in convs:
        docs = await embedder.embed([stored_text(t) for t in conv["turns"]])
        queries = await embedder.embed([q["question"] for q in conv["questions"]])
        ids = [t["dia_id"] for t in conv["turns"]]
        ranked = {}
        for q, vector in zip(conv["questions"], queries, strict=True):
            order = np.argsort(-(docs @ vector), kind="stable")[:TOP_K]
            ranked[q["question"]] = [ids[i] for i in order]
        out[conv["name"]] = ranked
    await embedder.close()
    return out


def bm25_baseline(convs: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    out = {}
    for conv in convs:
        bm25 = PlainBM25([stored_text(t) for t in conv["turns"]])
        ids = [t["dia_id"] for t in conv["turns"]]
        out[conv["name"]] = {
            q["question"]: [ids[i] for i in bm25.rank(q["question"], TOP_K)]
            for q in conv["questions"]
        }
    return out


# -- through the server -----------------------------------------------------------------
async def store_via_api(client: Any, conv: dict[str, Any], user: str) -> float:
    headers = client.auth_headers(user)
    started = time.perf_counter()
    by_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in conv["turns"]:
        by_session[t["session"]].append(t)
    for session, turns in by_session.items():
        items = []
        for t in turns:
            item: dict[str, Any] = {
                "content": stored_text(t),
                "tier": "short_term",
                "session_id": f"{conv['name']}-s{session}",
                "metadata": {"dia_id": t["dia_id"]},
            }
            if t["when"] is not None:
                item["occurred_at"] = t["when"].isoformat()
            items.append(item)
        r = await client.post("/api/v1/memory/batch", json={"items": items}, headers=headers)
        assert r.status == 201, await r.text()
    return time.perf_counter() - started


async def store_via_chat(client: Any, conv: dict[str, Any], user: str) -> float:
    started = time.perf_counter()
    first = conv["speakers"][0]
    for i, t in enumerate(conv["turns"]):
        role = "user" if t["speaker"] == first else "assistant"
        await client.kernel.bus.publish(
            "chat.message.created",
            {
                "user_id": user,
                "session_id": f"{conv['name']}-s{t['session']}",
                "message_id": f"{conv['name']}-{t['dia_id']}-{i}",
                "role": role,
                "character": None if role == "user" else t["speaker"],
                "content": t["text"],
            },
        )
    await client.plugin("memory").idle()
    return time.perf_counter() - started


async def server_rankings(
    convs: list[dict[str, Any]], via: str, modes: list[str], memory: dict[str, Any]
) -> tuple[dict[str, dict[str, dict[str, list[str]]]], dict[str, float]]:
    """mode -> conversation -> question -> ranked dia_ids; and timings."""
    from kernel.testing import start_kernel

    config = {
        "kernel": {"log_level": "WARNING"},
        "plugins": {
            "enabled": ["memory"],
            "memory": {"embedder": "local", "redis_url": "none", **memory},
        },
    }
    client = await start_kernel(config, data_dir=Path(tempfile.mkdtemp(prefix="llmmc-locomo-")))
    await client.plugin("memory").idle()  # the model loaded
    out: dict[str, dict[str, dict[str, list[str]]]] = {m: {} for m in modes}
    timings = {"store_s": 0.0, "turns": 0, "search_s": 0.0, "searches": 0}
    try:
        for conv in convs:
            user = f"locomo-{conv['name']}"
            store = store_via_api if via == "api" else store_via_chat
            timings["store_s"] += await store(client, conv, user)
            timings["turns"] += len(conv["turns"])
            # chat turns carry no dia_id: map them back by message id (or by text)
            by_message = {
                f"{conv['name']}-{t['dia_id']}-{i}": t["dia_id"]
                for i, t in enumerate(conv["turns"])
            }
            headers = client.auth_headers(user)
            for mode in modes:
                ranked = {}
                for q in conv["questions"]:
                    started = time.perf_counter()
                    r = await client.post(
                        "/api/v1/memory/search",
                        json={"query": q["question"], "top_k": TOP_K, "mode": mode},
                        headers=headers,
                    )
                    timings["search_s"] += time.perf_counter() - started
                    timings["searches"] += 1
                    results = (await r.json())["results"]
                    ids = []
                    for x in results:
                        dia = x["metadata"].get("dia_id") or by_message.get(
                            x["metadata"].get("message_id") or ""
                        )
                        ids.append(dia or x["memory_id"])  # a summary or fact: no turn
                    ranked[q["question"]] = ids
                out[mode][conv["name"]] = ranked
    finally:
        await client.close()
    return out, timings


# -- scoring ----------------------------------------------------------------------------
def recall(
    convs: list[dict[str, Any]], ranked: dict[str, dict[str, list[str]]]
) -> dict[str, dict[int, float]]:
    """category name (and 'overall') -> k -> mean recall@k."""
    sums: dict[str, dict[int, float]] = defaultdict(lambda: dict.fromkeys(KS, 0.0))
    counts: Counter[str] = Counter()
    for conv in convs:
        for q in conv["questions"]:
            got = ranked[conv["name"]][q["question"]]
            wanted = set(q["evidence"])
            for name in (CATEGORIES[q["category"]], "overall"):
                counts[name] += 1
                for k in KS:
                    sums[name][k] += len(wanted & set(got[:k])) / len(wanted)
    return {name: {k: sums[name][k] / counts[name] for k in KS} for name in counts}


def table(results: dict[str, dict[str, dict[int, float]]], counts: Counter[str]) -> str:
    names = ["overall", *CATEGORIES.values()]
    head = "| system | " + " | ".join(f"{n} ({counts[n]}) R@5/10/25" for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for system, r in results.items():
        cells = [
            "/".join(f"{r[n][k]:.3f}".lstrip("0") for k in KS) if n in r else "-" for n in names
        ]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def measure(
    convs: list[dict[str, Any]], via: str, modes: list[str], memory: dict[str, Any], baselines: bool
) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, float]]:
    ranked, timings = await server_rankings(convs, via, modes, memory)
    results = {f"our search, {m} (via {via})": recall(convs, ranked[m]) for m in modes}
    if baselines:
        results["BM25 alone"] = recall(convs, bm25_baseline(convs))
        results["plain all-MiniLM-L6-v2 cosine"] = recall(convs, await minilm_baseline(convs))
    return results, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA, help="folder of LoCoMo *.json")
    parser.add_argument("--via", choices=["api", "chat"], default="api")
    parser.add_argument("--modes", default="hybrid,semantic,keyword")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--json", default="", help="write the figures to this file")
    parser.add_argument(
        "--memory", default="{}", help="JSON of extra [plugins.memory] settings for the server"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    files = sorted(Path(args.data).glob("*.json"))
    if not files:
        raise SystemExit(f"no LoCoMo conversations (*.json) in {args.data}")
    convs = [load_conversation(f) for f in files]
    counts: Counter[str] = Counter()
    for conv in convs:
        for q in conv["questions"]:
            counts[CATEGORIES[q["category"]]] += 1
            counts["overall"] += 1
    n_turns = sum(len(c["turns"]) for c in convs)
    print(f"{len(convs)} conversations, {n_turns} turns, {counts['overall']} questions (1-4)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results, timings = asyncio.run(
        measure(convs, args.via, modes, json.loads(args.memory), not args.no_baselines)
    )
    print(table(results, counts))
    rate = timings["turns"] / max(timings["store_s"], 1e-9)
    mean_ms = 1000 * timings["search_s"] / max(timings["searches"], 1)
    print(
        f"stored {timings['turns']} turns in {timings['store_s']:.1f} s ({rate:.0f}/s); "
        f"{timings['searches']} searches, mean {mean_ms:.1f} ms"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "counts": counts, "timings": timings}, indent=1)
        )


if __name__ == "__main__":
    main()
