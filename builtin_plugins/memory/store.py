"""All SQL of the memory plugin (``context.database``: the DuckDB file or PostgreSQL).

Tables
- ``memory_items``: one row per memory of every tier. ``fact_key`` names what a long-term
  fact is about (``location``, ``likes:coffee``) so a newer fact replaces an older one;
  ``parent_id`` ties a knowledge chunk to its document; ``searchable`` is false for a
  document row whose text lives in its chunks.
- ``memory_vectors_<dim>``: the embedding of each searchable memory, in the engine's
  vector type (DuckDB: a fixed-size ``FLOAT[<dim>]`` array, searchable in SQL;
  PostgreSQL: float32 bytes, searched in process). One table per dimension, because the
  array size is part of the type; ``model`` keeps vectors of different models apart. ``user_id``, ``tier``
  and ``session_id`` are copied here so a search scans one table and joins only the
  top candidates.
- ``memory_links``: the associative tier, undirected edges stored once (``a_id < b_id``).
- ``memory_entities``: names found in a memory, to link memories about the same thing.

Timestamps are naive UTC ``TIMESTAMP``s. No primary keys: DuckDB's ART constraints make
updates delete+insert and slow bulk loads; ids are uuids made here, and a plain index
serves point lookups. The tables are made by ``MIGRATIONS`` (applied by the kernel), the
vector tables on first use of a dimension.

The store knows nothing of the in-process vector index (``vectors/``): it tells its
``listeners`` of every change to the vectors once the write has committed. It keeps two
caches of its own, on DuckDB only (one process owns the file, so every write goes
through here): the rows and links a reply reads (``rowcache.py``) and the users' BM25
postings (``keyindex.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from sdk import Database, Migration, Transaction

from .domain import Memory, iso, utcnow
from .keyindex import KeywordIndex
from .keywords import BM25_B, BM25_K1, term_counts
from .rowcache import Link, RowCache

ITEM_COLUMNS = (
    "memory_id, user_id, tier, session_id, content, metadata, importance, fact_key, "
    "parent_id, source_message_id, searchable, created_at, updated_at, occurred_at"
)
_DIM_TABLE = re.compile(r"^memory_vectors_(\d+)$")
_ITEM_NAMES = [c.strip() for c in ITEM_COLUMNS.split(",")]
_VECTOR_COLUMNS = ["memory_id", "user_id", "tier", "session_id", "model", "embedding"]
_TERM_COLUMNS = ["user_id", "memory_id", "term", "tf", "dl", "tier", "session_id"]
# A user's memory count and mean length in terms (BM25's N and avgdl) are read at most
# this often; they move slowly, and any process's writes are counted at the next read.
TERM_STATS_SECONDS = 5.0


async def _user_indexes(tx: Transaction) -> None:
    """PostgreSQL needs these for per-user reads; DuckDB scans its columns fast without
    them, and each ART index would slow its bulk loads."""
    if tx.engine != "postgresql":
        return
    await tx.execute("CREATE INDEX memory_items_user ON memory_items (user_id, session_id)")
    await tx.execute("CREATE INDEX memory_links_user ON memory_links (user_id)")
    await tx.execute("CREATE INDEX memory_entities_user ON memory_entities (user_id, entity)")


async def _index_terms(tx: Transaction) -> None:
    """Index the words of the memories stored before the keyword index existed."""
    if tx.engine == "postgresql":
        await tx.execute("CREATE INDEX memory_terms_user ON memory_terms (user_id, term)")
        await tx.execute("CREATE INDEX memory_terms_id ON memory_terms (memory_id)")
    rows = await tx.fetchall(
        "SELECT memory_id, user_id, tier, session_id, content FROM memory_items WHERE searchable"
    )
    for start in range(0, len(rows), 1000):
        term_rows, _ = _term_rows(r[:5] for r in rows[start : start + 1000])
        await tx.insert_rows("memory_terms", _TERM_COLUMNS, term_rows)
    await tx.execute(
        "UPDATE memory_items SET n_terms = t.dl FROM (SELECT memory_id, max(dl) AS dl "
        "FROM memory_terms GROUP BY memory_id) t WHERE memory_items.memory_id = t.memory_id"
    )


MIGRATIONS = [
    Migration(
        1,
        "memories, links and entities",
        [
            """CREATE TABLE IF NOT EXISTS memory_items (
                memory_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                tier TEXT NOT NULL,
                session_id TEXT,
                content TEXT NOT NULL,
                metadata TEXT NOT NULL DEFAULT '{}',
                importance DOUBLE PRECISION NOT NULL DEFAULT 0.5,
                fact_key TEXT,
                parent_id TEXT,
                source_message_id TEXT,
                searchable BOOLEAN NOT NULL DEFAULT TRUE,
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS memory_items_id ON memory_items (memory_id)",
            """CREATE TABLE IF NOT EXISTS memory_links (
                user_id TEXT NOT NULL,
                a_id TEXT NOT NULL,
                b_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                weight DOUBLE PRECISION NOT NULL DEFAULT 1.0,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS memory_entities (
                user_id TEXT NOT NULL,
                memory_id TEXT NOT NULL,
                entity TEXT NOT NULL
            )""",
        ],
    ),
    Migration(2, "per-user indexes (PostgreSQL)", run=_user_indexes),
    Migration(
        3,
        "occurred_at, and the keyword index (memory_terms)",
        [
            "ALTER TABLE memory_items ADD COLUMN occurred_at TIMESTAMP",
            "ALTER TABLE memory_items ADD COLUMN n_terms INTEGER",
            """CREATE TABLE IF NOT EXISTS memory_terms (
                user_id TEXT NOT NULL,
                memory_id TEXT NOT NULL,
                term TEXT NOT NULL,
                tf INTEGER NOT NULL,
                dl INTEGER NOT NULL,
                tier TEXT NOT NULL,
                session_id TEXT
            )""",
        ],
        run=_index_terms,
    ),
]


class VectorListener(Protocol):
    """What hears of the store's changes to vectors, once committed (vectors/: the
    in-process index, kept in step)."""

    def vectors_added(self, memories: Sequence[Memory], vectors: np.ndarray, model: str) -> None:
        """New (or replaced) vectors of ``memories``, row for row."""

    def vectors_removed(self, user_id: str | None, ids: Sequence[str]) -> None:
        """Memories deleted (None: of any user)."""

    def user_dropped(self, user_id: str) -> None:
        """Every memory of a user deleted."""


class MemoryStore:
    def __init__(
        self,
        db: Database,
        row_cache_bytes: int = 0,
        keyword_bytes: int = 0,
    ) -> None:
        self.db = db
        # told of every change to the vectors, once committed (the vector index)
        self.listeners: list[VectorListener] = []
        # BM25 postings in process (keyindex.py): only on DuckDB, which one process owns
        self.keywords: KeywordIndex | None = (
            KeywordIndex(keyword_bytes) if keyword_bytes > 0 and db.engine == "duckdb" else None
        )
        # Rows and links read on the reply's path (rowcache.py): only where every write
        # goes through this store, i.e. DuckDB, which one process owns.
        self.rows: RowCache[Memory] = RowCache(row_cache_bytes if db.engine == "duckdb" else 0)
        self._dims: set[int] = set()
        self._ddl_lock = asyncio.Lock()
        # user -> (valid until, N, avgdl) of term_stats
        self._term_stats: dict[str, tuple[float, int, float]] = {}

    def _writing(self, user_ids: Iterable[str]) -> contextlib.ExitStack:
        """:meth:`RowCache.writing` for each of these users."""
        stack = contextlib.ExitStack()
        for user_id in dict.fromkeys(user_ids):
            stack.enter_context(self.rows.writing(user_id))
        return stack

    # -- schema -----------------------------------------------------------------------
    async def load_dims(self) -> None:
        """Learn which vector tables exist (the tables come from ``MIGRATIONS``)."""
        for name in await self.db.tables("memory_vectors_"):
            m = _DIM_TABLE.match(name)
            if m:
                self._dims.add(int(m.group(1)))

    async def dims(self, wanted: int | None = None) -> list[int]:
        """The dimensions that have a vector table. On PostgreSQL other processes may have
        made one since this process last looked (a remote embedder's dimension is known
        only after its first answer, on whichever process that was): read them from the
        database, for a write or delete every time, for a search only when ``wanted`` is
        not known yet. DuckDB has one process: what it made is all there is."""
        if self.db.engine == "postgresql" and (wanted is None or wanted not in self._dims):
            await self.load_dims()
        return sorted(self._dims)

    async def prepare_copy(self, target: MemoryStore) -> list[str]:
        """Make this store's vector tables in ``target``; name every table to copy."""
        await self.load_dims()
        for dim in sorted(self._dims):
            await target.ensure_dim(dim)
        vectors = [f"memory_vectors_{d}" for d in sorted(self._dims)]
        return ["memory_items", "memory_links", "memory_entities", "memory_terms", *vectors]

    async def ensure_dim(self, dim: int) -> None:
        if dim in self._dims:
            return
        async with self._ddl_lock:
            if dim not in self._dims:
                await self._create_dim(int(dim))

    async def _create_dim(self, dim: int) -> None:
        try:
            async with self.db.transaction() as tx:
                await tx.execute(
                    f"""
                    CREATE TABLE IF NOT EXISTS memory_vectors_{dim} (
                        memory_id TEXT NOT NULL,
                        user_id TEXT NOT NULL,
                        tier TEXT NOT NULL,
                        session_id TEXT,
                        model TEXT NOT NULL,
                        embedding {self.db.vector_type(dim)} NOT NULL
                    )
                    """
                )
                await tx.execute(
                    f"CREATE INDEX IF NOT EXISTS memory_vectors_{dim}_id "
                    f"ON memory_vectors_{dim} (memory_id)"
                )
                if tx.engine == "postgresql":
                    await tx.execute(
                        f"CREATE INDEX IF NOT EXISTS memory_vectors_{dim}_user "
                        f"ON memory_vectors_{dim} (user_id, model)"
                    )
        except Exception:
            # Another process made it at the same moment (PostgreSQL's IF NOT EXISTS is
            # not race-free); anything else is a real error.
            if f"memory_vectors_{dim}" not in await self.db.tables(f"memory_vectors_{dim}"):
                raise
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
        with self._writing(m.user_id for m in memories):
            async with self.db.transaction() as tx:
                term_rows = await _insert_items(tx, memories)
                if dim:
                    assert vectors is not None
                    await _insert_vectors(tx, dim, searchable, vectors, model)
        self.rows.inserted(Memory.from_row(_item_row(m)) for m in memories)
        self._keywords_added(term_rows)
        if dim:
            assert vectors is not None
            self._vectors_added(searchable, vectors[: len(searchable)], model)

    def _keywords_added(self, term_rows: Sequence[tuple[Any, ...]]) -> None:
        by_user: dict[str, list[tuple[Any, ...]]] = {}
        for row in term_rows:
            by_user.setdefault(row[0], []).append(row)
        for user_id, rows in by_user.items():
            self._term_stats.pop(user_id, None)
            if self.keywords is not None:
                self.keywords.on_add(user_id, rows)

    def _forget_term_stats(self, user_id: str | None) -> None:
        if user_id is None:
            self._term_stats.clear()
        else:
            self._term_stats.pop(user_id, None)

    def _vectors_added(self, memories: Sequence[Memory], vectors: np.ndarray, model: str) -> None:
        for listener in self.listeners:
            listener.vectors_added(memories, vectors, model)

    async def update_content(
        self,
        memory: Memory,
        vector: np.ndarray | None,
        model: str,
    ) -> None:
        """Rewrite a memory's text, metadata, importance (and vector) in place."""
        await self.update_contents([(memory, vector)], model)

    async def update_contents(
        self, changes: Sequence[tuple[Memory, np.ndarray | None]], model: str
    ) -> None:
        """:meth:`update_content` for several memories, in one transaction."""
        for dim in {int(v.shape[0]) for _, v in changes if v is not None}:
            await self.ensure_dim(dim)
        dims = await self.dims()
        term_rows: list[tuple[Any, ...]] = []
        with self._writing(memory.user_id for memory, _ in changes):
            async with self.db.transaction() as tx:
                for memory, vector in changes:
                    await tx.execute(
                        "UPDATE memory_items SET content = $1, metadata = $2, importance = $3, "
                        "fact_key = $4, session_id = $5, source_message_id = $6, updated_at = $7 "
                        "WHERE memory_id = $8 AND user_id = $9",
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
                    term_rows += await _reindex_terms(tx, memory)
                    if vector is not None:
                        for d in dims:
                            await tx.execute(
                                f"DELETE FROM memory_vectors_{d} WHERE memory_id = $1",
                                [memory.memory_id],
                            )
                        await _insert_vectors(
                            tx, int(vector.shape[0]), [memory], vector.reshape(1, -1), model
                        )
        for memory, _ in changes:
            written = Memory.from_row(_item_row(memory))  # as a read would give it back
            self.rows.updated(
                memory.user_id,
                memory.memory_id,
                content=written.content,
                metadata=written.metadata,
                importance=written.importance,
                fact_key=memory.fact_key,
                session_id=memory.session_id,
                source_message_id=memory.source_message_id,
                updated_at=memory.updated_at,
            )
        if self.keywords is not None:
            for memory, _ in changes:
                self.keywords.on_remove(memory.user_id, [memory.memory_id])
            self._keywords_added(term_rows)
        for memory, vector in changes:
            if vector is not None:
                self._vectors_added([memory], vector.reshape(1, -1), model)

    async def touch(self, user_id: str, memory_id: str, importance: float) -> None:
        at = utcnow()
        with self.rows.writing(user_id):
            await self.db.execute(
                "UPDATE memory_items SET importance = $1, updated_at = $2 "
                "WHERE memory_id = $3 AND user_id = $4",
                [importance, at, memory_id, user_id],
            )
        self.rows.updated(user_id, memory_id, importance=float(importance), updated_at=at)

    # -- reads ------------------------------------------------------------------------
    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        row = await self.db.fetchone(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE memory_id = $1 AND user_id = $2",
            [memory_id, user_id],
        )
        return Memory.from_row(row) if row else None

    async def get_many(self, user_id: str, memory_ids: Iterable[str]) -> list[Memory]:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return []
        out: list[Memory] = []
        ticket = None
        if self.rows.enabled:
            out, ids, ticket = self.rows.rows(user_id, ids)
        read: list[Memory] = []
        # A constant IN list lets DuckDB use the memory_id index (faster than unnest).
        for start in range(0, len(ids), 256):
            part = ids[start : start + 256]
            rows = await self.db.fetchall(
                f"SELECT {ITEM_COLUMNS} FROM memory_items "
                "WHERE user_id = $1 AND memory_id IN "
                f"({_marks(len(part))})",
                [user_id, *part],
            )
            read.extend(Memory.from_row(r) for r in rows)
        if ticket is not None:
            self.rows.keep_rows(ticket, read)
        return out + read

    async def list_session(
        self, user_id: str, session_id: str, tier: str | None = None
    ) -> list[Memory]:
        sql = f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = $1 AND session_id = $2"
        params: list[Any] = [user_id, session_id]
        if tier:
            sql += " AND tier = $3"
            params.append(tier)
        rows = await self.db.fetchall(sql + " ORDER BY created_at, memory_id", params)
        return [Memory.from_row(r) for r in rows]

    async def page(
        self, user_id: str, tier: str | None, limit: int, offset: int
    ) -> tuple[list[Memory], int]:
        """The caller's memories, newest first (a document's chunks stay behind it)."""
        where = "user_id = $1 AND parent_id IS NULL"
        params: list[Any] = [user_id]
        if tier:
            where += " AND tier = $2"
            params.append(tier)
        n = len(params)
        rows = await self.db.fetchall(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE {where} "
            f"ORDER BY created_at DESC, memory_id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
            [*params, limit, offset],
        )
        total = await self.db.fetchone(f"SELECT count(*) FROM memory_items WHERE {where}", params)
        return [Memory.from_row(r) for r in rows], int(total[0]) if total else 0

    async def recent(self, user_id: str, session_id: str, tier: str, limit: int) -> list[Memory]:
        """The newest ``limit`` memories of a tier in a session, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = $1 AND session_id = $2 "
            "AND tier = $3 ORDER BY created_at DESC, memory_id DESC LIMIT $4",
            [user_id, session_id, tier, limit],
        )
        return [Memory.from_row(r) for r in reversed(rows)]

    async def find_facts(self, user_id: str, fact_keys: Sequence[str]) -> dict[str, Memory]:
        """The newest long-term fact of each key, in one query."""
        keys = list(dict.fromkeys(fact_keys))
        if not keys:
            return {}
        marks = _marks(len(keys))
        rows = await self.db.fetchall(
            f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = $1 AND tier = 'long_term' "
            f"AND fact_key IN ({marks}) ORDER BY updated_at DESC",
            [user_id, *keys],
        )
        out: dict[str, Memory] = {}
        for row in rows:
            m = Memory.from_row(row)
            out.setdefault(str(m.fact_key), m)
        return out

    async def search_sql(
        self,
        user_id: str,
        vector: np.ndarray,
        model: str,
        dim: int,
        *,
        limit: int,
        tiers: Sequence[str] | None = None,
        session_id: str | None = None,
        exclude_session_tiers: tuple[str | None, Sequence[str]] | None = None,
        min_score: float | None = None,
    ) -> list[Memory]:
        """DuckDB only: the memories most similar to ``vector`` by cosine in SQL, best
        first (what vectors/ searches with when the in-process index is off)."""
        where = ["user_id = $2", "model = $3"]
        params: list[Any] = [vector.astype(np.float32), user_id, model]

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if tiers:
            where.append(f"tier = ANY({param(list(tiers))}::TEXT[])")
        if session_id is not None:
            where.append(f"session_id = {param(session_id)}")
        if exclude_session_tiers is not None:
            ex_session, ex_tiers = exclude_session_tiers
            where.append(
                f"NOT (session_id IS NOT DISTINCT FROM {param(ex_session)} "
                f"AND tier = ANY({param(list(ex_tiers))}::TEXT[]))"
            )
        having = f"WHERE cand.score >= {param(min_score)}" if min_score is not None else ""
        sql = (
            "WITH cand AS ("
            # a zero vector (text with nothing to embed) has no cosine (NaN): rank it as 0
            " SELECT memory_id, coalesce(nullif("
            f"array_cosine_similarity(embedding, $1::FLOAT[{dim}]), 'NaN'::FLOAT), 0.0) AS score"
            f" FROM memory_vectors_{dim} WHERE {' AND '.join(where)}"
            f" ORDER BY score DESC LIMIT {param(limit)})"
            f" SELECT {', '.join('i.' + c for c in _ITEM_NAMES)}, cand.score"
            " FROM cand JOIN memory_items i ON i.memory_id = cand.memory_id AND i.user_id = $2"
            f" {having} ORDER BY cand.score DESC"
        )
        rows = await self.db.fetchall(sql, params)
        return [Memory.from_row(r) for r in rows]

    async def term_stats(self, user_id: str) -> tuple[int, float]:
        """``(searchable memories, their mean length in terms)`` of a user: BM25's N and
        avgdl, read at most every TERM_STATS_SECONDS (and after this process's writes of
        the user; another process's are counted within that time)."""
        now = time.monotonic()
        held = self._term_stats.get(user_id)
        if held is not None and held[0] > now:
            return held[1], held[2]
        row = await self.db.fetchone(
            "SELECT count(*), coalesce(avg(n_terms), 0) FROM memory_items "
            "WHERE user_id = $1 AND searchable",
            [user_id],
        )
        n, avgdl = (int(row[0]), float(row[1])) if row else (0, 0.0)
        if len(self._term_stats) > 10_000:
            self._term_stats.clear()
        self._term_stats[user_id] = (now + TERM_STATS_SECONDS, n, avgdl)
        return n, avgdl

    async def keyword_search(
        self,
        user_id: str,
        terms: Sequence[str],
        *,
        limit: int,
        tiers: Sequence[str] | None = None,
        session_id: str | None = None,
        exclude_session_tiers: tuple[str, Sequence[str]] | None = None,
    ) -> list[tuple[str, float]]:
        """The caller's memories that contain any of ``terms`` (keywords.py), by BM25,
        best first: ``(memory_id, score)``. Document frequencies count every memory of the
        user; the filters choose among the hits."""
        if not terms:
            return []
        if self.keywords is not None:

            async def load() -> list[tuple[Any, ...]]:
                return await self.db.fetchall(
                    f"SELECT {', '.join(_TERM_COLUMNS)} FROM memory_terms WHERE user_id = $1",
                    [user_id],
                )

            entry = await self.keywords.ensure(user_id, load)
            return entry.search(terms, limit, tiers, session_id, exclude_session_tiers)
        n, avgdl = await self.term_stats(user_id)
        if n == 0:
            return []
        params: list[Any] = [user_id, list(terms), float(n), max(avgdl, 1.0)]

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        where = ["TRUE"]
        if tiers:
            where.append(f"h.tier = ANY({param(list(tiers))}::TEXT[])")
        if session_id is not None:
            where.append(f"h.session_id = {param(session_id)}")
        if exclude_session_tiers is not None:
            ex_session, ex_tiers = exclude_session_tiers
            where.append(
                f"NOT (h.session_id IS NOT DISTINCT FROM {param(ex_session)} "
                f"AND h.tier = ANY({param(list(ex_tiers))}::TEXT[]))"
            )
        k1, b = BM25_K1, BM25_B
        sql = (
            "WITH h AS (SELECT memory_id, term, tf, dl, tier, session_id FROM memory_terms "
            "WHERE user_id = $1 AND term = ANY($2::TEXT[])), "
            "df AS (SELECT term, count(*) AS n FROM h GROUP BY term) "
            "SELECT h.memory_id, sum(ln(1 + ($3::DOUBLE PRECISION - df.n + 0.5) / (df.n + 0.5))"
            f" * h.tf * {k1 + 1} / (h.tf + {k1} * ({1 - b} + {b} * h.dl / $4::DOUBLE PRECISION)))"
            " AS score FROM h JOIN df ON df.term = h.term"
            f" WHERE {' AND '.join(where)}"
            f" GROUP BY h.memory_id ORDER BY score DESC, h.memory_id LIMIT {param(limit)}"
        )
        rows = await self.db.fetchall(sql, params)
        return [(str(r[0]), float(r[1])) for r in rows]

    async def neighbours(
        self, user_id: str, memories: Sequence[Memory]
    ) -> dict[str, tuple[str | None, str | None]]:
        """For each short-term turn among ``memories``: the ids of the turns just before
        and after it in its session (None at either end), in the order the turns
        happened (``occurred_at``, then when they were stored)."""
        turns = [m for m in memories if m.tier == "short_term" and m.session_id is not None]
        if not turns:
            return {}
        rows = await self.db.fetchall(
            "SELECT memory_id, prev_id, next_id FROM (SELECT memory_id, "
            "lag(memory_id) OVER w AS prev_id, lead(memory_id) OVER w AS next_id "
            "FROM memory_items WHERE user_id = $1 AND tier = 'short_term' "
            "AND session_id = ANY($2::TEXT[]) WINDOW w AS (PARTITION BY session_id "
            "ORDER BY coalesce(occurred_at, created_at), created_at, memory_id)) s "
            "WHERE memory_id = ANY($3::TEXT[])",
            [
                user_id,
                list(dict.fromkeys(str(m.session_id) for m in turns)),
                [m.memory_id for m in turns],
            ],
        )
        return {str(r[0]): (r[1], r[2]) for r in rows}

    async def read_hits(self, user_id: str, hits: list[tuple[str, float]]) -> list[Memory]:
        """The rows of search hits ``(memory_id, score)``, in order, with their scores (a
        hit deleted meanwhile is left out)."""
        if not hits:
            return []
        found = {m.memory_id: m for m in await self.get_many(user_id, dict(hits))}
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

        rows, matrix = await self.db.fetch_vectors(
            f"SELECT memory_id, tier, session_id, embedding FROM memory_vectors_{dim} "
            "WHERE user_id = $1 AND model = $2",
            [user_id, model],
            dim,
        )
        ids = [str(r[0]) for r in rows]
        sessions = [None if r[2] is None else str(r[2]) for r in rows]
        return ids, [str(r[1]) for r in rows], sessions, matrix

    async def stats(self, user_id: str, model: str) -> dict[str, Any]:
        tiers = await self.db.fetchall(
            "SELECT tier, count(*) FROM memory_items WHERE user_id = $1 GROUP BY tier", [user_id]
        )
        row = await self.db.fetchone(
            "SELECT count(*), count(DISTINCT session_id), min(created_at), max(updated_at), "
            "coalesce(sum(length(content)), 0) FROM memory_items WHERE user_id = $1",
            [user_id],
        )
        links = await self.db.fetchone(
            "SELECT count(*) FROM memory_links WHERE user_id = $1", [user_id]
        )
        embedded = 0
        for dim in await self.dims():
            r = await self.db.fetchone(
                f"SELECT count(*) FROM memory_vectors_{dim} WHERE user_id = $1 AND model = $2",
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
            f"SELECT {', '.join('i.' + c for c in _ITEM_NAMES)} FROM memory_items i "
            f"WHERE i.searchable AND NOT EXISTS (SELECT 1 FROM memory_vectors_{dim} v "
            "WHERE v.model = $1 AND v.memory_id = i.memory_id) ORDER BY i.created_at LIMIT $2",
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
        dims = await self.dims()
        ids = [m.memory_id for m in memories]

        async with self.db.transaction() as tx:
            for d in dims:
                await tx.execute(
                    f"DELETE FROM memory_vectors_{d} WHERE memory_id = ANY($1::TEXT[])", [ids]
                )
            await _insert_vectors(tx, dim, memories, vectors, model)
        self._vectors_added(memories, vectors, model)

    # -- associative tier -------------------------------------------------------------
    async def add_links(
        self,
        user_id: str,
        links: Iterable[tuple[str, str, str, float]],
        *,
        unlinked: Collection[str] = (),
    ) -> int:
        """Add undirected links ``(a, b, kind, weight)``; existing ones are kept as they are.
        ``unlinked``: memories the caller knows to have no link yet (made under its lock,
        on DuckDB, which one process owns): pairs with one of them need no check."""
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
        fresh = set(unlinked) if self.db.engine == "duckdb" else set()
        check = [row for row in rows if row[1] not in fresh and row[2] not in fresh]

        added = []
        with self.rows.writing(user_id):
            async with self.db.transaction() as tx:
                # one read of the links that exist among these pairs, one insert of the rest
                have: set[tuple[str, str, str]] = set()
                if check:
                    existing = await tx.fetchall(
                        "SELECT a_id, b_id, kind FROM memory_links WHERE user_id = $1 "
                        "AND a_id = ANY($2::TEXT[]) AND b_id = ANY($3::TEXT[])",
                        [user_id, list({r[1] for r in check}), list({r[2] for r in check})],
                    )
                    have = {(str(a), str(b), str(k)) for a, b, k in existing}
                new = [row for row in rows if (row[1], row[2], row[3]) not in have]
                if new:
                    await tx.insert_rows(
                        "memory_links",
                        ["user_id", "a_id", "b_id", "kind", "weight", "created_at"],
                        new,
                    )
                added = [row[1:] for row in new]
        self.rows.linked(user_id, added)
        return len(added)

    async def related(
        self, user_id: str, memory_ids: Sequence[str]
    ) -> dict[str, list[tuple[str, str, float]]]:
        """For each id, its linked memories ``(other_id, kind, weight)``, strongest first."""
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return {}
        held: dict[str, list[Link]] = {}
        ticket = None
        missing = ids
        if self.rows.enabled:
            held, missing, ticket = self.rows.links(user_id, ids)
        if missing:
            read: dict[str, list[Link]] = {m: [] for m in missing}
            rows = await self.db.fetchall(
                "SELECT a_id, b_id, kind, weight, created_at FROM memory_links "
                "WHERE user_id = $1 AND (a_id = ANY($2::TEXT[]) OR b_id = ANY($2::TEXT[])) "
                "ORDER BY weight DESC, created_at DESC",
                [user_id, missing],
            )
            for a, b, kind, weight, at in rows:
                if a in read:
                    read[a].append((b, kind, float(weight), at))
                if b in read:
                    read[b].append((a, kind, float(weight), at))
            if ticket is not None:
                self.rows.keep_links(ticket, read)
            held.update(read)
        return {m: [(other, kind, weight) for other, kind, weight, _ in held[m]] for m in ids}

    async def linked(
        self, user_id: str, memory_ids: Sequence[str]
    ) -> list[tuple[str, float, Memory]]:
        """The memories linked to any of ``memory_ids`` (the context hook's associative
        hop, on the reply's path): ``(via, weight, memory)``, each hit's strongest link
        first; ``via`` is the id among ``memory_ids`` it hangs from. The links, then their
        rows through the ``memory_id`` index: on DuckDB two such lookups cost less than
        one join of the two tables (2.3 ms against 2.9 ms on the turn benchmark's data)."""
        related = await self.related(user_id, list(dict.fromkeys(memory_ids)))
        others = {other for links in related.values() for other, _, _ in links}
        rows = {m.memory_id: m for m in await self.get_many(user_id, others)}
        return [
            (via, weight, rows[other])
            for via, links in related.items()
            for other, _, weight in links
            if other in rows
        ]

    async def add_entities(self, user_id: str, memory_id: str, entities: Iterable[str]) -> None:
        rows = [(user_id, memory_id, e) for e in dict.fromkeys(entities)]
        if rows:
            await self.db.insert_rows("memory_entities", ["user_id", "memory_id", "entity"], rows)

    async def sharing_entities(
        self, user_id: str, memory_id: str, entities: Sequence[str], limit: int
    ) -> list[tuple[str, str]]:
        """Other memories naming one of ``entities``, newest first: ``(memory_id, entity)``."""
        if not entities:
            return []
        rows = await self.db.fetchall(
            "SELECT e.memory_id, e.entity FROM memory_entities e JOIN memory_items i "
            "ON i.memory_id = e.memory_id AND i.user_id = e.user_id "
            "WHERE e.user_id = $1 AND e.memory_id <> $2 AND e.entity = ANY($3::TEXT[]) "
            "ORDER BY i.created_at DESC LIMIT $4",
            [user_id, memory_id, list(entities), limit],
        )
        return [(r[0], r[1]) for r in rows]

    # -- deletes ----------------------------------------------------------------------
    async def delete_ids(self, user_id: str | None, memory_ids: Sequence[str]) -> int:
        """Delete memories (their knowledge chunks, vectors, links, entities) by id."""
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        dims = await self.dims()

        user_clause = " AND user_id = $2" if user_id is not None else ""
        uparams = [user_id] if user_id is not None else []
        with self.rows.writing(user_id):
            async with self.db.transaction() as tx:
                # Chunks of deleted documents go with them.
                chunk_rows = await tx.fetchall(
                    f"SELECT memory_id FROM memory_items WHERE parent_id = ANY($1::TEXT[]){user_clause}",
                    [ids, *uparams],
                )
                all_ids = list(dict.fromkeys(ids + [r[0] for r in chunk_rows]))
                gone = await tx.fetchall(
                    "DELETE FROM memory_items WHERE memory_id = ANY($1::TEXT[])"
                    f"{user_clause} RETURNING memory_id",
                    [all_ids, *uparams],
                )
                for table in [f"memory_vectors_{d}" for d in dims] + [
                    "memory_entities",
                    "memory_terms",
                ]:
                    await tx.execute(
                        f"DELETE FROM {table} WHERE memory_id = ANY($1::TEXT[]){user_clause}",
                        [all_ids, *uparams],
                    )
                await tx.execute(
                    "DELETE FROM memory_links WHERE (a_id = ANY($1::TEXT[]) "
                    f"OR b_id = ANY($1::TEXT[])){user_clause}",
                    [all_ids, *uparams],
                )
        n = len(gone)
        self.rows.deleted(user_id, all_ids)
        self._forget_term_stats(user_id)
        if self.keywords is not None:
            self.keywords.on_remove(user_id, all_ids)
        for listener in self.listeners:
            listener.vectors_removed(user_id, all_ids)
        return n

    async def insert_turns(
        self, turns: Sequence[Memory], vectors: np.ndarray, model: str, recent: int
    ) -> dict[str, list[Memory]]:
        """Insert one user's new short-term turns in one transaction; returns each of their
        sessions' newest ``recent`` turns, oldest first. Turns are never deleted here:
        every turn stays findable as long as its session exists."""
        user_id = turns[0].user_id
        dim = int(vectors.shape[1])
        await self.ensure_dim(dim)
        kept: dict[str, list[Memory]] = {}
        with self.rows.writing(user_id):
            async with self.db.transaction() as tx:
                term_rows = await _insert_items(tx, turns)
                await _insert_vectors(tx, dim, turns, vectors, model)
                for session_id in dict.fromkeys(str(t.session_id) for t in turns):
                    rows = await tx.fetchall(
                        f"SELECT {ITEM_COLUMNS} FROM memory_items WHERE user_id = $1 AND "
                        "session_id = $2 AND tier = 'short_term' "
                        "ORDER BY created_at DESC, memory_id DESC LIMIT $3",
                        [user_id, session_id, recent],
                    )
                    kept[session_id] = [Memory.from_row(r) for r in reversed(rows)]
        self.rows.inserted(Memory.from_row(_item_row(t)) for t in turns)
        self._keywords_added(term_rows)
        self._vectors_added(turns, vectors[: len(turns)], model)
        return kept

    async def ids_where(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        tier: str | None = None,
        older_than: datetime | None = None,
    ) -> list[tuple[str, str]]:
        """``(user_id, memory_id)`` of the memories matching every given filter."""
        where, params = _filters(
            user_id=user_id, session_id=session_id, tier=tier, updated_at=older_than
        )
        rows = await self.db.fetchall(
            f"SELECT user_id, memory_id FROM memory_items WHERE {where}", params
        )
        return [(r[0], r[1]) for r in rows]

    async def delete_links_where(
        self, *, user_id: str | None = None, older_than: datetime | None = None
    ) -> int:
        where, params = _filters(user_id=user_id, created_at=older_than)
        with self.rows.writing(user_id):
            gone = await self.db.fetchall(
                f"DELETE FROM memory_links WHERE {where} RETURNING 1", params
            )
        self.rows.unlinked(user_id)
        return len(gone)

    async def delete_user(self, user_id: str) -> int:
        dims = await self.dims()

        with self.rows.writing(user_id):
            async with self.db.transaction() as tx:
                n = int(
                    await tx.fetchval(
                        "SELECT count(*) FROM memory_items WHERE user_id = $1", [user_id]
                    )
                )
                for table in ["memory_items", "memory_links", "memory_entities", "memory_terms"] + [
                    f"memory_vectors_{d}" for d in dims
                ]:
                    await tx.execute(f"DELETE FROM {table} WHERE user_id = $1", [user_id])
        self.rows.drop_user(user_id)
        self._forget_term_stats(user_id)
        if self.keywords is not None:
            self.keywords.drop_user(user_id)
        for listener in self.listeners:
            listener.user_dropped(user_id)
        return n

    async def count_vectors(self, user_id: str, model: str, dim: int) -> int:
        if dim not in await self.dims(dim):
            return 0
        row = await self.db.fetchone(
            f"SELECT count(*) FROM memory_vectors_{dim} WHERE user_id = $1 AND model = $2",
            [user_id, model],
        )
        return int(row[0]) if row else 0


def _marks(count: int) -> str:
    """``$2, $3, …`` for an IN list of ``count`` values after the user id (``$1``)."""
    return ", ".join(f"${i}" for i in range(2, count + 2))


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
        m.occurred_at,
    )


def _term_rows(
    memories: Iterable[tuple[str, str, str, str | None, str]],
) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """``memory_terms`` rows of ``(memory_id, user_id, tier, session_id, content)``, and
    each memory's length in terms."""
    rows: list[tuple[Any, ...]] = []
    lengths: dict[str, int] = {}
    for memory_id, user_id, tier, session_id, content in memories:
        counts, length = term_counts(content)
        lengths[memory_id] = length
        rows.extend(
            (user_id, memory_id, term, tf, length, tier, session_id) for term, tf in counts.items()
        )
    return rows, lengths


def _memory_terms(memories: Iterable[Memory]) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    return _term_rows(
        (m.memory_id, m.user_id, m.tier, m.session_id, _indexed_text(m))
        for m in memories
        if m.searchable
    )


def _indexed_text(m: Memory) -> str:
    """A memory's words for the keyword index: a character's chat turn with the
    character's name (what a reader sees beside it), everything else its content."""
    character = m.metadata.get("character") if m.tier == "short_term" else None
    if isinstance(character, str) and character and m.metadata.get("role") != "user":
        return f"{character}: {m.content}"
    return m.content


async def _reindex_terms(tx: Transaction, memory: Memory) -> list[tuple[Any, ...]]:
    """Index a memory's words anew (its text, tier or session changed)."""
    await tx.execute(
        "DELETE FROM memory_terms WHERE memory_id = $1 AND user_id = $2",
        [memory.memory_id, memory.user_id],
    )
    term_rows, lengths = _memory_terms([memory])
    if term_rows:
        await tx.insert_rows("memory_terms", _TERM_COLUMNS, term_rows)
    await tx.execute(
        "UPDATE memory_items SET n_terms = $1 WHERE memory_id = $2 AND user_id = $3",
        [lengths.get(memory.memory_id), memory.memory_id, memory.user_id],
    )
    return term_rows


async def _insert_items(tx: Transaction, memories: Sequence[Memory]) -> list[tuple[Any, ...]]:
    """Rows of ``memory_items`` and, for the searchable ones, their ``memory_terms``
    (returned, for the keyword index)."""
    term_rows, lengths = _memory_terms(memories)
    await tx.insert_rows(
        "memory_items",
        [*_ITEM_NAMES, "n_terms"],
        [(*_item_row(m), lengths.get(m.memory_id)) for m in memories],
    )
    if term_rows:
        await tx.insert_rows("memory_terms", _TERM_COLUMNS, term_rows)
    return term_rows


def _filters(**given: Any) -> tuple[str, list[Any]]:
    """``col = $n`` for each given value (``< $n`` for the time columns), ANDed."""
    where, params = ["TRUE"], []
    for column, value in given.items():
        if value is not None:
            params.append(value)
            op = "<" if column.endswith("_at") else "="
            where.append(f"{column} {op} ${len(params)}")
    return " AND ".join(where), params


async def _insert_vectors(
    tx: Transaction, dim: int, memories: Sequence[Memory], vectors: np.ndarray, model: str
) -> None:
    vectors = np.ascontiguousarray(vectors[: len(memories)], dtype=np.float32)
    rows = [
        (m.memory_id, m.user_id, m.tier, m.session_id, model, vectors[i])
        for i, m in enumerate(memories)
    ]
    await tx.insert_rows(f"memory_vectors_{dim}", _VECTOR_COLUMNS, rows)
