"""Searching the vectors: through the in-process index when it is on, else in SQL.

:class:`VectorSearch` is the memory service's one way to vector search, and the index's
one writer: it listens to the store (``store.listeners``) and applies every committed
change to the index, so the store never sees the index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from ..domain import Memory, search_hit
from ..store import MemoryStore
from .index import VectorIndex, _Entry

# An index entry this small is scanned on the event loop, a bigger one in a worker thread.
INLINE_SEARCH_ROWS = 2048


class VectorSearch:
    def __init__(self, store: MemoryStore, index: VectorIndex | None) -> None:
        self.store = store
        self.index = index
        if index is not None:
            store.listeners.append(self)

    # -- the store's changes, applied to the index (store.VectorListener) ------------------
    def vectors_added(self, memories: Sequence[Memory], vectors: np.ndarray, model: str) -> None:
        assert self.index is not None
        by_user: dict[str, list[int]] = {}
        for i, m in enumerate(memories):
            by_user.setdefault(m.user_id, []).append(i)
        for user_id, rows in by_user.items():
            self.index.on_add(
                user_id,
                model,
                [memories[i].memory_id for i in rows],
                [memories[i].tier for i in rows],
                [memories[i].session_id for i in rows],
                np.asarray(vectors[rows], dtype=np.float32),
            )

    def vectors_removed(self, user_id: str | None, ids: Sequence[str]) -> None:
        assert self.index is not None
        self.index.on_remove(user_id, ids)

    def user_dropped(self, user_id: str) -> None:
        assert self.index is not None
        self.index.drop_user(user_id)

    # -- search ------------------------------------------------------------------------------
    async def search(
        self,
        user_id: str,
        vector: np.ndarray,
        model: str,
        *,
        limit: int,
        tiers: Sequence[str] | None = None,
        session_id: str | None = None,
        exclude_session_tiers: tuple[str | None, Sequence[str]] | None = None,
        min_score: float | None = None,
        rows: bool = True,
    ) -> list[Memory]:
        """The caller's memories most similar to ``vector`` (cosine, best first).
        ``rows=False``: through the index, memories with only their id and score set (the
        hybrid search reads the rows of the fused top only).

        ``exclude_session_tiers=(session, tiers)`` leaves out those tiers of one session
        (the context hook skips the turns the chat history already carries).
        """
        store = self.store
        dim = int(vector.shape[0])
        if dim not in await store.dims(dim):
            return []
        if self.index is not None and self.index.enabled:
            found = await self._search_index(
                user_id,
                vector,
                model,
                dim,
                limit,
                tiers,
                session_id,
                exclude_session_tiers,
                min_score,
                rows,
            )
            if found is not None:
                return found
        if store.db.engine != "duckdb":
            return await self._search_scan(
                user_id,
                model,
                dim,
                vector,
                limit,
                tiers,
                session_id,
                exclude_session_tiers,
                min_score,
            )
        return await store.search_sql(
            user_id,
            vector,
            model,
            dim,
            limit=limit,
            tiers=tiers,
            session_id=session_id,
            exclude_session_tiers=exclude_session_tiers,
            min_score=min_score,
        )

    async def _search_scan(
        self,
        user_id: str,
        model: str,
        dim: int,
        vector: np.ndarray,
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str | None, Sequence[str]] | None,
        min_score: float | None,
    ) -> list[Memory]:
        """Search without the index on an engine with no vector functions: the user's
        vectors are read and scanned here, with the index's own exact scan."""
        ids, tier_list, sessions, matrix = await self.store.load_vectors(user_id, model, dim)
        entry = _Entry(dim=dim, matrix=np.zeros((0, dim), np.float32))
        entry.add(ids, tier_list, sessions, matrix)
        hits = await asyncio.to_thread(
            entry.search, vector, limit, tiers, session_id, exclude, min_score
        )
        return await self.store.read_hits(user_id, hits)

    async def _search_index(
        self,
        user_id: str,
        vector: np.ndarray,
        model: str,
        dim: int,
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str | None, Sequence[str]] | None,
        min_score: float | None,
        rows: bool = True,
    ) -> list[Memory] | None:
        """Search through the in-process index (index.py) when this user has enough
        vectors for it to pay; None means: use the SQL path."""
        entry = await self._index_entry(user_id, model, dim)
        if entry is None:
            return None
        query = (vector, limit, tiers, session_id, exclude, min_score)
        if entry.n <= INLINE_SEARCH_ROWS:  # (about 0.1 ms: less than the hop to a thread)
            hits = entry.search(*query)
        else:
            hits = await asyncio.to_thread(entry.search, *query)
        if not rows:
            return [search_hit(user_id, memory_id, score) for memory_id, score in hits]
        return await self.store.read_hits(user_id, hits)

    async def search_any(
        self,
        user_id: str,
        vectors: np.ndarray,
        model: str,
        *,
        limit: int,
        tiers: Sequence[str] | None = None,
    ) -> list[Memory]:
        """The memories most similar to any of ``vectors`` (each scored by its best),
        best first: through the index, one scan per vector and one read of the rows;
        otherwise one search per vector."""
        dim = int(vectors.shape[1])
        entry = None
        if len(vectors) > 1 and self.index is not None and self.index.enabled:
            known = dim in await self.store.dims(dim)
            entry = await self._index_entry(user_id, model, dim) if known else None
        if entry is None:
            found: dict[str, Memory] = {}
            for vector in vectors:
                for m in await self.search(user_id, vector, model, limit=limit, tiers=tiers):
                    if m.memory_id not in found or (m.score or 0) > (found[m.memory_id].score or 0):
                        found[m.memory_id] = m
            return sorted(found.values(), key=lambda m: m.score or 0.0, reverse=True)[:limit]
        index_entry = entry

        def scan() -> list[tuple[str, float]]:
            best: dict[str, float] = {}
            for vector in vectors:
                for memory_id, score in index_entry.search(vector, limit, tiers, None, None, None):
                    best[memory_id] = max(score, best.get(memory_id, score))
            return sorted(best.items(), key=lambda h: h[1], reverse=True)[:limit]

        return await self.store.read_hits(user_id, await asyncio.to_thread(scan))

    async def _index_entry(self, user_id: str, model: str, dim: int) -> _Entry | None:
        """This user's loaded index entry (loading it if the user has enough vectors)."""
        index = self.index
        assert index is not None
        known = index.min_vectors if index.has(user_id, model) else None
        count = known if known is not None else index.known_count(user_id, model)
        if count is None:
            # counted once; the index keeps the count in step with every add and remove
            count = await self.store.count_vectors(user_id, model, dim)
            index.note_count(user_id, model, count)

        async def load() -> tuple[list[str], list[str], list[str | None], np.ndarray]:
            return await self.store.load_vectors(user_id, model, dim)

        entry = await index.ensure(user_id, model, count, load)
        if entry is None or entry.dim != dim:
            return None
        index.maybe_build_ivf(entry)
        return entry
