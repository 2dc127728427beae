"""The associative tier: links between memories.

A new memory (except short-term turns, which come and go) is linked to
- ``similar``: the caller's memories whose embedding is close (cosine ≥ ``link_threshold``);
- ``same_session``: the latest memories of the same session;
- ``same_entity``: memories naming the same entity (capitalised names, quoted terms).
Links are undirected, belong to one user, and go when either end is deleted. Search
results carry them as ``related``; the context hook follows them one hop.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .domain import Memory
from .store import MemoryStore
from .vectors.search import VectorSearch

LINKED_TIERS = ("long_term", "mid_term", "knowledge", "associative")
_NAME = re.compile(r"\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)")
_QUOTED = re.compile(r"[\"“«]([^\"”»]{2,40})[\"”»]")
_NOT_NAMES = {
    "i",
    "the",
    "a",
    "an",
    "my",
    "we",
    "you",
    "he",
    "she",
    "it",
    "they",
    "this",
    "that",
    "user",
    "the user",
    "hi",
    "hello",
    "yes",
    "no",
    "ok",
    "okay",
    "thanks",
    "thank",
    "what",
    "when",
    "where",
    "who",
    "why",
    "how",
    "and",
    "but",
    "also",
    "please",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
}


def extract_entities(text: str, limit: int = 12) -> list[str]:
    """Lower-cased names and quoted terms in ``text`` (a cheap stand-in for NER)."""
    found: list[str] = []
    for m in _NAME.finditer(text[:5000]):
        words = m.group(1).split()
        # Drop a leading sentence-initial common word ("The", "My").
        while words and words[0].lower() in _NOT_NAMES:
            words = words[1:]
        name = " ".join(words).lower().strip("'")
        if len(name) >= 2 and name not in _NOT_NAMES:
            found.append(name)
    for m in _QUOTED.finditer(text[:5000]):
        found.append(m.group(1).strip().lower())
    return list(dict.fromkeys(found))[:limit]


async def link_new(
    store: MemoryStore,
    vectors: VectorSearch,
    memory: Memory,
    vector: np.ndarray | None,
    model: str,
    *,
    threshold: float,
    max_links: int = 4,
    unlinked: bool = False,
) -> int:
    """Record the new memory's entities and its links; returns how many links were added.
    ``unlinked``: the memory has no link yet (made under the caller's lock)."""
    links = await plan_links(
        store, vectors, memory, vector, model, threshold=threshold, max_links=max_links
    )
    return await store.add_links(
        memory.user_id, links, unlinked=[memory.memory_id] if unlinked else ()
    )


async def plan_links(
    store: MemoryStore,
    vectors: VectorSearch,
    memory: Memory,
    vector: np.ndarray | None,
    model: str,
    *,
    threshold: float,
    max_links: int = 4,
) -> list[tuple[str, str, str, float]]:
    """Record the new memory's entities and return its links ``(a, b, kind, weight)``,
    to be written with ``store.add_links`` (several memories' at once, in order: what
    one call for each would have written)."""
    if memory.tier not in LINKED_TIERS:
        return []
    links: list[tuple[str, str, str, float]] = []
    if vector is not None:
        similar = await vectors.search(
            memory.user_id,
            vector,
            model,
            limit=max_links + 1,
            tiers=list(LINKED_TIERS),
            min_score=threshold,
        )
        for other in similar:
            if other.memory_id == memory.memory_id:
                continue
            if memory.parent_id and other.parent_id == memory.parent_id:
                continue  # chunks of one document are linked by the document already
            links.append((memory.memory_id, other.memory_id, "similar", float(other.score or 0)))
    if memory.session_id:
        for other in await store.recent(memory.user_id, memory.session_id, "long_term", 3):
            if other.memory_id != memory.memory_id:
                links.append((memory.memory_id, other.memory_id, "same_session", 0.5))
        for other in await store.recent(memory.user_id, memory.session_id, "mid_term", 1):
            links.append((memory.memory_id, other.memory_id, "same_session", 0.5))
    entities = extract_entities(memory.content)
    if entities:
        await store.add_entities(memory.user_id, memory.memory_id, entities)
        for other_id, _entity in await store.sharing_entities(
            memory.user_id, memory.memory_id, entities, max_links
        ):
            links.append((memory.memory_id, other_id, "same_entity", 0.7))
    return links


def related_ids(related: dict[str, list[tuple[str, str, float]]], memory_id: str) -> list[str]:
    return list(dict.fromkeys(other for other, _, _ in related.get(memory_id, [])))


def describe_links(related: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    return [{"memory_id": o, "kind": k, "weight": round(w, 4)} for o, k, w in related]
