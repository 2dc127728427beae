"""All SQL of the memory plugin (DuckDB through ``context.database``).

Tables
- ``memory_items``: one row per memory of every tier. ``fact_key`` names what a long-term
  fact is about (``location``, ``likes:coffee``) so a newer fact replaces an older one;
  ``parent_id`` ties a knowledge chunk to its document; ``searchable`` is false for a
  document row whose text lives in its chunks.
- ``memory_vectors_<dim>``: the embedding of each searchable memory, as a fixed-size
  ``FLOAT[<dim>]`` array (one table per dimension, because the array size is part of
  the type; ``model`` keeps vectors of different models apart). ``user_id``, ``tier``
  and ``session_id`` are copied here so a search scans one table and joins only the
  top candidates.
- ``memory_links``: the associative tier, undirected edges stored once (``a_id < b_id``).
- ``memory_entities``: names found in a memory, to link memories about the same thing.

Timestamps are naive UTC ``TIMESTAMP``s. No primary keys: DuckDB's ART constraints make
updates delete+insert and slow bulk loads; ids are uuids made here, and a plain index
serves point lookups.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sdk import Database

from .index import VectorIndex

ITEM_COLUMNS = (
    "memory_id, user_id, tier, session_id, content, metadata, importance, fact_key, "
    "parent_id, source_message_id, searchable, created_at, updated_at"
)
_DIM_TABLE = re.compile(r"^memory_vectors_(\d+)$")


def new_id() -> str:
    return "mem_" + uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.replace(microsecond=(ts.microsecond // 1000) * 1000).isoformat() + "Z"


@dataclass(slots=True)
class Memory:
    memory_id: str
    user_id: str
    tier: str
    session_id: str | None
    content: str
    metadata: dict[str, Any]
    importance: float
    fact_key: str | None
    parent_id: str | None
    source_message_id: str | None
    searchable: bool
    created_at: datetime
    updated_at: datetime
    score: float | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Memory:
        try:
            metadata = json.loads(row[5]) if row[5] else {}
        except ValueError:
            metadata = {}
        return cls(
            memory_id=row[0],
            user_id=row[1],
            tier=row[2],
            session_id=row[3],
            content=row[4],
            metadata=metadata,
            importance=float(row[6]),
            fact_key=row[7],
            parent_id=row[8],
            source_message_id=row[9],
            searchable=bool(row[10]),
            created_at=row[11],
            updated_at=row[12],
            score=float(row[13]) if len(row) > 13 and row[13] is not None else None,
        )

    def to_api(self, related: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "memory_id": self.memory_id,
            "tier": self.tier,
            "content": self.content,
            "session_id": self.session_id,
            "importance": round(self.importance, 4),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "metadata": self.metadata,
            "related": related or [],
        }
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out


class MemoryStore:
    def __init__(self, db: Database, index: VectorIndex | None = None) -> None:
        self.db = db
        self.index = index
        self._dims: set[int] = set()
        self._ddl_lock = asyncio.Lock()

    # -- schema -----------------------------------------------------------------------
    async def create_schema(self) -> None:
        def ddl(cur: Any) -> list[str]:
            cur.execute(
                """
                CREATE TABLE IF NOT EXISTS memory_items (
                    memory_id VARCHAR NOT NULL,
                    user_id VARCHAR NOT NULL,
                    tier VARCHAR NOT NULL,
                    session_id VARCHAR,
                    content VARCHAR NOT NULL,
                    metadata VARCHAR NOT NULL DEFAULT '{}',
                    importance DOUBLE NOT NULL DEFAULT 0.5,
                    fact_key VARCHAR,
                    parent_id VARCHAR,
                    source_message_id VARCHAR,
                    searchable BOOLEAN NOT NULL DEFAULT TRUE,
                    created_at TIMESTAMP NOT NULL,
                    updated_at TIMESTAMP NOT NULL
                )
                """
            )
            cur.execute("CREATE INDEX IF NOT EXISTS memory_items_id ON memory_items (memory_id)")
            cur.execute(
                """
                CREATE TABLE IF NOT EXISTS memory_links (
                    user_id VARCHAR NOT NULL,
                    a_id VARCHAR NOT NULL,
                    b_id VARCHAR NOT NULL,
                    kind VARCHAR NOT NULL,
                    weight DOUBLE NOT NULL DEFAULT 1.0,
                    created_at TIMESTAMP NOT NULL
                )
                """
            )
            cur.execute(
                """
                CREATE TABLE IF NOT EXISTS memory_entities (
                    user_id VARCHAR NOT NULL,
                    memory_id VARCHAR NOT NULL,
                    entity VARCHAR NOT NULL
                )
                """
            )
            rows = cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'memory_vectors_%'"
            ).fetchall()
            return [r[0] for r in rows]

        for name in await self.db.run(ddl):
            m = _DIM_TABLE.match(name)
            if m:
                self._dims.add(int(m.group(1)))

    async def ensure_dim(self, dim: int) -> None:
        if dim in self._dims:
            return
        async with self._ddl_lock:
            if dim not in self._dims:
                await self._create_dim(int(dim))

    async def _create_dim(self, dim: int) -> None:
        await self.db.execute(
            f"""
            CREATE TABLE IF NOT EXISTS memory_vectors_{dim} (
                memory_id VARCHAR NOT NULL,
                user_id VARCHAR NOT NULL,
                tier VARCHAR NOT NULL,
                session_id VARCHAR,
                model VARCHAR NOT NULL,
                embedding FLOAT[{dim}] NOT NULL
            )
            """
        )
        await self.db.execute(
            f"CREATE INDEX IF NOT EXISTS memory_vectors_{dim}_id ON memory_vectors_{dim} (memory_id)"
        )
        self._dims.add(dim)

    # -- writes -----------------------------------------------------------------------
    async def insert(
        self,
        memories: Sequence[Memory],
        vectors: np.ndarray | None,
        model: str,
    ) -> None:
        """Insert memories and (for the searchable ones, in the same order) their vectors."""
        if not memories:
            return
        searchable = [m for m in memories if m.searchable]
        dim = int(vectors.shape[1]) if vectors is not None and len(searchable) else 0
        if dim:
            await self.ensure_dim(dim)
        item_rows = [_item_row(m) for m in memories]

        def write(cur: Any) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                if len(item_rows) <= 16:
                    cur.executemany(
                        f"INSERT INTO memory_items ({ITEM_COLUMNS}) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        item_rows,
                    )
                else:
                    _bulk_items(cur, item_rows)
                if dim:
                    assert vectors is not None
                    _bulk_vectors(cur, dim, searchable, vectors, model)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        await self.db.run(write)
        if dim and self.index is not None:
            assert vectors is not None
            self._index_add(searchable, vectors[: len(searchable)], model)

    def _index_add(self, memories: Sequence[Memory], vectors: np.ndarray, model: str) -> None:
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

    async def update_content(
        self,
        memory: Memory,
        vector: np.ndarray | None,
        model: str,
    ) -> None:
        """Rewrite a memory's text, metadata, importance (and vector) in place."""
        dim = int(vector.shape[0]) if vector is not None else 0
        if dim:
            await self.ensure_dim(dim)
        dims = sorted(self._dims)

        def write(cur: Any) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(
                    "UPDATE memory_items SET content = ?, metadata = ?, importance = ?, "
                    "fact_key = ?, session_id = ?, source_message_id = ?, updated_at = ? "
                    "WHERE memory_id = ? AND user_id = ?",
                    [
                        memory.content,
                        json.dumps(memory.metadata),
                        memory.importance,
                        memory.fact_key,
                        memory.session_id,
                        memory.source_message_id,
                        memory.updated_at,
                        memory.memory_id,
                        memory.user_id,
                    ],
                )
                if dim:
                    for d in dims:
                        cur.execute(
                            f"DELETE FROM memory_vectors_{d} WHERE memory_id = ?",
                            [memory.memory_id],
                        )
                    assert vector is not None
                    cur.execute(
                        f"INSERT INTO memory_vectors_{dim} VALUES (?, ?, ?, ?, ?, ?::FLOAT[{dim}])",
                        [
                            memory.memory_id,
                            memory.user_id,
                            memory.tier,
                            memory.session_id,
                            model,
                            vector.astype(np.float32).tolist(),
                        ],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        await self.db.run(write)
        if dim and self.index is not None:
            assert vector is not None
            self._index_add([memory], vector.reshape(1, -1), model)

    async def touch(self, user_id: str, memory_id: str, importance: float) -> None:
        await self.db.execute(
            "UPDATE memory_items SET importance = ?, updated_at = ? WHERE memory_id = ? AND user_id = ?",
            [importance, utcnow(), memory_id, user_id],
        )

    # -- reads ------------------------------------------------------------------------
    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        row = await self.db.fetchone(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE memory_id = ? AND user_id = ?",
            [memory_id, user_id],
        )
        return Memory.from_row(row) if row else None

    async def get_many(self, user_id: str, memory_ids: Iterable[str]) -> list[Memory]:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return []
        out: list[Memory] = []
        # A constant IN list lets DuckDB use the memory_id index (faster than unnest).
        for start in range(0, len(ids), 256):
            part = ids[start : start + 256]
            rows = await self.db.fetchall(
                f"SELECT {ITEM_COLUMNS} FROM memory_items "
                f"WHERE user_id = ? AND memory_id IN ({', '.join('?' * len(part))})",
                [user_id, *part],
            )
            out.extend(Memory.from_row(r) for r in rows)
        return out

    async def list_session(
        self, user_id: str, session_id: str, tier: str | None = None
    ) -> list[Memory]:
        sql = f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = ? AND session_id = ?"
        params: list[Any] = [user_id, session_id]
        if tier:
            sql += " AND tier = ?"
            params.append(tier)
        rows = await self.db.fetchall(sql + " ORDER BY created_at, memory_id", params)
        return [Memory.from_row(r) for r in rows]

    async def recent(self, user_id: str, session_id: str, tier: str, limit: int) -> list[Memory]:
        """The newest ``limit`` memories of a tier in a session, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = ? AND session_id = ? "
            "AND tier = ? ORDER BY created_at DESC, memory_id DESC LIMIT ?",
            [user_id, session_id, tier, limit],
        )
        return [Memory.from_row(r) for r in reversed(rows)]

    async def find_fact(self, user_id: str, fact_key: str) -> Memory | None:
        row = await self.db.fetchone(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = ? AND tier = 'long_term' "
            "AND fact_key = ? ORDER BY updated_at DESC LIMIT 1",
            [user_id, fact_key],
        )
        return Memory.from_row(row) if row else None

    async def search(
        self,
        user_id: str,
        vector: np.ndarray,
        model: str,
        *,
        limit: int,
        tiers: Sequence[str] | None = None,
        session_id: str | None = None,
        exclude_session_tiers: tuple[str, Sequence[str]] | None = None,
        min_score: float | None = None,
    ) -> list[Memory]:
        """The caller's memories most similar to ``vector`` (cosine, best first).

        ``exclude_session_tiers=(session, tiers)`` leaves out those tiers of one session
        (the context hook skips the turns the chat history already carries).
        """
        dim = int(vector.shape[0])
        if dim not in self._dims:
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
            )
            if found is not None:
                return found
        where = ["user_id = ?", "model = ?"]
        params: list[Any] = [vector.astype(np.float32).tolist(), user_id, model]
        if tiers:
            where.append("tier IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(tiers))
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if exclude_session_tiers is not None:
            ex_session, ex_tiers = exclude_session_tiers
            where.append(
                "NOT (session_id IS NOT DISTINCT FROM ? AND tier IN (SELECT unnest(?::VARCHAR[])))"
            )
            params.extend([ex_session, list(ex_tiers)])
        having = ""
        if min_score is not None:
            having = "WHERE score >= ?"
        sql = (
            "WITH cand AS ("
            # a zero vector (text with nothing to embed) has no cosine (NaN): rank it as 0
            " SELECT memory_id, coalesce(nullif("
            f"array_cosine_similarity(embedding, ?::FLOAT[{dim}]), 'NaN'::FLOAT), 0.0) AS score"
            f" FROM memory_vectors_{dim} WHERE {' AND '.join(where)}"
            " ORDER BY score DESC LIMIT ?)"
            f" SELECT {', '.join('i.' + c.strip() for c in ITEM_COLUMNS.split(','))}, cand.score"
            " FROM cand JOIN memory_items i ON i.memory_id = cand.memory_id AND i.user_id = ?"
            f" {having} ORDER BY cand.score DESC"
        )
        params.append(limit)
        params.append(user_id)
        if min_score is not None:
            params.append(min_score)
        rows = await self.db.fetchall(sql.replace("WHERE score", "WHERE cand.score"), params)
        return [Memory.from_row(r) for r in rows]

    async def _search_index(
        self,
        user_id: str,
        vector: np.ndarray,
        model: str,
        dim: int,
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str, Sequence[str]] | None,
        min_score: float | None,
    ) -> list[Memory] | None:
        """Search through the in-process index (index.py) when this user has enough
        vectors for it to pay; None means: use the SQL path."""
        assert self.index is not None
        if self.index.has(user_id, model):
            count = self.index.min_vectors
        else:
            count = await self.count_vectors(user_id, model, dim)

        async def load() -> tuple[list[str], list[str], list[str | None], np.ndarray]:
            return await self.load_vectors(user_id, model, dim)

        entry = await self.index.ensure(user_id, model, count, load)
        if entry is None or entry.dim != dim:
            return None
        self.index.maybe_build_ivf(entry)
        hits = await asyncio.to_thread(
            entry.search, vector, limit, tiers, session_id, exclude, min_score
        )
        if not hits:
            return []
        scores = dict(hits)
        found = {m.memory_id: m for m in await self.get_many(user_id, scores)}
        out = []
        for memory_id, score in hits:
            memory = found.get(memory_id)
            if memory is not None:
                memory.score = score
                out.append(memory)
        return out

    async def load_vectors(
        self, user_id: str, model: str, dim: int
    ) -> tuple[list[str], list[str], list[str | None], np.ndarray]:
        """All of one user's vectors of a model, for the index."""

        def read(cur: Any) -> tuple[list[str], list[str], list[str | None], np.ndarray]:
            cols = cur.execute(
                f"SELECT memory_id, tier, session_id, embedding FROM memory_vectors_{dim} "
                "WHERE user_id = ? AND model = ?",
                [user_id, model],
            ).fetchnumpy()
            ids = [str(x) for x in cols["memory_id"]]
            if not ids:
                return [], [], [], np.zeros((0, dim), dtype=np.float32)
            matrix = np.stack([np.asarray(v, dtype=np.float32) for v in cols["embedding"]])
            sessions = [
                None if s is None or s is np.ma.masked else str(s) for s in cols["session_id"]
            ]
            return ids, [str(t) for t in cols["tier"]], sessions, matrix

        return await self.db.run(read)

    async def stats(self, user_id: str, model: str) -> dict[str, Any]:
        tiers = await self.db.fetchall(
            "SELECT tier, count(*) FROM memory_items WHERE user_id = ? GROUP BY tier", [user_id]
        )
        row = await self.db.fetchone(
            "SELECT count(*), count(DISTINCT session_id), min(created_at), max(updated_at), "
            "coalesce(sum(length(content)), 0) FROM memory_items WHERE user_id = ?",
            [user_id],
        )
        links = await self.db.fetchone(
            "SELECT count(*) FROM memory_links WHERE user_id = ?", [user_id]
        )
        embedded = 0
        for dim in sorted(self._dims):
            r = await self.db.fetchone(
                f"SELECT count(*) FROM memory_vectors_{dim} WHERE user_id = ? AND model = ?",
                [user_id, model],
            )
            embedded += int(r[0]) if r else 0
        assert row is not None
        return {
            "tiers": {t: int(n) for t, n in tiers},
            "total": int(row[0]),
            "sessions": int(row[1]),
            "oldest": iso(row[2]),
            "newest": iso(row[3]),
            "content_chars": int(row[4]),
            "links": int(links[0]) if links else 0,
            "embedded": embedded,
        }

    async def missing_vectors(self, model: str, dim: int, limit: int) -> list[Memory]:
        """Searchable memories without a vector of ``model`` (after a change of embedder)."""
        await self.ensure_dim(dim)
        rows = await self.db.fetchall(
            f"SELECT {', '.join('i.' + c.strip() for c in ITEM_COLUMNS.split(','))} "
            f"FROM memory_items i ANTI JOIN (SELECT memory_id FROM memory_vectors_{dim} "
            "WHERE model = ?) v ON v.memory_id = i.memory_id "
            "WHERE i.searchable ORDER BY i.created_at LIMIT ?",
            [model, limit],
        )
        return [Memory.from_row(r) for r in rows]

    async def replace_vectors(
        self, memories: Sequence[Memory], vectors: np.ndarray, model: str
    ) -> None:
        if not memories:
            return
        dim = int(vectors.shape[1])
        await self.ensure_dim(dim)
        dims = sorted(self._dims)
        ids = [m.memory_id for m in memories]

        def write(cur: Any) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                for d in dims:
                    cur.execute(
                        f"DELETE FROM memory_vectors_{d} WHERE memory_id IN (SELECT unnest(?::VARCHAR[]))",
                        [ids],
                    )
                _bulk_vectors(cur, dim, memories, vectors, model)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        await self.db.run(write)
        if self.index is not None:
            self._index_add(memories, vectors, model)

    # -- associative tier -------------------------------------------------------------
    async def add_links(self, user_id: str, links: Iterable[tuple[str, str, str, float]]) -> int:
        """Add undirected links ``(a, b, kind, weight)``; existing ones are kept as they are."""
        rows = []
        seen = set()
        now = utcnow()
        for a, b, kind, weight in links:
            if a == b:
                continue
            a, b = sorted((a, b))
            if (a, b, kind) in seen:
                continue
            seen.add((a, b, kind))
            rows.append((user_id, a, b, kind, float(weight), now))
        if not rows:
            return 0

        def write(cur: Any) -> int:
            added = 0
            cur.execute("BEGIN TRANSACTION")
            try:
                for row in rows:
                    exists = cur.execute(
                        "SELECT 1 FROM memory_links WHERE user_id = ? AND a_id = ? AND b_id = ? AND kind = ?",
                        list(row[:4]),
                    ).fetchone()
                    if not exists:
                        cur.execute("INSERT INTO memory_links VALUES (?, ?, ?, ?, ?, ?)", list(row))
                        added += 1
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return added

        return await self.db.run(write)

    async def related(
        self, user_id: str, memory_ids: Sequence[str]
    ) -> dict[str, list[tuple[str, str, float]]]:
        """For each id, its linked memories ``(other_id, kind, weight)``, strongest first."""
        out: dict[str, list[tuple[str, str, float]]] = {m: [] for m in memory_ids}
        if not memory_ids:
            return out
        rows = await self.db.fetchall(
            "SELECT a_id, b_id, kind, weight FROM memory_links WHERE user_id = ? AND "
            "(a_id IN (SELECT unnest(?::VARCHAR[])) OR b_id IN (SELECT unnest(?::VARCHAR[]))) "
            "ORDER BY weight DESC, created_at DESC",
            [user_id, list(memory_ids), list(memory_ids)],
        )
        for a, b, kind, weight in rows:
            if a in out:
                out[a].append((b, kind, float(weight)))
            if b in out:
                out[b].append((a, kind, float(weight)))
        return out

    async def add_entities(self, user_id: str, memory_id: str, entities: Iterable[str]) -> None:
        rows = [(user_id, memory_id, e) for e in dict.fromkeys(entities)]
        if rows:
            await self.db.executemany("INSERT INTO memory_entities VALUES (?, ?, ?)", rows)

    async def sharing_entities(
        self, user_id: str, memory_id: str, entities: Sequence[str], limit: int
    ) -> list[tuple[str, str]]:
        """Other memories naming one of ``entities``, newest first: ``(memory_id, entity)``."""
        if not entities:
            return []
        rows = await self.db.fetchall(
            "SELECT e.memory_id, e.entity FROM memory_entities e JOIN memory_items i "
            "ON i.memory_id = e.memory_id AND i.user_id = e.user_id "
            "WHERE e.user_id = ? AND e.memory_id <> ? AND e.entity IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY i.created_at DESC LIMIT ?",
            [user_id, memory_id, list(entities), limit],
        )
        return [(r[0], r[1]) for r in rows]

    # -- deletes ----------------------------------------------------------------------
    async def delete_ids(self, user_id: str | None, memory_ids: Sequence[str]) -> int:
        """Delete memories (their knowledge chunks, vectors, links, entities) by id."""
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        dims = sorted(self._dims)

        def write(cur: Any) -> tuple[int, list[str]]:
            cur.execute("BEGIN TRANSACTION")
            try:
                user_clause = " AND user_id = ?" if user_id is not None else ""
                uparams = [user_id] if user_id is not None else []
                # Chunks of deleted documents go with them.
                chunk_rows = cur.execute(
                    "SELECT memory_id FROM memory_items WHERE parent_id IN "
                    f"(SELECT unnest(?::VARCHAR[])){user_clause}",
                    [ids, *uparams],
                ).fetchall()
                all_ids = list(dict.fromkeys(ids + [r[0] for r in chunk_rows]))
                n = cur.execute(
                    "SELECT count(*) FROM memory_items WHERE memory_id IN "
                    f"(SELECT unnest(?::VARCHAR[])){user_clause}",
                    [all_ids, *uparams],
                ).fetchone()[0]
                cur.execute(
                    "DELETE FROM memory_items WHERE memory_id IN "
                    f"(SELECT unnest(?::VARCHAR[])){user_clause}",
                    [all_ids, *uparams],
                )
                for d in dims:
                    cur.execute(
                        f"DELETE FROM memory_vectors_{d} WHERE memory_id IN "
                        f"(SELECT unnest(?::VARCHAR[])){user_clause}",
                        [all_ids, *uparams],
                    )
                cur.execute(
                    "DELETE FROM memory_links WHERE (a_id IN (SELECT unnest(?::VARCHAR[])) "
                    f"OR b_id IN (SELECT unnest(?::VARCHAR[]))){user_clause}",
                    [all_ids, all_ids, *uparams],
                )
                cur.execute(
                    "DELETE FROM memory_entities WHERE memory_id IN "
                    f"(SELECT unnest(?::VARCHAR[])){user_clause}",
                    [all_ids, *uparams],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return int(n), all_ids

        n, all_ids = await self.db.run(write)
        if self.index is not None:
            self.index.on_remove(user_id, all_ids)
        return n

    async def delete_turns(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """Delete short-term turns (the trim after every chat turn): they have no chunks
        and no entities, so only their rows, vectors and (explicit) links go. Constant
        IN lists let DuckDB use the memory_id index instead of scanning every table."""
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        dims = sorted(self._dims)

        def write(cur: Any) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(
                    f"DELETE FROM memory_items WHERE memory_id IN ({marks}) AND user_id = ?",
                    [*ids, user_id],
                )
                for d in dims:
                    cur.execute(
                        f"DELETE FROM memory_vectors_{d} WHERE memory_id IN ({marks}) AND user_id = ?",
                        [*ids, user_id],
                    )
                cur.execute(
                    f"DELETE FROM memory_links WHERE user_id = ? AND "
                    f"(a_id IN ({marks}) OR b_id IN ({marks}))",
                    [user_id, *ids, *ids],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        await self.db.run(write)
        if self.index is not None:
            self.index.on_remove(user_id, ids)

    async def ids_where(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        tier: str | None = None,
        older_than: datetime | None = None,
    ) -> list[tuple[str, str]]:
        """``(user_id, memory_id)`` of the memories matching every given filter."""
        where, params = ["TRUE"], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if tier is not None:
            where.append("tier = ?")
            params.append(tier)
        if older_than is not None:
            where.append("updated_at < ?")
            params.append(older_than)
        rows = await self.db.fetchall(
            f"SELECT user_id, memory_id FROM memory_items WHERE {' AND '.join(where)}", params
        )
        return [(r[0], r[1]) for r in rows]

    async def delete_links_where(
        self, *, user_id: str | None = None, older_than: datetime | None = None
    ) -> int:
        where, params = ["TRUE"], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if older_than is not None:
            where.append("created_at < ?")
            params.append(older_than)
        clause = " AND ".join(where)

        def write(cur: Any) -> int:
            n = cur.execute(f"SELECT count(*) FROM memory_links WHERE {clause}", params).fetchone()[
                0
            ]
            cur.execute(f"DELETE FROM memory_links WHERE {clause}", params)
            return int(n)

        return await self.db.run(write)

    async def delete_user(self, user_id: str) -> int:
        dims = sorted(self._dims)

        def write(cur: Any) -> int:
            cur.execute("BEGIN TRANSACTION")
            try:
                n = cur.execute(
                    "SELECT count(*) FROM memory_items WHERE user_id = ?", [user_id]
                ).fetchone()[0]
                for table in ["memory_items", "memory_links", "memory_entities"] + [
                    f"memory_vectors_{d}" for d in dims
                ]:
                    cur.execute(f"DELETE FROM {table} WHERE user_id = ?", [user_id])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return int(n)

        n = await self.db.run(write)
        if self.index is not None:
            self.index.drop_user(user_id)
        return n

    async def count_vectors(self, user_id: str, model: str, dim: int) -> int:
        if dim not in self._dims:
            return 0
        row = await self.db.fetchone(
            f"SELECT count(*) FROM memory_vectors_{dim} WHERE user_id = ? AND model = ?",
            [user_id, model],
        )
        return int(row[0]) if row else 0


def _item_row(m: Memory) -> tuple[Any, ...]:
    return (
        m.memory_id,
        m.user_id,
        m.tier,
        m.session_id,
        m.content,
        json.dumps(m.metadata, ensure_ascii=False),
        float(m.importance),
        m.fact_key,
        m.parent_id,
        m.source_message_id,
        bool(m.searchable),
        m.created_at,
        m.updated_at,
    )


def _bulk_items(cur: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert many item rows through a registered columnar view (much faster than executemany)."""
    cols = [c.strip() for c in ITEM_COLUMNS.split(",")]
    data = {c: np.array([r[i] for r in rows], dtype=object) for i, c in enumerate(cols)}
    data["importance"] = np.array([r[6] for r in rows], dtype=np.float64)
    data["searchable"] = np.array([r[10] for r in rows], dtype=bool)
    data["created_at"] = np.array([r[11] for r in rows], dtype="datetime64[us]")
    data["updated_at"] = np.array([r[12] for r in rows], dtype="datetime64[us]")
    view = "memory_bulk_items_" + uuid.uuid4().hex
    cur.register(view, data)
    try:
        cur.execute(f"INSERT INTO memory_items ({ITEM_COLUMNS}) SELECT {ITEM_COLUMNS} FROM {view}")
    finally:
        cur.unregister(view)


def _bulk_vectors(
    cur: Any, dim: int, memories: Sequence[Memory], vectors: np.ndarray, model: str
) -> None:
    """Insert vectors as FLOAT[dim] arrays: the matrix goes in flat and is regrouped in SQL."""
    n = len(memories)
    vectors = np.ascontiguousarray(vectors[:n], dtype=np.float32)
    if n == 1:
        m = memories[0]
        cur.execute(
            f"INSERT INTO memory_vectors_{dim} VALUES (?, ?, ?, ?, ?, ?::FLOAT[{dim}])",
            [m.memory_id, m.user_id, m.tier, m.session_id, model, vectors[0].tolist()],
        )
        return
    meta = {
        "rid": np.arange(n, dtype=np.int64),
        "memory_id": np.array([m.memory_id for m in memories], dtype=object),
        "user_id": np.array([m.user_id for m in memories], dtype=object),
        "tier": np.array([m.tier for m in memories], dtype=object),
        "session_id": np.array([m.session_id for m in memories], dtype=object),
    }
    flat = {
        "rid": np.repeat(np.arange(n, dtype=np.int64), dim),
        "pos": np.tile(np.arange(dim, dtype=np.int32), n),
        "x": vectors.ravel(),
    }
    suffix = uuid.uuid4().hex
    cur.register("memory_bulk_meta_" + suffix, meta)
    cur.register("memory_bulk_flat_" + suffix, flat)
    try:
        cur.execute(
            f"INSERT INTO memory_vectors_{dim} "
            f"SELECT m.memory_id, m.user_id, m.tier, m.session_id, ?, v.embedding "
            f"FROM memory_bulk_meta_{suffix} m JOIN ("
            f" SELECT rid, list(x ORDER BY pos)::FLOAT[{dim}] AS embedding"
            f" FROM memory_bulk_flat_{suffix} GROUP BY rid) v ON v.rid = m.rid "
            "ORDER BY m.rid",
            [model],
        )
    finally:
        cur.unregister("memory_bulk_meta_" + suffix)
        cur.unregister("memory_bulk_flat_" + suffix)
