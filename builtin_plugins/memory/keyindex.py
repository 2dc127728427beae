"""An in-process keyword index (BM25 postings) for the embedded DuckDB.

Why: BM25 in SQL over ``memory_terms`` scans the table's term column for every query;
at 100k memories of one user (1.2M term rows) that measured ~70 ms a search on two busy
cores, over the 20 ms target. Postings held in process answer the same query with a few
numpy operations over the matching documents only.

What: per user, the postings of each term (document rows and term counts, in compact
``array`` buffers that grow by appending), each document's length, tier, session and an
``alive`` flag. Loaded from ``memory_terms`` on the user's first keyword search, kept in
step by the store's writes (on DuckDB one process owns the file, so nothing writes
behind its back), least-recently-used users dropped past a byte budget. A replaced or
deleted memory's row is marked dead (skipped by the scan and not counted in document
frequencies); an entry with more dead rows than live is dropped (and loaded afresh on the
next search). The scores are those of ``store.keyword_search``
(tests compare the two), and the ids found are read back from the database, so a stale
id can never leak.

Not used on PostgreSQL, where other processes write too: there the SQL path runs, on an
index of ``(user_id, term)``.
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .domain import TIER_CODES
from .keywords import BM25_B, BM25_K1

# A term row as the store writes it: (user_id, memory_id, term, tf, dl, tier, session_id)
TermRow = tuple[Any, ...]
ROW_BYTES = 6  # a posting: int32 row + uint16 count
DOC_BYTES = 64  # a document: its id, length, tier, session, alive flag (roughly)


@dataclass
class _KeywordEntry:
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # memory_id -> its live row
    lengths: array = field(default_factory=lambda: array("f"))
    tiers: array = field(default_factory=lambda: array("b"))
    sessions: array = field(default_factory=lambda: array("i"))
    alive: bytearray = field(default_factory=bytearray)
    session_codes: dict[str | None, int] = field(default_factory=lambda: {None: -1})
    postings: dict[str, tuple[array, array]] = field(default_factory=dict)
    live: int = 0
    live_length: float = 0.0
    postings_count: int = 0
    used: float = 0.0

    def nbytes(self) -> int:
        return self.postings_count * ROW_BYTES + len(self.ids) * DOC_BYTES

    def add(self, rows: Sequence[TermRow]) -> None:
        """Add documents from their term rows (a document already held is replaced)."""
        current: str | None = None
        row = -1
        for _user, memory_id, term, tf, dl, tier, session_id in rows:
            if memory_id != current:
                current = memory_id
                if memory_id in self.rows:
                    self.remove([memory_id])
                row = len(self.ids)
                self.ids.append(memory_id)
                self.rows[memory_id] = row
                self.lengths.append(float(dl))
                self.tiers.append(TIER_CODES.get(str(tier), -1))
                code = self.session_codes.setdefault(session_id, len(self.session_codes))
                self.sessions.append(code)
                self.alive.append(1)
                self.live += 1
                self.live_length += float(dl)
            postings = self.postings.get(term)
            if postings is None:
                postings = self.postings[term] = (array("i"), array("H"))
            postings[0].append(row)
            postings[1].append(min(int(tf), 65535))
            self.postings_count += 1

    def remove(self, memory_ids: Sequence[str]) -> None:
        for memory_id in memory_ids:
            row = self.rows.pop(memory_id, None)
            if row is not None and self.alive[row]:
                self.alive[row] = 0
                self.live -= 1
                self.live_length -= self.lengths[row]

    @property
    def wasteful(self) -> bool:
        return len(self.ids) >= 64 and len(self.ids) - self.live > self.live

    def search(
        self,
        terms: Sequence[str],
        limit: int,
        tiers: Sequence[str] | None,
        session_id: str | None,
        exclude: tuple[str | None, Sequence[str]] | None,
    ) -> list[tuple[str, float]]:
        if self.live == 0:
            return []
        n = len(self.ids)
        avgdl = max(self.live_length / self.live, 1.0)
        lengths = np.frombuffer(self.lengths, dtype=np.float32, count=n)
        scores = np.zeros(n, dtype=np.float64)
        alive = np.frombuffer(self.alive, dtype=np.uint8, count=n).astype(bool)
        for term in terms:
            postings = self.postings.get(term)
            if postings is None:
                continue
            rows = np.frombuffer(postings[0], dtype=np.int32)
            tf = np.frombuffer(postings[1], dtype=np.uint16).astype(np.float64)
            df = int(np.count_nonzero(alive[rows]))
            if df == 0:
                continue
            idf = np.log(1 + (self.live - df + 0.5) / (df + 0.5))
            norm = BM25_K1 * ((1 - BM25_B) + BM25_B * lengths[rows] / avgdl)
            # a term's rows are distinct (one posting per document), so += is exact
            scores[rows] += idf * tf * (BM25_K1 + 1) / (tf + norm)
        mask = (scores > 0) & alive
        tier_arr = np.frombuffer(self.tiers, dtype=np.int8, count=n)
        session_arr = np.frombuffer(self.sessions, dtype=np.int32, count=n)
        if tiers:
            mask &= np.isin(tier_arr, [TIER_CODES[t] for t in tiers if t in TIER_CODES])
        if session_id is not None:
            code = self.session_codes.get(session_id)
            if code is None:
                return []
            mask &= session_arr == code
        if exclude is not None:
            code = self.session_codes.get(exclude[0])
            if code is not None:
                ex = [TIER_CODES[t] for t in exclude[1] if t in TIER_CODES]
                mask &= ~((session_arr == code) & np.isin(tier_arr, ex))
        candidates = np.flatnonzero(mask)
        if candidates.size == 0:
            return []
        picked = scores[candidates]
        if candidates.size > limit:
            part = np.argpartition(-picked, limit - 1)[:limit]
            candidates, picked = candidates[part], picked[part]
        # best first; equal scores by memory id, as the SQL path orders them
        order = sorted(range(candidates.size), key=lambda i: (-picked[i], self.ids[candidates[i]]))
        return [(self.ids[int(candidates[i])], float(picked[i])) for i in order]


class KeywordIndex:
    """The users' keyword entries, least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _KeywordEntry] = OrderedDict()
        # user -> how many writes touched them (or every user: key None): a load that
        # overlapped a write is not kept, since that write may be missing from it
        self._writes: dict[str | None, int] = {}
        self._adds = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def nbytes(self) -> int:
        return sum(e.nbytes() for e in self._entries.values())

    def _wrote(self, user_id: str | None) -> None:
        self._writes[user_id] = self._writes.get(user_id, 0) + 1
        if len(self._writes) > 100_000:
            self._writes = {None: self._writes.get(None, 0) + 1}

    def _stamp(self, user_id: str) -> tuple[int, int]:
        return self._writes.get(user_id, 0), self._writes.get(None, 0)

    def on_add(self, user_id: str, rows: Sequence[TermRow]) -> None:
        self._wrote(user_id)
        entry = self._entries.get(user_id)
        if entry is not None:
            entry.add(rows)
            self._adds += 1
            if self._adds % 256 == 0:  # (summing every entry's size on each add would cost)
                self._trim()

    def on_remove(self, user_id: str | None, memory_ids: Sequence[str]) -> None:
        self._wrote(user_id)
        if user_id is None:
            self._entries.clear()
            return
        entry = self._entries.get(user_id)
        if entry is not None:
            entry.remove(memory_ids)
            if entry.wasteful:
                del self._entries[user_id]

    def drop_user(self, user_id: str) -> None:
        self._wrote(user_id)
        self._entries.pop(user_id, None)

    async def ensure(
        self, user_id: str, load: Callable[[], Awaitable[list[TermRow]]]
    ) -> _KeywordEntry:
        """This user's entry, loading it (``load``: every term row of the user) if needed.
        An entry whose load overlapped a write of the user is used once, not kept."""
        entry = self._entries.get(user_id)
        if entry is not None:
            entry.used = time.monotonic()
            self._entries.move_to_end(user_id)
            return entry
        stamp = self._stamp(user_id)
        rows = await load()
        entry = _KeywordEntry(used=time.monotonic())
        entry.add(sorted(rows, key=lambda r: str(r[1])))
        if self._stamp(user_id) == stamp and user_id not in self._entries:
            self._entries[user_id] = entry
            self._trim()
        return self._entries.get(user_id, entry)

    def _trim(self) -> None:
        total = self.nbytes()
        while total > self.max_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes()
