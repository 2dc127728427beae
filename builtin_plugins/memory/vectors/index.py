"""An exact in-process vector index for users with many memories.

Why: cosine similarity in DuckDB (``array_cosine_similarity`` over ``FLOAT[384]``)
costs ~0.5 µs a vector on this class of machine, mostly materialising the arrays, and a
table under one row group (122 880 rows) is scanned by one thread: about 60 ms for
100k memories of one user, over the 20 ms target (bench/memory.py). One matrix-vector
product in numpy (BLAS, both cores) over the same vectors takes a fraction of that.

What: per (user, model), the user's vectors as one float32 matrix with aligned ids,
tier and session codes, and an ``alive`` mask. It is *exact* (a flat scan, no
approximation), loaded lazily from DuckDB the first time a user with at least
``index_min_vectors`` vectors searches, kept in step with every insert, update and
delete the store commits (search.py listens to the store; one process owns the DuckDB
file, so nothing else writes behind its back), and dropped least-recently-used past ``index_max_mb``. DuckDB stays the record;
the candidates found here are read back from it (or from the store's row cache, which its
writes keep exact: ../rowcache.py), so a stale id can never leak.

For big entries (``index_half_min_vectors``, default 20 000) a float16 copy of the matrix
is scanned first, with torch when it is installed (it comes with the local embedder): the
scan reads half the memory and torch's float16 product is ~2.5x faster than numpy's
float32 one here (numpy has no fast float16 product). The best ``max(64, 8*limit)``
rows of that scan are then re-scored exactly in float32, so the scores are exact and
the results are those of the full scan unless more than that many rows lie within
float16's rounding (about 1e-3) of the cut — tests compare the two paths.

Optionally (``index_ivf_min_vectors`` > 0) users with that many vectors also get
inverted lists (IVF, see :class:`IVF`): approximate, much less to scan, built in a
worker thread from the flat index, offline like everything else.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..domain import TIER_CODES

SMALL_COUNTS = 100_000  # users below min_vectors whose vector count is remembered
PREFILTER_MIN = 64  # rows re-scored exactly after the float16 scan, at the least
PREFILTER_FACTOR = 8  # ... or this many times the limit
HALF_SLACK = 0.01  # float16 rounding allowance when min_score filters the rough scan
MIN_ROWS = 64  # an entry's first capacity (every user who searches has an entry)
COMPACT_MIN_ROWS = 64  # an entry this big with more dead rows than live is rebuilt


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


_scan_thread = threading.local()


def _scan_threads(torch: Any) -> None:
    """Every core for the float16 scan (memory-bound, so it pays). torch keeps the
    count per thread once set, and the embedder sets 1 in its own threads."""
    if not getattr(_scan_thread, "ready", False):
        torch.set_num_threads(os.cpu_count() or 1)
        _scan_thread.ready = True


@dataclass
class _Entry:
    dim: int
    matrix: np.ndarray
    ids: list[str] = field(default_factory=list)
    tiers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    sessions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    n: int = 0
    row_of: dict[str, int] = field(default_factory=dict)
    session_codes: dict[str | None, int] = field(default_factory=lambda: {None: -1})
    used: float = field(default_factory=time.monotonic)
    ivf: IVF | None = None
    ivf_building: bool = False
    half: Any = None  # torch float16 copy of ``matrix`` (same capacity), for big entries

    def enable_half(self) -> bool:
        """Keep a float16 copy from now on (no-op without torch)."""
        torch = _torch()
        if torch is None:
            return False
        half = torch.zeros((self.matrix.shape[0], self.dim), dtype=torch.float16)
        half[: self.n] = torch.from_numpy(self.matrix[: self.n]).to(torch.float16)
        self.half = half
        return True

    @property
    def nbytes(self) -> int:
        extra = self.ivf.nbytes if self.ivf is not None else 0
        if self.half is not None:
            extra += int(self.half.numel()) * 2
        return int(
            self.matrix.nbytes
            + self.tiers.nbytes
            + self.sessions.nbytes
            + self.alive.nbytes
            + extra
        )

    def _grow(self, need: int) -> None:
        cap = self.matrix.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap * 2, MIN_ROWS)
        matrix = np.zeros((new_cap, self.dim), dtype=np.float32)
        matrix[: self.n] = self.matrix[: self.n]
        tiers = np.zeros(new_cap, dtype=np.int8)
        tiers[: self.n] = self.tiers[: self.n]
        sessions = np.full(new_cap, -1, dtype=np.int32)
        sessions[: self.n] = self.sessions[: self.n]
        alive = np.zeros(new_cap, dtype=bool)
        alive[: self.n] = self.alive[: self.n]
        if self.half is not None:
            half = self.half.new_zeros((new_cap, self.dim))
            half[: self.n] = self.half[: self.n]
            self.half = half
        # Swap in whole arrays: a search running in a thread keeps its own references.
        self.matrix, self.tiers, self.sessions, self.alive = matrix, tiers, sessions, alive

    def session_code(self, session_id: str | None) -> int:
        code = self.session_codes.get(session_id)
        if code is None:
            code = len(self.session_codes) - 1
            self.session_codes[session_id] = code
        return code

    def add(
        self,
        ids: Sequence[str],
        tiers: Sequence[str],
        sessions: Sequence[str | None],
        vectors: np.ndarray,
    ) -> None:
        self.remove(ids)
        k = len(ids)
        self._grow(self.n + k)
        start, end = self.n, self.n + k
        self.matrix[start:end] = vectors
        if self.half is not None:
            self.half[start:end] = _torch().from_numpy(self.matrix[start:end]).half()
        self.tiers[start:end] = [TIER_CODES.get(t, -1) for t in tiers]
        self.sessions[start:end] = [self.session_code(s) for s in sessions]
        self.alive[start:end] = True
        for offset, memory_id in enumerate(ids):
            self.row_of[memory_id] = start + offset
        self.ids.extend(ids)
        self.n = end

    def remove(self, ids: Sequence[str]) -> None:
        for memory_id in ids:
            row = self.row_of.pop(memory_id, None)
            if row is not None:
                self.alive[row] = False

    def wants_compaction(self) -> bool:
        """Removed rows stay (marked dead) until this says so: chat turns are trimmed all
        the time, so without it an active user's entry, and every scan of it, would
        grow with every turn ever recorded rather than with the memories kept."""
        return self.n >= COMPACT_MIN_ROWS and len(self.row_of) * 2 < self.n

    def compacted(self) -> _Entry:
        """A new entry with the live rows only. A new object, not this one changed: a
        search running in a thread keeps reading this one, consistently."""
        rows = np.fromiter(sorted(self.row_of.values()), dtype=np.int64, count=len(self.row_of))
        k = len(rows)
        new = _Entry(dim=self.dim, matrix=np.zeros((0, self.dim), np.float32))
        new._grow(k)
        new.matrix[:k] = self.matrix[rows]
        new.tiers[:k] = self.tiers[rows]
        new.sessions[:k] = self.sessions[rows]
        new.alive[:k] = True
        new.ids = [self.ids[int(r)] for r in rows]
        new.row_of = {memory_id: i for i, memory_id in enumerate(new.ids)}
        new.n = k
        new.session_codes = dict(self.session_codes)
        new.used = self.used
        if self.half is not None:
            new.enable_half()
        return new

    def search(
        self,
        query: np.ndarray,
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str | None, Sequence[str]] | None,
        min_score: float | None,
    ) -> list[tuple[str, float]]:
        n, matrix, half = self.n, self.matrix, self.half
        if n == 0:
            return []
        query = query.astype(np.float32)
        ivf = self.ivf
        if ivf is not None and ivf.built_n <= n:
            rows, scores = ivf.candidates(query, matrix, n)
        elif half is not None and n > PREFILTER_MIN:
            return self._search_half(
                half, matrix, n, query, limit, tiers, session_id, exclude, min_score
            )
        else:
            rows, scores = None, matrix[:n] @ query
        return self._select(rows, scores, limit, tiers, session_id, exclude, min_score)

    def _search_half(
        self,
        half: Any,
        matrix: np.ndarray,
        n: int,
        query: np.ndarray,
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str | None, Sequence[str]] | None,
        min_score: float | None,
    ) -> list[tuple[str, float]]:
        """A float16 scan for candidates, then exact float32 scores for those."""
        torch = _torch()
        _scan_threads(torch)
        rough_scores = (half[:n] @ torch.from_numpy(query).half()).float().numpy()
        slack = None if min_score is None else min_score - HALF_SLACK
        keep = max(PREFILTER_MIN, PREFILTER_FACTOR * limit)
        rough = self._select(None, rough_scores, keep, tiers, session_id, exclude, slack)
        pairs = [(m, self.row_of.get(m)) for m, _ in rough]
        pairs = [(m, r) for m, r in pairs if r is not None and r < n]
        if not pairs:
            return []
        rows = np.fromiter((r for _, r in pairs), dtype=np.int64, count=len(pairs))
        exact = matrix[rows] @ query
        out: list[tuple[str, float]] = []
        for i in np.argsort(-exact, kind="stable"):
            score = float(exact[i])
            if min_score is not None and score < min_score:
                break
            out.append((pairs[int(i)][0], score))
            if len(out) == limit:
                break
        return out

    def _select(
        self,
        rows: np.ndarray | None,
        scores: np.ndarray,
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str | None, Sequence[str]] | None,
        min_score: float | None,
    ) -> list[tuple[str, float]]:
        """Filter candidate rows (None: rows 0..n-1) by liveness, tier, session and score;
        return the best ``limit`` as ``(memory_id, score)``, best first."""
        n = scores.shape[0] if rows is None else self.n
        alive, tier_arr, session_arr, ids = self.alive, self.tiers, self.sessions, self.ids

        def take(arr: np.ndarray) -> np.ndarray:
            return arr[:n] if rows is None else arr[rows]

        mask = take(alive).copy()
        if tiers:
            mask &= np.isin(take(tier_arr), [TIER_CODES[t] for t in tiers if t in TIER_CODES])
        if session_id is not None:
            code = self.session_codes.get(session_id)
            if code is None:
                return []
            mask &= take(session_arr) == code
        if exclude is not None:
            ex_session, ex_tiers = exclude
            code = self.session_codes.get(ex_session)
            if code is not None:
                mask &= ~(
                    (take(session_arr) == code)
                    & np.isin(take(tier_arr), [TIER_CODES[t] for t in ex_tiers if t in TIER_CODES])
                )
        if min_score is not None:
            mask &= scores >= min_score
        candidates = np.flatnonzero(mask)
        if candidates.size == 0:
            return []
        picked = scores[candidates]
        if candidates.size > limit:
            part = np.argpartition(-picked, limit - 1)[:limit]
            candidates, picked = candidates[part], picked[part]
        order = np.argsort(-picked, kind="stable")
        row_ids = candidates if rows is None else rows[candidates]
        return [(ids[int(row_ids[i])], float(picked[i])) for i in order]

    @property
    def alive_count(self) -> int:
        return len(self.row_of)


@dataclass
class IVF:
    """Inverted lists (approximate): the vectors grouped by their nearest of ``nlist``
    centroids (spherical k-means), stored contiguously per list. A search scores the
    centroids, scans the ``nprobe`` nearest lists and the tail of rows added since the
    build, exactly. Rows removed since the build are filtered by the entry's ``alive``."""

    built_n: int
    centroids: np.ndarray
    rows: np.ndarray
    offsets: np.ndarray
    matrix: np.ndarray
    nprobe: int

    @property
    def nbytes(self) -> int:
        return int(self.centroids.nbytes + self.rows.nbytes + self.matrix.nbytes)

    def candidates(
        self, query: np.ndarray, matrix: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        nlist = self.centroids.shape[0]
        probe = min(self.nprobe, nlist)
        cs = self.centroids @ query
        lists = np.argpartition(-cs, probe - 1)[:probe] if probe < nlist else np.arange(nlist)
        row_parts, score_parts = [], []
        for lst in lists:
            start, end = int(self.offsets[lst]), int(self.offsets[lst + 1])
            if end > start:
                row_parts.append(self.rows[start:end])
                score_parts.append(self.matrix[start:end] @ query)
        if n > self.built_n:
            row_parts.append(np.arange(self.built_n, n))
            score_parts.append(matrix[self.built_n : n] @ query)
        if not row_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(row_parts), np.concatenate(score_parts)


def build_ivf(
    matrix: np.ndarray, alive: np.ndarray, n: int, probe_fraction: float, seed: int = 0
) -> IVF | None:
    """Train and fill inverted lists over rows ``0..n-1`` (CPU-heavy: run in a thread)."""
    live = np.flatnonzero(alive[:n])
    if live.size < 1000:
        return None
    nlist = int(min(1024, max(16, np.sqrt(live.size) / 2)))
    rng = np.random.default_rng(seed)
    sample_idx = rng.choice(live, size=min(live.size, nlist * 40), replace=False)
    sample = matrix[sample_idx]
    centroids = sample[rng.choice(sample.shape[0], size=nlist, replace=False)].copy()
    for _ in range(8):
        assign = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, sample)
        counts = np.bincount(assign, minlength=nlist)
        filled = counts > 0
        norms = np.linalg.norm(sums[filled], axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        centroids[filled] = sums[filled] / norms
    labels = np.empty(live.size, dtype=np.int32)
    for start in range(0, live.size, 32768):
        block = matrix[live[start : start + 32768]]
        labels[start : start + block.shape[0]] = np.argmax(block @ centroids.T, axis=1)
    order = np.argsort(labels, kind="stable")
    rows = live[order]
    offsets = np.searchsorted(labels[order], np.arange(nlist + 1)).astype(np.int64)
    nprobe = max(1, int(np.ceil(nlist * probe_fraction)))
    return IVF(
        built_n=n,
        centroids=centroids.astype(np.float32),
        rows=rows.astype(np.int64),
        offsets=offsets,
        matrix=np.ascontiguousarray(matrix[rows]),
        nprobe=nprobe,
    )


class VectorIndex:
    def __init__(
        self,
        min_vectors: int,
        max_bytes: int,
        ivf_min_vectors: int = 0,
        ivf_probe_fraction: float = 0.1,
        half_min_vectors: int = 20_000,
    ) -> None:
        self.min_vectors = min_vectors
        self.half_min_vectors = half_min_vectors  # 0: always scan float32 only
        self.max_bytes = max_bytes
        self.ivf_min_vectors = ivf_min_vectors  # 0: never approximate
        self.ivf_probe_fraction = ivf_probe_fraction
        self._builds: set[asyncio.Task[Any]] = set()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._loading: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.loads = 0
        # Vector counts of users not (yet) worth an entry, so a search need not count them
        # again: raised on every add, lowered by the ids of every remove. Only a threshold
        # is decided by it, so an estimate does: it errs low after removing ids without a
        # vector (such a user stays on the exact SQL path a little longer) and high after
        # in-place re-embeddings (the entry is loaded a little early).
        self._small: OrderedDict[tuple[str, str], int] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def has(self, user_id: str, model: str) -> bool:
        return (user_id, model) in self._entries

    def known_count(self, user_id: str, model: str) -> int | None:
        count = self._small.get((user_id, model))
        if count is not None:
            self._small.move_to_end((user_id, model))
        return count

    def note_count(self, user_id: str, model: str, count: int) -> None:
        self._small[(user_id, model)] = count
        self._small.move_to_end((user_id, model))
        while len(self._small) > SMALL_COUNTS:
            self._small.popitem(last=False)

    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def counts(self) -> tuple[int, int]:
        """(users whose vectors are loaded, vectors held)."""
        return len(self._entries), sum(e.alive_count for e in self._entries.values())

    # -- kept in step by the store --------------------------------------------------
    def on_add(
        self,
        user_id: str,
        model: str,
        ids: Sequence[str],
        tiers: Sequence[str],
        sessions: Sequence[str | None],
        vectors: np.ndarray,
    ) -> None:
        key = (user_id, model)
        if key in self._small:
            self._small[key] += len(ids)
        if key in self._loading:
            self._loading[key].append(
                ("add", (list(ids), list(tiers), list(sessions), vectors.copy()))
            )
        entry = self._entries.get(key)
        if entry is not None and entry.dim == vectors.shape[1]:
            entry.add(ids, tiers, sessions, vectors)
            if entry.half is None and 0 < self.half_min_vectors <= entry.n:
                entry.enable_half()
        elif entry is not None:
            self._entries.pop(key, None)  # dimension changed: rebuild when needed
        self._evict()

    def on_remove(self, user_id: str | None, ids: Sequence[str]) -> None:
        if user_id is None:
            self._small.clear()
        else:
            for key in [k for k in self._small if k[0] == user_id]:
                self._small[key] = max(0, self._small[key] - len(ids))
        for key, entry in list(self._entries.items()):
            if user_id is None or key[0] == user_id:
                entry.remove(ids)
                if entry.wants_compaction():
                    self._entries[key] = entry.compacted()
        for key, ops in self._loading.items():
            if user_id is None or key[0] == user_id:
                ops.append(("remove", list(ids)))

    def drop_user(self, user_id: str) -> None:
        for key in [k for k in self._entries if k[0] == user_id]:
            self._entries.pop(key, None)
        for key in [k for k in self._small if k[0] == user_id]:
            del self._small[key]
        for key, ops in self._loading.items():
            if key[0] == user_id:
                ops.append(("drop", None))

    def drop_all(self) -> None:
        self._entries.clear()
        self._small.clear()

    # -- search ---------------------------------------------------------------------
    async def ensure(self, user_id: str, model: str, count: int, loader: Any) -> _Entry | None:
        """The loaded entry of this user, loading it if the user has enough vectors."""
        key = (user_id, model)
        entry = self._entries.get(key)
        if entry is not None:
            entry.used = time.monotonic()
            return entry
        if not self.enabled or count < self.min_vectors:
            return None
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry
            self._loading[key] = []
            try:
                ids, tiers, sessions, matrix = await loader()
                entry = _Entry(
                    dim=int(matrix.shape[1]), matrix=np.zeros((0, matrix.shape[1]), np.float32)
                )
                entry.add(ids, tiers, sessions, matrix)
                if 0 < self.half_min_vectors <= entry.n:
                    # (changes that arrive meanwhile are in self._loading, replayed below)
                    await asyncio.to_thread(entry.enable_half)
                dropped = False
                for op, arg in self._loading[key]:
                    if op == "add":
                        entry.add(*arg)
                    elif op == "remove":
                        entry.remove(arg)
                    else:
                        dropped = True
                if dropped:
                    return None
                self._entries[key] = entry
                self.loads += 1
            finally:
                self._loading.pop(key, None)
                self._locks.pop(key, None)
        self._evict(keep=key)
        return entry

    def maybe_build_ivf(self, entry: _Entry) -> None:
        """Start building inverted lists for a big entry in a worker thread (searches stay
        exact until it is done), or rebuild them when a quarter of the rows came later."""
        if self.ivf_min_vectors <= 0 or entry.ivf_building:
            return
        if entry.alive_count < self.ivf_min_vectors:
            return
        if entry.ivf is not None and entry.n - entry.ivf.built_n < entry.ivf.built_n // 4:
            return
        entry.ivf_building = True
        matrix, alive, n = entry.matrix, entry.alive.copy(), entry.n

        async def build() -> None:
            try:
                ivf = await asyncio.to_thread(build_ivf, matrix, alive, n, self.ivf_probe_fraction)
                if ivf is not None and entry.dim == ivf.centroids.shape[1]:
                    entry.ivf = ivf
            finally:
                entry.ivf_building = False

        task = asyncio.get_running_loop().create_task(build())
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)

    async def wait_builds(self) -> None:
        while self._builds:
            await asyncio.gather(*list(self._builds), return_exceptions=True)

    def _evict(self, keep: tuple[str, str] | None = None) -> None:
        while self._entries and self.nbytes() > self.max_bytes:
            victims = sorted((e.used, k) for k, e in self._entries.items() if k != keep)
            if not victims:
                break
            self._entries.pop(victims[0][1], None)
