"""Memory rows and links read on the reply's path, kept in process (DuckDB only).

Why: every chat turn, the context hook reads the rows of the index's hits, the links of
the best ones and the rows those links lead to. Each DuckDB query costs 2-3 ms however
little it reads (planning, the ART index lookups of an IN list), so those three reads
were a third of memory's cost on a turn (bench/chat.py).

What: per user, the rows (:class:`Memory`) and the link lists of the memories read
lately, served to :meth:`MemoryStore.get_many` and :meth:`MemoryStore.related`, which
read from the database only what is not here. The store keeps them exact: each of its
writes applies its change here once committed (a new row of a user already here, a
changed text or importance, a new link) or forgets what it touched (deleted rows and the
links to them). A read that raced a write of the same user is not kept (each user has a
write count, taken before the read and checked after).

Only with DuckDB: one process owns the file, so every write goes through this store. On
PostgreSQL other processes write too (and a query costs well under a millisecond), so
reads always go to the database.

Bound: ``max_bytes`` (``[plugins.memory] row_cache_mb``) over all users, counting each
row's text and metadata plus a fixed overhead, and ``MAX_USERS`` users; past either, the
least recently read users are dropped whole. Every read returns copies: callers may change what they get.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class Row(Protocol):
    """What the cache needs of a row: a dataclass with these fields (domain.Memory)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    memory_id: str
    user_id: str
    content: str
    metadata: dict[str, Any]


# domain.Memory (generic here: the cache needs only the fields above)
Memory = TypeVar("Memory", bound=Row)

MAX_USERS = 10_000  # users held at once (a user who read and holds nothing counts too)
ROW_OVERHEAD = 400  # bytes of a cached row besides its text and metadata (object, dict slot)
LINK_BYTES = 120  # bytes of one cached link

# (other memory id, kind, weight, created_at): one link as a memory's list holds it
Link = tuple[str, str, float, datetime]


def _sized(memory: Memory) -> int:
    return ROW_OVERHEAD + len(memory.content) + len(repr(memory.metadata))


def _copy(memory: Memory) -> Memory:
    return dataclasses.replace(memory, metadata=copy.deepcopy(memory.metadata), score=None)


def _ordered(links: list[Link]) -> list[Link]:
    """As the database gives them: strongest first, then the newest."""
    return sorted(links, key=lambda link: (link[2], link[3]), reverse=True)


@dataclass
class _User(Generic[Memory]):
    user_id: str
    rows: dict[str, Memory] = field(default_factory=dict)
    links: dict[str, list[Link]] = field(default_factory=dict)
    bytes: int = 0
    writes: int = 0  # writes begun or ended; a read that saw it change is not kept
    writing: int = 0  # writes in flight: nothing read meanwhile is kept


@dataclass(frozen=True)
class Ticket:
    """What a read took before going to the database, to tell whether it may be kept."""

    user: _User[Any]
    writes: int
    every_user_writes: int


class RowCache(Generic[Memory]):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._users: OrderedDict[str, _User[Memory]] = OrderedDict()
        self._bytes = 0
        # writes of every user at once (a rule deleting across users): counted as a user's
        self._every_user_writes = 0
        self._every_user_writing = 0
        self.hits = 0  # rows served from here (what tests and benchmarks look at)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def nbytes(self) -> int:
        return self._bytes

    def counts(self) -> tuple[int, int]:
        """(users, rows) held."""
        return len(self._users), sum(len(u.rows) for u in self._users.values())

    # -- reads --------------------------------------------------------------------------
    def _user(self, user_id: str, *, read: bool = True) -> _User[Memory]:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(user_id)
            self._evict()
        elif read:  # (a write does not make a user recently read)
            self._users.move_to_end(user_id)
        return user

    def _ticket(self, user: _User[Memory]) -> Ticket:
        return Ticket(user, user.writes, self._every_user_writes)

    def rows(self, user_id: str, ids: Sequence[str]) -> tuple[list[Memory], list[str], Ticket]:
        """Copies of the rows held, the ids to read, and the ticket to keep what is read."""
        user = self._user(user_id)
        found, missing = [], []
        for memory_id in ids:
            memory = user.rows.get(memory_id)
            if memory is None:
                missing.append(memory_id)
            else:
                found.append(_copy(memory))
        self.hits += len(found)
        return found, missing, self._ticket(user)

    def links(
        self, user_id: str, ids: Sequence[str]
    ) -> tuple[dict[str, list[Link]], list[str], Ticket]:
        user = self._user(user_id)
        found = {i: list(user.links[i]) for i in ids if i in user.links}
        return found, [i for i in ids if i not in found], self._ticket(user)

    def _keeps(self, ticket: Ticket) -> bool:
        user = ticket.user
        return (
            self.enabled
            and self._users.get(user.user_id) is user  # (not dropped meanwhile)
            and user.writing == 0
            and user.writes == ticket.writes
            and self._every_user_writing == 0
            and self._every_user_writes == ticket.every_user_writes
        )

    def keep_rows(self, ticket: Ticket, memories: Iterable[Memory]) -> None:
        """Keep rows read from the database, unless a write of their user raced the read."""
        if not self._keeps(ticket):
            return
        for memory in memories:
            self._put(ticket.user, memory)
        self._evict()

    def keep_links(self, ticket: Ticket, links: dict[str, list[Link]]) -> None:
        """Keep each id's whole link list as read (an id with no links: an empty list)."""
        if not self._keeps(ticket):
            return
        user = ticket.user
        for memory_id, items in links.items():
            if memory_id not in user.links:
                user.links[memory_id] = _ordered(items)
                self._grow(user, LINK_BYTES * (1 + len(items)))
        self._evict()

    # -- writes -------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, user_id: str | None) -> Iterator[None]:
        """Around a write of ``user_id`` (None: any user): reads that overlap it are not
        kept. What the write changed is applied by the caller once it committed."""
        if user_id is None:
            self._every_user_writes += 1
            self._every_user_writing += 1
            try:
                yield
            finally:
                self._every_user_writes += 1
                self._every_user_writing -= 1
            return
        user = self._user(user_id, read=False)
        user.writes += 1
        user.writing += 1
        try:
            yield
        finally:
            user.writes += 1
            user.writing -= 1
            if not (user.writing or user.rows or user.links) and self._users.get(user_id) is user:
                del self._users[user_id]  # a writer nobody reads for holds no place

    def inserted(self, memories: Iterable[Memory]) -> None:
        """New rows: kept for users already here (their searches will find them), each
        with its list of links, empty (a memory just made has none; the links made next
        are added by :meth:`linked`): the links a new memory is answered with are read
        from here."""
        for memory in memories:
            user = self._users.get(memory.user_id)
            if user is not None:
                self._put(user, memory)
                if memory.memory_id not in user.links:
                    user.links[memory.memory_id] = []
                    self._grow(user, LINK_BYTES)
        self._evict()

    def updated(self, user_id: str, memory_id: str, **fields: Any) -> None:
        """Columns of a row rewritten in place, as a read would now give them."""
        user = self._users.get(user_id)
        memory = user.rows.get(memory_id) if user is not None else None
        if user is None or memory is None:
            return
        self._put(user, dataclasses.replace(memory, **fields))  # (_put copies)

    def deleted(self, user_id: str | None, ids: Sequence[str]) -> None:
        """Rows gone, with every link to or from them."""
        gone = set(ids)
        users = self._users.values() if user_id is None else [self._users.get(user_id)]
        for user in users:
            if user is None:
                continue
            for memory_id in gone & user.rows.keys():
                self._grow(user, -_sized(user.rows.pop(memory_id)))
            for memory_id in list(user.links):
                if memory_id in gone:
                    self._grow(user, -LINK_BYTES * (1 + len(user.links.pop(memory_id))))
                else:
                    kept = [link for link in user.links[memory_id] if link[0] not in gone]
                    self._grow(user, -LINK_BYTES * (len(user.links[memory_id]) - len(kept)))
                    user.links[memory_id] = kept

    def linked(self, user_id: str, links: Iterable[tuple[str, str, str, float, datetime]]) -> None:
        """New links ``(a, b, kind, weight, created_at)``, added to both ends' lists."""
        user = self._users.get(user_id)
        if user is None:
            return
        for a, b, kind, weight, at in links:
            for this, other in ((a, b), (b, a)):
                if this in user.links:
                    user.links[this] = _ordered([*user.links[this], (other, kind, weight, at)])
                    self._grow(user, LINK_BYTES)
        self._evict()

    def unlinked(self, user_id: str | None) -> None:
        """Links deleted by a rule (age, user): every link list of the user(s) goes."""
        users = self._users.values() if user_id is None else [self._users.get(user_id)]
        for user in users:
            if user is not None and user.links:
                self._grow(user, -LINK_BYTES * sum(1 + len(v) for v in user.links.values()))
                user.links.clear()

    def drop_user(self, user_id: str) -> None:
        user = self._users.pop(user_id, None)
        if user is not None:
            self._bytes -= user.bytes
            user.writes += 1  # a read in flight is not kept

    def clear(self) -> None:
        for user_id in list(self._users):
            self.drop_user(user_id)

    # -- bookkeeping --------------------------------------------------------------------
    def _put(self, user: _User[Memory], memory: Memory) -> None:
        old = user.rows.get(memory.memory_id)
        if old is not None:
            self._grow(user, -_sized(old))
        kept = _copy(memory)
        user.rows[memory.memory_id] = kept
        self._grow(user, _sized(kept))

    def _grow(self, user: _User[Memory], n: int) -> None:
        user.bytes += n
        self._bytes += n

    def _evict(self) -> None:
        """The least recently read users go first, whole, while past a bound (never one
        whose write is in flight: its changes are applied once committed)."""
        for user_id in list(self._users):
            if self._bytes <= self.max_bytes and len(self._users) <= MAX_USERS:
                return
            if self._users[user_id].writing == 0:
                self.drop_user(user_id)
