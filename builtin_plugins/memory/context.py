"""The ``memory_context`` hook: what the chat plugin puts in the prompt.

For one user, session and new message, within ``max_tokens`` (estimated at four
characters a token, plus a few for the line around each item):
1. the session's summary (``mid_term``), which covers turns older than the chat history;
2. the memories of every tier that best answer the message (the same hybrid search as
   ``POST /api/v1/memory/search``), leaving out the current session's newest
   ``short_term_turns`` turns and its summary (the chat history and item 1 already carry
   them; its older turns can be found like any other);
3. one hop along the associative links of those hits (``tier: "associative"``, with
   ``via`` naming the hit they hang from and a score of 0.8 × the hit's).
Items that do not fit the budget are skipped, not cut, so a smaller item further down
may still fit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sdk import Identity

from .domain import TIERS, Memory
from .service import MemoryService

ITEM_OVERHEAD_TOKENS = 6


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


async def memory_context(
    service: MemoryService,
    identity: Identity,
    session_id: str | None,
    query: str,
    max_tokens: int,
) -> list[dict[str, Any]]:
    user_id = identity.user_id
    budget = max(0, int(max_tokens))
    items: list[dict[str, Any]] = []
    seen: set[str] = set()

    def offer(item: dict[str, Any]) -> None:
        nonlocal budget
        if item["memory_id"] in seen:
            return
        cost = estimate_tokens(item["content"]) + ITEM_OVERHEAD_TOKENS
        if cost > budget:
            return
        budget -= cost
        seen.add(item["memory_id"])
        items.append(item)

    if budget <= ITEM_OVERHEAD_TOKENS:
        return []
    query = (query or "").strip()
    config = service.config

    async def search() -> list[Memory]:
        if not query:
            return []
        recent: set[str] = set()
        if session_id:
            turns, _ = await service.recent_turns(user_id, session_id)
            recent = {str(t["memory_id"]) for t in turns}
        return await service.search(
            user_id,
            query[:4000],
            top_k=int(config["context_top_k"]),
            tiers=list(TIERS),
            min_score=float(config["context_min_score"]),
            exclude_session_tiers=(session_id, ["mid_term"]) if session_id else None,
            exclude_ids=recent,
        )

    # The summary and the search do not depend on each other: wait for both at once. The
    # search runs in this task (a task of its own would start a loop turn later, and the
    # message's embedding is what the reply waits for).
    summary_task = (
        asyncio.ensure_future(service.session_summary(user_id, session_id)) if session_id else None
    )
    try:
        hits = await search()
    except BaseException:
        if summary_task is not None:
            summary_task.cancel()
        raise
    summary = await summary_task if summary_task is not None else None
    if summary is not None:
        offer(
            {
                "memory_id": summary.memory_id,
                "tier": "mid_term",
                "content": summary.content,
                "score": 1.0,
                "session_id": session_id,
            }
        )
    if not hits:
        return items
    for hit in hits:
        offer(
            {
                "memory_id": hit.memory_id,
                "tier": hit.tier,
                "content": hit.content,
                "score": round(float(hit.score or 0.0), 4),
                "session_id": hit.session_id,
            }
        )
    # One query for the hop: the linked memories with their rows, strongest link first.
    by_hit: dict[str, list[tuple[float, Memory]]] = {h.memory_id: [] for h in hits}
    for via, weight, m in await service.linked(user_id, list(by_hit)):
        by_hit[via].append((weight, m))
    wanted: dict[str, tuple[str, float, Memory]] = {}
    for hit in hits:  # a memory linked to several hits hangs from the best-ranked one
        for weight, m in by_hit[hit.memory_id]:
            if m.memory_id in seen or m.memory_id in wanted:
                continue
            score = 0.8 * float(hit.score or 0.0) * min(1.0, weight + 0.3)
            wanted[m.memory_id] = (hit.memory_id, score, m)
    wanted = {
        k: w
        for k, w in wanted.items()
        if not (session_id and w[2].session_id == session_id and w[2].tier == "short_term")
    }
    ranked = sorted(wanted.values(), key=lambda w: w[1], reverse=True)
    for via, score, m in ranked[: int(config["context_top_k"])]:
        offer(
            {
                "memory_id": m.memory_id,
                "tier": "associative",
                "content": m.content,
                "score": round(score, 4),
                "session_id": m.session_id,
                "via": via,
                "source_tier": m.tier,
            }
        )
    return items
