"""The memory service: the one object the routes, the context hook and the turn recorder
(ingest.py) go through. It owns the store, the vector search, the embedder and the Redis
copies of the sessions, and says what happens in each of the five tiers:

- ``short_term``: each chat turn (user and character), kept as long as its session; the
  newest ``short_term_turns`` of a session are its recent turns, mirrored in Redis when
  configured. Summaries and facts are added beside the turns, never in their place.
- ``mid_term``: one summary per session, rewritten every ``summary_every_turns`` turns
  from the previous summary plus the new turns; mirrored in Redis with a TTL.
- ``long_term``: facts about the user; a fact with the key of an existing fact (or a
  near-identical text) updates that fact instead of adding another one.
- ``associative``: links between memories (links.py); also notes a client posts with
  ``metadata.related`` naming the memories they associate.
- ``knowledge``: documents, split into overlapping chunks that are embedded one by one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from sdk import Identity, Services, errors
from sdk.embedder import Embedder
from sdk.hooks import HookCaller
from sdk.llm import takes_keyword
from sdk.metrics import Metrics

from . import keywords
from . import links as links_mod
from .domain import (
    Memory,
    new_id,
    turn_dict,
    turn_speaker,
    turn_text,
    utcnow,
)
from .extract import FACTS_SCHEMA, Fact, build_llm_messages, extract_rules, parse_llm_facts
from .session_cache import SessionCache
from .store import MemoryStore
from .summary import summarize
from .vectors.search import VectorSearch

MAX_LINKED_CHUNKS = 50
# Sessions whose summary (or its absence) is remembered in-process when there is no
# Redis: a chat turn then reads it without a query. Least recently used dropped first.
SUMMARY_CACHE_SESSIONS = 10_000
EXTRACT_CHARS = 4000  # what one extraction reads (extract.py)
# Candidates each ranking gives to the fusion (at least; 4 x top_k when more).
CANDIDATES = 50
# Weights of the two rankings in hybrid search (reciprocal rank fusion).
SEMANTIC_WEIGHT = 1.0
KEYWORD_WEIGHT = 1.0
# Hybrid search: the best turns of the fused ranking lend this share of their score to
# the turns just before and after them in their session.
NEIGHBOUR_HITS = 10
NEIGHBOUR_SHARE = 0.3


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Split a document into chunks of about ``size`` characters, cut at paragraph or
    sentence ends where possible, each overlapping the previous by ``overlap``."""
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    pieces = [p for p in re.split(r"(?<=[.!?。])\s+|\n{2,}", text) if p.strip()]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        while len(piece) > size:  # a very long sentence: hard cut
            head, piece = piece[:size], piece[size - overlap :]
            if current:
                chunks.append(current)
                current = ""
            chunks.append(head)
        if current and len(current) + 1 + len(piece) > size:
            chunks.append(current)
            tail = current[-overlap:] if overlap else ""
            # start the overlap at a word boundary
            tail = tail[tail.find(" ") + 1 :] if " " in tail else tail
            current = (tail + " " + piece).strip()
        else:
            current = (current + " " + piece).strip()
    if current:
        chunks.append(current)
    return chunks


def _norm_text(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


class MemoryService:
    def __init__(
        self,
        *,
        store: MemoryStore,
        vectors: VectorSearch,
        embedder: Embedder,
        cache: SessionCache | None,
        config: dict[str, Any],
        hooks: HookCaller,
        services: Services,
        metrics: Metrics,
        log: logging.Logger,
    ) -> None:
        self.store = store
        self.vectors = vectors
        self.embedder = embedder
        self.cache = cache
        self.config = config
        self.hooks = hooks
        self.services = services
        self.log = log
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.extraction_errors = 0
        self._last_made = datetime.min
        # runs a coroutine nobody waits for (the plugin's background tasks); None: await it
        self.spawn: Callable[[Coroutine[Any, Any, None], str], None] | None = None
        # (user, session) -> its summary, or None for "none yet". Only without Redis: then
        # this process is the only writer of summaries (see docs/memory.md, caches).
        self._summaries: OrderedDict[tuple[str, str], Memory | None] = OrderedDict()
        # True from start until the warm-up has loaded the embedding model (or failed to)
        self.loading_model = False
        self.search_seconds = metrics.histogram(
            "search_duration_seconds",
            "Time of a semantic search: embedding the query, then scanning the index",
            labels=("phase",),
        )

    # -- helpers ----------------------------------------------------------------------
    def lock(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[user_id] = lock
        return lock

    @property
    def model(self) -> str:
        return self.embedder.model_id

    async def embed(self, texts: list[str], *, background: bool = False) -> np.ndarray:
        """``background``: no reply waits for it (recording turns, extraction)."""
        try:
            return await self.embedder.embed(texts, background=background)
        except errors.Problem:
            raise
        except Exception as exc:
            self.log.exception("embedding failed")
            raise errors.ServiceUnavailable(
                f"the {self.embedder.name} embedder failed: {exc.__class__.__name__}",
                code="EMBEDDER_UNAVAILABLE",
            ) from exc

    def _new(
        self,
        user_id: str,
        tier: str,
        content: str,
        *,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.5,
        fact_key: str | None = None,
        parent_id: str | None = None,
        source_message_id: str | None = None,
        searchable: bool = True,
        occurred_at: datetime | None = None,
    ) -> Memory:
        # strictly increasing in this process: memories made in one batch keep their order
        now = max(utcnow(), self._last_made + timedelta(microseconds=1))
        self._last_made = now
        return Memory(
            memory_id=new_id(),
            user_id=user_id,
            tier=tier,
            session_id=session_id,
            content=content,
            metadata=dict(metadata or {}),
            importance=float(importance),
            fact_key=fact_key,
            parent_id=parent_id,
            source_message_id=source_message_id,
            searchable=searchable,
            created_at=now,
            updated_at=now,
            occurred_at=occurred_at or now,
        )

    async def with_related(
        self, user_id: str, memories: list[Memory]
    ) -> list[tuple[Memory, list[str]]]:
        related = await self.store.related(user_id, [m.memory_id for m in memories])
        return [(m, links_mod.related_ids(related, m.memory_id)) for m in memories]

    # -- reads the routes and the context hook make ------------------------------------
    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        return await self.store.get(user_id, memory_id)

    async def page(
        self, user_id: str, tier: str | None, limit: int, offset: int
    ) -> tuple[list[Memory], int]:
        """The caller's memories, newest first, and how many there are in all."""
        return await self.store.page(user_id, tier, limit, offset)

    async def stats(self, user_id: str) -> dict[str, Any]:
        return await self.store.stats(user_id, self.model)

    async def session_memories(self, user_id: str, session_id: str) -> list[Memory]:
        """Every memory of one of the caller's sessions, oldest first."""
        return await self.store.list_session(user_id, session_id)

    async def linked(self, user_id: str, memory_ids: list[str]) -> list[tuple[str, float, Memory]]:
        """The memories linked to any of ``memory_ids``: ``(via, weight, memory)``."""
        return await self.store.linked(user_id, memory_ids)

    # -- create -------------------------------------------------------------------------
    async def add(
        self,
        user_id: str,
        content: str,
        *,
        tier: str = "long_term",
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.5,
        occurred_at: datetime | None = None,
    ) -> Memory:
        metadata = dict(metadata or {})
        if tier == "knowledge":
            return await self._add_document(
                user_id, content, session_id, metadata, importance, occurred_at
            )
        explicit: list[str] = []
        if tier == "associative":
            wanted = metadata.get("related") or []
            if not isinstance(wanted, list) or not all(isinstance(x, str) for x in wanted):
                raise errors.ValidationFailed(
                    "metadata.related must be a list of memory ids",
                    errors=[{"path": "/metadata/related", "message": "expected a list of strings"}],
                )
            found = {m.memory_id for m in await self.store.get_many(user_id, wanted)}
            missing = [x for x in wanted if x not in found]
            if missing:
                raise errors.NotFound(f"memory {missing[0]} not found", code="MEMORY_NOT_FOUND")
            explicit = list(dict.fromkeys(wanted))
        async with self.lock(user_id):
            memory = self._new(
                user_id,
                tier,
                content,
                session_id=session_id,
                metadata=metadata,
                importance=importance,
                occurred_at=occurred_at,
            )
            vector = (await self.embed([content]))[0]
            await self.store.insert([memory], vector.reshape(1, -1), self.model)
            if explicit:
                # The note links to each memory it names, and those memories to each other.
                pairs = [(memory.memory_id, other, "explicit", 1.0) for other in explicit]
                pairs += [
                    (a, b, "explicit", 1.0)
                    for i, a in enumerate(explicit)
                    for b in explicit[i + 1 :]
                ]
                await self.store.add_links(user_id, pairs)
            if tier != "short_term":  # turns are tied by their session, not linked
                # (made under the lock just now: no link of its own yet to look for)
                await self._link(memory, vector, unlinked=not explicit)
            if tier == "mid_term" and session_id:
                self._forget_summaries(user_id, session_id)
        return memory

    async def add_many(self, user_id: str, items: list[dict[str, Any]]) -> list[Memory]:
        """Store several memories (each item: :meth:`add`'s keyword arguments), in order:
        one embedding call and one transaction for all of them, unless one is a document
        or an associative note naming related memories (then one by one)."""
        if any(
            i["tier"] == "knowledge"
            or (i["tier"] == "associative" and i["metadata"].get("related"))
            for i in items
        ):
            return [await self.add(user_id, i.pop("content"), **i) for i in items]
        async with self.lock(user_id):
            memories = [
                self._new(
                    user_id,
                    i["tier"],
                    i["content"],
                    session_id=i.get("session_id"),
                    metadata=i.get("metadata"),
                    importance=float(i.get("importance", 0.5)),
                    occurred_at=i.get("occurred_at"),
                )
                for i in items
            ]
            vectors = await self.embed([m.content for m in memories])
            await self.store.insert(memories, vectors, self.model)
            for memory in memories:
                if memory.tier == "mid_term" and memory.session_id:
                    self._forget_summaries(user_id, memory.session_id)
        linked = [(m, v) for m, v in zip(memories, vectors, strict=True) if m.tier != "short_term"]
        if linked:
            # Links widen the context; a batch's answer does not wait for them (several
            # queries a memory), they follow in the background, in order.
            if self.spawn is not None:
                self.spawn(self._link_later(user_id, linked), "memory-link-batch")
            else:
                await self._link_later(user_id, linked)
        return memories

    async def _link_later(self, user_id: str, linked: list[tuple[Memory, np.ndarray]]) -> None:
        async with self.lock(user_id):
            # (a memory deleted meanwhile gets no links: they would outlive it)
            alive = {
                m.memory_id
                for m in await self.store.get_many(user_id, [m.memory_id for m, _ in linked])
            }
            await self._link_many([(m, v) for m, v in linked if m.memory_id in alive])

    async def _add_document(
        self,
        user_id: str,
        content: str,
        session_id: str | None,
        metadata: dict[str, Any],
        importance: float,
        occurred_at: datetime | None = None,
    ) -> Memory:
        size = int(self.config["knowledge_chunk_chars"])
        chunks = chunk_text(content, size, int(self.config["knowledge_chunk_overlap"]))
        async with self.lock(user_id):
            if len(chunks) <= 1:
                doc = self._new(
                    user_id,
                    "knowledge",
                    content,
                    session_id=session_id,
                    metadata={**metadata, "chunks": 1},
                    importance=importance,
                    occurred_at=occurred_at,
                )
                vectors = await self.embed([content])
                await self.store.insert([doc], vectors, self.model)
                await self._link(doc, vectors[0])
                return doc
            doc = self._new(
                user_id,
                "knowledge",
                content,
                session_id=session_id,
                metadata={**metadata, "chunks": len(chunks)},
                importance=importance,
                searchable=False,
                occurred_at=occurred_at,
            )
            parts = [
                self._new(
                    user_id,
                    "knowledge",
                    chunk,
                    session_id=session_id,
                    metadata={
                        **{k: v for k, v in metadata.items() if k in ("title", "source")},
                        "document_id": doc.memory_id,
                        "chunk": i,
                        "chunks": len(chunks),
                    },
                    importance=importance,
                    parent_id=doc.memory_id,
                    occurred_at=occurred_at,
                )
                for i, chunk in enumerate(chunks)
            ]
            vectors = await self.embed(chunks)
            await self.store.insert([doc, *parts], vectors, self.model)
            # Link the chunks of a short document one by one; a long one (a manual, a
            # book) would cost several queries per chunk, and its chunks are tied
            # together by document_id anyway.
            if len(parts) <= MAX_LINKED_CHUNKS:
                await self._link_many(list(zip(parts, vectors, strict=True)))
            return doc

    async def _link(
        self, memory: Memory, vector: np.ndarray | None, *, unlinked: bool = False
    ) -> None:
        try:
            await links_mod.link_new(
                self.store,
                self.vectors,
                memory,
                vector,
                self.model,
                threshold=float(self.config["link_threshold"]),
                unlinked=unlinked,
            )
        except Exception:
            # Links widen context; a failure here must not lose the memory itself.
            self.log.exception("linking memory %s failed", memory.memory_id)

    async def _link_many(self, memories: list[tuple[Memory, np.ndarray | None]]) -> None:
        """:meth:`_link` for several memories of one user, in order, their links written
        at once (one transaction instead of one for each)."""
        if not memories:
            return
        planned: list[tuple[str, str, str, float]] = []
        for memory, vector in memories:
            try:
                planned += await links_mod.plan_links(
                    self.store,
                    self.vectors,
                    memory,
                    vector,
                    self.model,
                    threshold=float(self.config["link_threshold"]),
                )
            except Exception:
                self.log.exception("linking memory %s failed", memory.memory_id)
        try:
            await self.store.add_links(memories[0][0].user_id, planned)
        except Exception:
            self.log.exception("linking %d memories failed", len(memories))

    # -- read ---------------------------------------------------------------------------
    async def search(
        self,
        user_id: str,
        query: str,
        *,
        top_k: int = 5,
        session_id: str | None = None,
        tiers: list[str] | None = None,
        min_score: float | None = None,
        exclude_session_tiers: tuple[str, list[str]] | None = None,
        exclude_ids: set[str] | None = None,
        mode: str = "hybrid",
    ) -> list[Memory]:
        """The caller's memories that best answer ``query``, best first.

        ``mode``: ``semantic`` ranks by the cosine of the embeddings (``score`` is the
        cosine); ``keyword`` by BM25 over the memories' words (``score`` is BM25's);
        ``hybrid`` fuses both rankings (keywords.fuse; ``score`` is the fused score, 1.0
        for first place in both, and ``evidence`` gives the cosine and BM25 behind it).
        ``min_score`` is the least cosine: in hybrid mode a memory below it stays when
        its words match the query; keyword mode has no cosine to filter.
        ``exclude_ids``: memories to leave out (the context hook's recent turns).
        """
        exclude_ids = exclude_ids or set()
        pool = max(top_k * 4, CANDIDATES) + len(exclude_ids)
        filters: dict[str, Any] = {
            "tiers": tiers,
            "session_id": session_id,
            "exclude_session_tiers": exclude_session_tiers,
        }

        async def semantic() -> list[Memory]:
            started = time.perf_counter()
            vector = (await self.embed([query]))[0]
            self.search_seconds.labels(phase="embed").observe(time.perf_counter() - started)
            started = time.perf_counter()
            found = await self.vectors.search(
                user_id,
                vector,
                self.model,
                limit=pool,
                min_score=min_score if mode == "semantic" else None,
                rows=mode == "semantic",
                **filters,
            )
            self.search_seconds.labels(phase="scan").observe(time.perf_counter() - started)
            return [m for m in found if m.memory_id not in exclude_ids]

        async def keyword() -> list[tuple[str, float]]:
            started = time.perf_counter()
            found = await self.store.keyword_search(
                user_id, keywords.query_terms(query), limit=pool, **filters
            )
            self.search_seconds.labels(phase="keyword").observe(time.perf_counter() - started)
            return [h for h in found if h[0] not in exclude_ids]

        if mode == "semantic":
            return rank(await semantic(), top_k)
        if mode == "keyword":
            hits = (await keyword())[:top_k]
            rows = {m.memory_id: m for m in await self.store.get_many(user_id, dict(hits))}
            out = []
            for memory_id, score in hits:
                if memory_id in rows:
                    memory = rows[memory_id]
                    memory.score = score
                    memory.evidence = {"semantic": None, "keyword": score}
                    out.append(memory)
            return out
        dense, sparse = await asyncio.gather(semantic(), keyword())
        return await self._fused(user_id, dense, sparse, top_k, min_score, exclude_ids)

    async def _fused(
        self,
        user_id: str,
        dense: list[Memory],
        sparse: list[tuple[str, float]],
        top_k: int,
        min_score: float | None,
        exclude_ids: set[str],
    ) -> list[Memory]:
        cosine = {m.memory_id: float(m.score or 0.0) for m in dense}
        bm25 = dict(sparse)
        fused = keywords.fuse(
            [[(m.memory_id, float(m.score or 0.0)) for m in dense], sparse],
            [SEMANTIC_WEIGHT, KEYWORD_WEIGHT],
        )
        if min_score is not None:
            fused = {
                k: v for k, v in fused.items() if k in bm25 or cosine.get(k, -2.0) >= min_score
            }
        # (the dense hits may be ids and scores only: vectors.search(rows=False))
        rows = {m.memory_id: m for m in dense if m.tier}
        # Rank on what is known before reading rows: only the memories that can still
        # reach the top are read.
        best = sorted(fused, key=lambda k: fused[k], reverse=True)[: top_k * 2 + 8]
        missing = [k for k in best if k not in rows]
        if missing:
            rows.update((m.memory_id, m) for m in await self.store.get_many(user_id, missing))
        # A chat turn's neighbours in its session share its context (a question and its
        # answer, a story told over two turns): each of the best turns lends a share of
        # its score to the turns just before and after it.
        lent: dict[str, float] = {}
        turns = [rows[k] for k in best[:NEIGHBOUR_HITS] if k in rows]
        for memory_id, around in (await self.store.neighbours(user_id, turns)).items():
            for other in around:
                if other is not None and other not in exclude_ids:
                    lent[other] = max(lent.get(other, 0.0), NEIGHBOUR_SHARE * fused[memory_id])
        missing = [k for k in lent if k not in rows]
        if missing:
            rows.update((m.memory_id, m) for m in await self.store.get_many(user_id, missing))
        found = []
        for memory_id in dict.fromkeys([*best, *lent]):
            memory = rows.get(memory_id)
            if memory is None:
                continue
            memory.score = fused.get(memory_id, 0.0) + lent.get(memory_id, 0.0)
            memory.evidence = {
                "semantic": cosine.get(memory_id),
                "keyword": bm25.get(memory_id),
                "neighbour": lent.get(memory_id),
            }
            found.append(memory)
        return rank(found, top_k, importance=0.02, recency=0.01)

    # -- short and mid term: the chat turns -------------------------------------------
    async def record_turn(self, data: dict[str, Any]) -> None:
        """Handle one ``chat.message.created`` event."""
        await self.record_turns([data])

    async def record_turns(self, events: list[dict[str, Any]]) -> None:
        """Handle ``chat.message.created`` events, in order. The turns that arrive together
        (a message and its reply; under load many users' turns) are embedded in one call,
        and each user's are stored and their sessions trimmed in one transaction."""
        by_user: dict[str, list[dict[str, Any]]] = {}
        for data in events:
            user_id = str(data.get("user_id") or "")
            if (
                user_id
                and str(data.get("session_id") or "")
                and str(data.get("content") or "").strip()
            ):
                by_user.setdefault(user_id, []).append(data)
        limit = int(self.config["max_content_chars"])
        texts = [
            turn_text(d, str(d.get("content")).strip()[:limit])
            for items in by_user.values()
            for d in items
        ]
        vectors: np.ndarray | None = None
        if texts:
            try:
                vectors = await self.embed(texts, background=True)
            except Exception:  # each user's turns are tried again on their own below
                self.log.exception("memory: could not embed %d chat turns", len(texts))
        at = 0
        for user_id, items in by_user.items():
            mine = None if vectors is None else vectors[at : at + len(items)]
            at += len(items)
            try:
                await self._record_user_turns(user_id, items, mine)
            except Exception:  # one user's failure must not lose the others' turns
                self.log.exception("memory: could not record %d chat turns", len(items))

    async def _record_user_turns(
        self, user_id: str, items: list[dict[str, Any]], vectors: np.ndarray | None = None
    ) -> None:
        identity = Identity(user_id=user_id, roles=("user",), scheme="event")
        limit = int(self.config["max_content_chars"])
        keep = int(self.config["short_term_turns"])
        async with self.lock(user_id):
            turns = []
            for data in items:
                message_id = str(data.get("message_id") or "") or None
                role = str(data.get("role") or "user")
                metadata = {
                    "role": role,
                    "character": data.get("character"),
                    "message_id": message_id,
                }
                turns.append(
                    self._new(
                        user_id,
                        "short_term",
                        str(data.get("content")).strip()[:limit],
                        session_id=str(data["session_id"]),
                        metadata=metadata,
                        importance=0.3,
                        source_message_id=message_id,
                    )
                )
            sessions: dict[str, list[Memory]] = {}
            try:
                if vectors is None:
                    vectors = await self.embed(
                        [turn_text(d, t.content) for d, t in zip(items, turns, strict=True)],
                        background=True,
                    )
                sessions = await self.store.insert_turns(turns, vectors, self.model, keep)
            except Exception:
                if len(turns) == 1:
                    raise
                # One bad turn must not sink the others: store them one by one.
                self.log.exception("memory: storing %d turns together failed", len(turns))
                kept = []
                for data, turn in zip(items, turns, strict=True):
                    try:
                        vector = await self.embed([turn_text(data, turn.content)], background=True)
                        sessions.update(
                            await self.store.insert_turns([turn], vector, self.model, keep)
                        )
                        kept.append((data, turn))
                    except Exception:
                        self.log.exception("memory: could not record a chat turn")
                items, turns = [d for d, _ in kept], [t for _, t in kept]
            if self.cache is not None:
                for turn in turns:
                    assert turn.session_id is not None
                    await self.cache.push_turn(user_id, turn.session_id, turn_dict(turn), keep)
            if self.config["auto_extract"]:
                # One extraction (one LLM call) per session for the user's messages that
                # were recorded together, its facts attributed to the newest of them.
                said: list[tuple[str, list[Memory]]] = []
                for turn in turns:
                    if turn.metadata["role"] != "user":
                        continue
                    group = next((g for s, g in reversed(said) if s == turn.session_id), None)
                    # the extractors read 4 000 characters: a full group starts another
                    if (
                        group is None
                        or sum(len(m.content) + 1 for m in group) + len(turn.content)
                        > EXTRACT_CHARS
                    ):
                        said.append((str(turn.session_id), group := []))
                    group.append(turn)
                for session_id, messages in said:
                    try:
                        await self._extract_and_store(
                            identity,
                            [m.content for m in messages],
                            session_id,
                            messages[-1].source_message_id,
                        )
                    except Exception:
                        self.extraction_errors += 1
                        self.log.exception("fact extraction failed")
            for session_id, recent in sessions.items():
                try:
                    await self._maybe_summarize(identity, session_id, recent)
                except Exception:
                    self.log.exception("session summary failed")

    async def recent_turns(self, user_id: str, session_id: str) -> tuple[list[dict[str, Any]], str]:
        """The session's recent turns and where they came from (``redis`` or ``store``)."""
        if self.cache is not None:
            cached = await self.cache.turns(user_id, session_id)
            if cached is not None:
                return cached, "redis"
        turns = await self.store.recent(
            user_id, session_id, "short_term", int(self.config["short_term_turns"])
        )
        out = [turn_dict(t) for t in turns]
        if self.cache is not None and out:
            await self.cache.set_turns(user_id, session_id, out)
        return out, "store"

    async def session_summary(self, user_id: str, session_id: str) -> Memory | None:
        if self.cache is None:
            key = (user_id, session_id)
            if key in self._summaries:
                self._summaries.move_to_end(key)
                return self._summaries[key]
            found = await self.store.recent(user_id, session_id, "mid_term", 1)
            self._remember_summary(user_id, session_id, found[0] if found else None)
            return found[0] if found else None
        if self.cache is not None:
            cached = await self.cache.summary(user_id, session_id)
            if cached is not None and cached.get("memory_id"):
                return Memory(
                    memory_id=cached["memory_id"],
                    user_id=user_id,
                    tier="mid_term",
                    session_id=session_id,
                    content=cached["content"],
                    metadata=cached.get("metadata") or {},
                    importance=float(cached.get("importance", 0.6)),
                    fact_key=None,
                    parent_id=None,
                    source_message_id=None,
                    searchable=True,
                    created_at=datetime.fromisoformat(cached["created_at"]),
                    updated_at=datetime.fromisoformat(cached["updated_at"]),
                )
        found = await self.store.recent(user_id, session_id, "mid_term", 1)
        return found[0] if found else None

    def _remember_summary(self, user_id: str, session_id: str, summary: Memory | None) -> None:
        if self.cache is not None:
            return
        self._summaries[(user_id, session_id)] = summary
        self._summaries.move_to_end((user_id, session_id))
        while len(self._summaries) > SUMMARY_CACHE_SESSIONS:
            self._summaries.popitem(last=False)

    def _forget_summaries(self, user_id: str | None, session_id: str | None = None) -> None:
        if user_id is None:
            self._summaries.clear()
        elif session_id is not None:
            self._summaries.pop((user_id, session_id), None)
        else:
            for key in [k for k in self._summaries if k[0] == user_id]:
                del self._summaries[key]

    async def _maybe_summarize(
        self, identity: Identity, session_id: str, turns: list[Memory]
    ) -> None:
        """Rewrite the session's summary once ``summary_every_turns`` new turns are in
        ``turns`` (the session's short-term turns, oldest first)."""
        user_id = identity.user_id
        every = max(
            1, min(int(self.config["summary_every_turns"]), int(self.config["short_term_turns"]))
        )
        if self.cache is None:
            summary = await self.session_summary(user_id, session_id)
        else:
            existing = await self.store.recent(user_id, session_id, "mid_term", 1)
            summary = existing[0] if existing else None
        since = summary.metadata.get("last_turn_at") if summary else None
        new_turns = [t for t in turns if since is None or t.created_at.isoformat() > since]
        if len(new_turns) < every:
            return
        lines = [f"{turn_speaker(t)}: {t.content}" for t in new_turns]
        text = "\n".join(lines)
        if summary is not None:
            text = f"Summary so far: {summary.content}\n\nNew turns:\n{text}"
        max_words = int(self.config["summary_max_words"])
        content, method = await summarize(
            self.hooks, self.services, identity, text, max_words, self.log
        )
        if not content:
            return
        total = int(summary.metadata.get("turns", 0)) if summary else 0
        metadata = {
            "turns": total + len(new_turns),
            "last_turn_at": new_turns[-1].created_at.isoformat(),
            "method": method,
        }
        vector = (await self.embed([content], background=True))[0]
        if summary is None:
            summary = self._new(
                user_id,
                "mid_term",
                content,
                session_id=session_id,
                metadata=metadata,
                importance=0.6,
            )
            await self.store.insert([summary], vector.reshape(1, -1), self.model)
            await self._link(summary, vector)
        else:
            summary = replace(summary, content=content, metadata=metadata, updated_at=utcnow())
            await self.store.update_content(summary, vector, self.model)
        self._remember_summary(user_id, session_id, summary)
        if self.cache is not None:
            await self.cache.set_summary(
                user_id,
                session_id,
                {
                    "memory_id": summary.memory_id,
                    "content": summary.content,
                    "metadata": summary.metadata,
                    "importance": summary.importance,
                    "created_at": summary.created_at.isoformat(),
                    "updated_at": summary.updated_at.isoformat(),
                },
            )

    # -- long term: facts ---------------------------------------------------------------
    async def extract_facts(
        self, identity: Identity, messages: list[str], *, background: bool = False
    ) -> tuple[list[Fact], str]:
        """Facts the user states in ``messages`` (read together, one LLM call)."""
        text = "\n".join(messages)
        mode = self.config["extractor"]
        llm = self.services.get("llm") if mode in ("auto", "llm") else None
        if llm is not None:
            # The known facts nearest to each message (their vectors are cached: they were
            # just embedded to be stored), not to the joined text, a new and longer one.
            known = await self.vectors.search_any(
                identity.user_id,
                await self.embed(messages, background=background),
                self.model,
                limit=10,
                tiers=["long_term"],
            )
            messages = build_llm_messages(text, [(m.fact_key or "", m.content) for m in known])
            try:
                constrained = (
                    {"json_schema": FACTS_SCHEMA}
                    if takes_keyword(llm.complete, "json_schema")
                    else {}
                )
                answer = await llm.complete(
                    messages, max_tokens=400, temperature=0.0, identity=identity, **constrained
                )
                facts = parse_llm_facts(answer)
                if facts is not None:
                    return facts, "llm"
                self.log.info(
                    "LLM fact extraction answer was not JSON (%r); using the rules", answer[:200]
                )
            except Exception as exc:
                self.log.warning("LLM fact extraction failed (%s); using the rules", exc)
        return extract_rules(text), "rules"

    async def _extract_and_store(
        self,
        identity: Identity,
        messages: list[str],
        session_id: str | None,
        message_id: str | None,
    ) -> list[Memory]:
        facts, method = await self.extract_facts(identity, messages, background=True)
        return await self.remember_facts(
            identity.user_id,
            facts,
            session_id=session_id,
            message_id=message_id,
            method=method,
            background=True,
        )

    async def remember_fact(
        self,
        user_id: str,
        fact: Fact,
        *,
        session_id: str | None = None,
        message_id: str | None = None,
        method: str = "rules",
        background: bool = False,
    ) -> Memory:
        """Store a fact; a fact with the same key, or a near-identical one, is updated in
        place (a repeat refreshes it, a contradiction replaces its text). Never deletes."""
        stored = await self.remember_facts(
            user_id,
            [fact],
            session_id=session_id,
            message_id=message_id,
            method=method,
            background=background,
        )
        return stored[0]

    async def remember_facts(
        self,
        user_id: str,
        facts: list[Fact],
        *,
        session_id: str | None = None,
        message_id: str | None = None,
        method: str = "rules",
        background: bool = False,
    ) -> list[Memory]:
        """:meth:`remember_fact` for several facts, in order (a later one may update an
        earlier one): one embedding call, one query for the facts of the same keys, one
        transaction for the updates and one for the new facts."""
        if not facts:
            return []
        vectors = await self.embed([f.text for f in facts], background=background)
        by_key = await self.store.find_facts(user_id, [f.key for f in facts])
        updates: dict[str, tuple[Memory, np.ndarray | None]] = {}
        new: dict[str, tuple[Memory, np.ndarray]] = {}
        stored: list[Memory] = []
        current: dict[str, Memory] = {}
        for fact, vector in zip(facts, vectors, strict=True):
            existing = by_key.get(fact.key)
            if existing is None:
                near = await self.vectors.search(
                    user_id,
                    vector,
                    self.model,
                    limit=1,
                    tiers=["long_term"],
                    min_score=float(self.config["dedupe_threshold"]),
                )
                existing = near[0] if near else None
                if existing is not None:  # its state after this batch's earlier facts
                    existing = current.get(existing.memory_id, existing)
                else:  # or a new fact of this batch, not yet stored, that says the same
                    threshold = float(self.config["dedupe_threshold"])
                    existing = next(
                        (m for m, v in new.values() if float(np.dot(v, vector)) >= threshold),
                        None,
                    )
            if existing is None:
                memory = self._new(
                    user_id,
                    "long_term",
                    fact.text,
                    session_id=session_id,
                    metadata={
                        "source": method,
                        "key": fact.key,
                        **({"message_id": message_id} if message_id else {}),
                    },
                    importance=fact.importance,
                    fact_key=fact.key,
                    source_message_id=message_id,
                )
                new[memory.memory_id] = (memory, vector)
            else:
                memory, changed = self._refreshed(
                    existing, fact, session_id=session_id, message_id=message_id, method=method
                )
                if existing.memory_id in new:  # a fact of this batch, not yet stored
                    new[memory.memory_id] = (
                        memory,
                        vector if changed else new[memory.memory_id][1],
                    )
                else:
                    earlier = updates.get(memory.memory_id)
                    keep = earlier[1] if earlier is not None else None
                    updates[memory.memory_id] = (memory, vector if changed else keep)
            by_key[fact.key] = memory
            if memory.fact_key:
                by_key[memory.fact_key] = memory
            current[memory.memory_id] = memory
            stored.append(memory)
        if updates:
            await self.store.update_contents(list(updates.values()), self.model)
        if new:
            memories = [m for m, _ in new.values()]
            await self.store.insert(memories, np.stack([v for _, v in new.values()]), self.model)
            await self._link_many(list(new.values()))
        return [current[m.memory_id] for m in stored]  # a fact updated twice: its last state

    @staticmethod
    def _refreshed(
        existing: Memory,
        fact: Fact,
        *,
        session_id: str | None,
        message_id: str | None,
        method: str,
    ) -> tuple[Memory, bool]:
        """``existing`` after ``fact`` was stated again: confirmed when the text is the
        same, otherwise replaced (the old text kept in ``previous``); True when the text
        (and so the vector) changed."""
        now = utcnow()
        meta = dict(existing.metadata)
        if _norm_text(existing.content) == _norm_text(fact.text):
            meta["confirmations"] = int(meta.get("confirmations", 0)) + 1
            meta["last_confirmed_at"] = now.isoformat()
            confirmed = replace(
                existing,
                metadata=meta,
                importance=min(1.0, max(existing.importance, fact.importance) + 0.05),
                updated_at=now,
            )
            return confirmed, False
        history = list(meta.get("previous") or [])
        history.insert(0, {"content": existing.content, "until": now.isoformat()})
        meta["previous"] = history[:5]
        meta["source"] = method
        if message_id:
            meta["message_id"] = message_id
        replaced = replace(
            existing,
            content=fact.text,
            metadata=meta,
            importance=max(existing.importance, fact.importance),
            fact_key=existing.fact_key or fact.key,
            session_id=session_id or existing.session_id,
            source_message_id=message_id or existing.source_message_id,
            updated_at=now,
        )
        return replaced, True

    # -- delete -------------------------------------------------------------------------
    async def delete(self, user_id: str, memory_id: str) -> bool:
        async with self.lock(user_id):
            memory = await self.store.get(user_id, memory_id)
            if memory is None:
                return False
            await self.store.delete_ids(user_id, [memory_id])
            if memory.session_id and memory.tier == "mid_term":
                self._forget_summaries(user_id, memory.session_id)
            if memory.session_id and memory.tier in ("short_term", "mid_term") and self.cache:
                await self.cache.drop_session(user_id, memory.session_id)
            return True

    async def delete_session(self, user_id: str, session_id: str) -> int:
        async with self.lock(user_id):
            ids = [m for _, m in await self.store.ids_where(user_id=user_id, session_id=session_id)]
            deleted = await self.store.delete_ids(user_id, ids)
            self._forget_summaries(user_id, session_id)
            if self.cache is not None:
                await self.cache.drop_session(user_id, session_id)
            return deleted

    async def delete_user(self, user_id: str) -> int:
        async with self.lock(user_id):
            deleted = await self.store.delete_user(user_id)
            self._forget_summaries(user_id)
            if self.cache is not None:
                await self.cache.drop_user(user_id)
            return deleted

    async def flush(
        self, user_id: str | None, tier: str | None, older_than: datetime | None
    ) -> tuple[int, int]:
        """Admin flush: ``(memories deleted, links deleted)``."""
        rows = await self.store.ids_where(user_id=user_id, tier=tier, older_than=older_than)
        by_user: dict[str, list[str]] = {}
        for uid, mid in rows:
            by_user.setdefault(uid, []).append(mid)
        deleted = 0
        for uid, ids in by_user.items():
            async with self.lock(uid):
                deleted += await self.store.delete_ids(uid, ids)
            self._forget_summaries(uid)
        links_deleted = 0
        if tier == "associative":
            links_deleted = await self.store.delete_links_where(
                user_id=user_id, older_than=older_than
            )
        if self.cache is not None and (tier in (None, "short_term", "mid_term")):
            if user_id is None:
                await self.cache.drop_all()
            else:
                await self.cache.drop_user(user_id)
        return deleted, links_deleted

    # -- maintenance --------------------------------------------------------------------
    async def warm_up(self) -> None:
        """Load the embedding model (so the first chat turns do not wait for it) and embed
        memories that have no vector of the current model (after a change of embedder)."""
        try:
            await self.embedder.load()
        except Exception as exc:  # the first embedding will try again and report it
            self.log.warning("memory: loading the embedder failed: %s", exc)
        finally:
            self.loading_model = False
        if self.embedder.dim is None:
            return  # openai: the dimension is known after its first answer
        try:
            n = await self.reembed_missing()
            if n:
                self.log.info(
                    "memory: embedded %d memories for model %s", n, self.embedder.model_id
                )
        except Exception as exc:
            self.log.warning("memory: warm-up failed: %s", exc)

    async def reembed_missing(self, batch: int = 64) -> int:
        """Embed memories that have no vector of the current model (after switching
        embedders); runs in the background at start."""
        dim = self.embedder.dim
        if dim is None:
            return 0
        total = 0
        while True:
            todo = await self.store.missing_vectors(self.model, dim, batch)
            if not todo:
                return total
            vectors = await self.embed([m.content for m in todo], background=True)
            await self.store.replace_vectors(todo, vectors, self.model)
            total += len(todo)


def rank(
    candidates: list[Memory], top_k: int, *, importance: float = 0.1, recency: float = 0.05
) -> list[Memory]:
    """Order by score, nudged by importance and recency.

    ``rank = score + 0.1·(importance − 0.5) + 0.05·exp(−age_days / 30)`` (semantic; the
    fused score of hybrid search takes 0.02 and 0.01), age counted from when what the
    memory says happened (``occurred_at``): a near tie in meaning goes to the more
    important, then the more recent memory; a clearly better match always wins.
    ``score`` stays what it was (the cosine is what ``min_score`` filters).
    """
    now = utcnow()

    def key(m: Memory) -> float:
        age_days = max(0.0, (now - m.happened_at).total_seconds() / 86400)
        return (
            (m.score or 0.0)
            + importance * (m.importance - 0.5)
            + recency * math.exp(-age_days / 30)
        )

    return sorted(candidates, key=key, reverse=True)[:top_k]
