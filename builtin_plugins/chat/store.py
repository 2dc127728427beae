"""Sessions and messages in the database (DuckDB or PostgreSQL). All SQL of the chat
plugin lives here.

Every read and write takes the owner's ``user_id``: a session of another user is simply
not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sdk import Database, Migration, Transaction
from sdk.errors import Problem

log = logging.getLogger("llmmultichat.chat.store")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS chat_sessions (
        session_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        last_character TEXT,
        message_count INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS chat_sessions_user ON chat_sessions (user_id)",
    """CREATE TABLE IF NOT EXISTS chat_messages (
        message_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        role TEXT NOT NULL,
        character TEXT,
        content TEXT NOT NULL,
        tool_calls TEXT,
        tool_call_id TEXT,
        tool_name TEXT,
        usage TEXT,
        provider TEXT,
        model TEXT,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chat_messages_session ON chat_messages (session_id, seq)",
    "CREATE INDEX IF NOT EXISTS chat_messages_user ON chat_messages (user_id)",
]
# Messages as data: a reply's status, the user message it answers, its group of
# alternatives (regenerated replies) and which of them is shown, and its place in the
# session (``pos``: an alternative takes the place of the reply it stands in for, so
# history is ordered by ``pos, seq``). ``chat_turns`` remembers the turns a client gave a
# ``client_message_id``, so a resend answers with the stored turn.
MESSAGES_AS_DATA = [
    "ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS status TEXT",
    "ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS reply_to TEXT",
    "ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS alt_group TEXT",
    "ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS part_of TEXT",
    "ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS hidden BOOLEAN",
    "ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS pos BIGINT",
    "UPDATE chat_messages SET pos = seq WHERE pos IS NULL",
    """CREATE TABLE IF NOT EXISTS chat_turns (
        user_id TEXT NOT NULL,
        client_message_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (user_id, client_message_id)
    )""",
]
# Characters as data: users' (private) and admins' (global) characters, and admins'
# overrides of the system ones (plugins.toml); their avatars; and a version every change
# moves, which every instance compares with its own before it uses characters.
CHARACTERS = [
    """CREATE TABLE IF NOT EXISTS chat_characters (
        character_id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        owner_id TEXT,
        data TEXT NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT false,
        avatar_version TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chat_characters_owner ON chat_characters (owner_id)",
    """CREATE TABLE IF NOT EXISTS chat_avatars (
        character_id TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        image BYTEA NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chat_versions (
        name TEXT PRIMARY KEY,
        version BIGINT NOT NULL
    )""",
    "INSERT INTO chat_versions (name, version) VALUES ('characters', 0) ON CONFLICT DO NOTHING",
]
# The user's persona: what the user tells the characters about themself.
PERSONAS = [
    """CREATE TABLE IF NOT EXISTS chat_personas (
        user_id TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        updated_at TIMESTAMPTZ NOT NULL
    )""",
]
MIGRATIONS = [
    Migration(1, "sessions and messages", SCHEMA),
    Migration(2, "message status, alternatives, positions; client message ids", MESSAGES_AS_DATA),
    Migration(3, "characters, avatars and their version", CHARACTERS),
    Migration(4, "the user's persona", PERSONAS),
]
PERSONA_TTL = 5.0  # seconds a persona read is reused (another instance's change shows after)

STATUSES = ("complete", "stopped", "failed")

_seq_lock = threading.Lock()
_last_seq = 0


def next_seq() -> int:
    """Monotonic within the process, time-ordered across processes."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(_last_seq + 1, time.time_ns() // 1000)
        return _last_seq


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Message:
    message_id: str
    session_id: str
    role: str
    content: str
    character: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    usage: dict[str, int] | None = None
    provider: str | None = None
    model: str | None = None
    created_at: datetime | None = None
    seq: int = 0
    status: str = "complete"
    reply_to: str | None = None  # an assistant or tool message: the user message it answers
    alt_group: str | None = None  # the reply's group of alternatives (None: its own id)
    part_of: str | None = None  # a tool round's message: the final reply it belongs to
    hidden: bool = False  # an alternative not shown
    pos: int = 0  # place in the session (0: its seq)
    alternatives: list[str] | None = None  # filled by history reads

    @property
    def group(self) -> str:
        return self.alt_group or self.message_id

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "role": self.role,
            "character": self.character,
            "content": self.content,
            "created_at": iso(self.created_at),
            "status": self.status,
        }
        if self.role == "assistant" and not self.tool_calls:
            out["alternatives"] = list(self.alternatives or [self.message_id])
        else:
            out["alternatives"] = []
        if self.reply_to:
            out["reply_to"] = self.reply_to
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
            out["tool_name"] = self.tool_name
        return out


_MSG_COLS = (
    "message_id, session_id, role, content, character, tool_calls, tool_call_id, tool_name,"
    " usage, provider, model, created_at, seq, status, reply_to, alt_group, part_of, hidden, pos"
)
SHOWN = "NOT coalesce(hidden, false)"


def _message(row: tuple[Any, ...]) -> Message:
    return Message(
        message_id=row[0],
        session_id=row[1],
        role=row[2],
        content=row[3],
        character=row[4],
        tool_calls=json.loads(row[5]) if row[5] else None,
        tool_call_id=row[6],
        tool_name=row[7],
        usage=json.loads(row[8]) if row[8] else None,
        provider=row[9],
        model=row[10],
        created_at=row[11],
        seq=row[12],
        status=row[13] or "complete",
        reply_to=row[14],
        alt_group=row[15],
        part_of=row[16],
        hidden=bool(row[17]),
        pos=row[18] if row[18] is not None else row[12],
    )


def _session(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "session_id": row[0],
        "title": row[1],
        "created_at": iso(row[2]),
        "updated_at": iso(row[3]),
        "last_character": row[4],
        "message_count": row[5],
    }


_SESSION_COLS = "session_id, title, created_at, updated_at, last_character, message_count"
MAX_TITLE = 120


class ChatStore:
    """Sessions and messages, with group commit and two small caches.

    New sessions and messages are queued and written by one background writer, as many
    operations per transaction as have queued while the previous one was committing
    (group commit). Each operation's caller waits for the commit that carries it, so a
    reply acknowledged to the client (REST response, SSE ``complete``, WebSocket
    ``done``) is in the database even if the process dies right after. When a batch
    fails, its operations are retried one transaction each, so one request's bad write
    never discards another's. Every read first waits until everything queued before it
    is committed, so a client always reads its own writes. Session owners and the last
    messages of recently active sessions are cached, so a chat turn needs no database
    read on its hot path.
    """

    def __init__(
        self,
        db: Database,
        *,
        window: int = 36,
        cache_sessions: int = 4096,
        linger: float = 0.0,
    ) -> None:
        self.db = db
        # how long the writer waits for more work before a commit (each caller waits too)
        self.linger = linger
        self.window = max(1, window)
        self.cache_sessions = cache_sessions
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._recent: OrderedDict[str, deque[Message]] = OrderedDict()
        self._pending: list[_Op] = []
        self._inflight: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self.write_errors = 0
        self.batches = 0
        # users erased while a reply of theirs may still be in flight: drop its writes
        self._erased: OrderedDict[str, None] = OrderedDict()
        # user_id -> (when read, persona)
        self._personas: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    # ---- the writer -----------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())

    async def stop(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def _commit(self, op: str, payload: Any) -> None:
        """Queue one operation and wait until it is committed (raises if it cannot be)."""
        item = _Op(op, payload, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if self._writer is None:
            await self._write_batch()  # not started (or stopped): write inline
        elif self._wake is not None:
            self._wake.set()
        await asyncio.shield(item.done)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (or has failed)."""
        if self._writer is None and self._pending:
            await self._write_batch()
        waiting = [op.done for op in self._inflight + self._pending]
        if waiting:
            await asyncio.wait(waiting)

    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger > 0:
                await asyncio.sleep(self.linger)
            while self._pending:
                await self._write_batch()

    async def _write_batch(self) -> None:
        batch, self._pending = self._pending, []
        self._inflight = batch
        try:
            try:
                async with self.db.transaction() as tx:
                    await _write(tx, batch)
                results: list[BaseException | None] = [None] * len(batch)
            except Exception:
                if len(batch) == 1:
                    raise
                # Find the bad operation(s): each alone, so the others still land.
                results = []
                for item in batch:
                    try:
                        async with self.db.transaction() as tx:
                            await _write(tx, [item])
                        results.append(None)
                    except Exception as exc:
                        results.append(exc)
        except Exception as exc:
            results = [exc]
        finally:
            self._inflight = []
        self.batches += 1
        for item, error in zip(batch, results, strict=True):
            if item.done.done():
                continue
            if error is None:
                item.done.set_result(None)
            else:
                if not isinstance(error, Problem):  # a refusal (e.g. a known turn) is no fault
                    self.write_errors += 1
                    log.error("chat store: writing a %s failed: %s", item.op, error)
                item.done.set_exception(error)

    # ---- the user's persona ------------------------------------------------------------
    async def persona(self, user_id: str) -> dict[str, str]:
        """The user's persona ``{name, description}`` (empty strings when never set); read
        at most every PERSONA_TTL seconds per user (a turn's hot path reads no database)."""
        cached = self._personas.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < PERSONA_TTL:
            return dict(cached[1])
        row = await self.db.fetchone(
            "SELECT name, description FROM chat_personas WHERE user_id = $1", [user_id]
        )
        found = {"name": row[0], "description": row[1]} if row else {"name": "", "description": ""}
        self._personas[user_id] = (time.monotonic(), found)
        self._personas.move_to_end(user_id)
        while len(self._personas) > self.cache_sessions * 4:
            self._personas.popitem(last=False)
        return dict(found)

    async def set_persona(self, user_id: str, name: str, description: str) -> dict[str, str]:
        await self.db.execute(
            "INSERT INTO chat_personas (user_id, name, description, updated_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET"
            " name = excluded.name, description = excluded.description,"
            " updated_at = excluded.updated_at",
            [user_id, name, description, now()],
        )
        found = {"name": name, "description": description}
        self._personas[user_id] = (time.monotonic(), found)
        return dict(found)

    # ---- caches ---------------------------------------------------------------------
    def _remember_owner(self, session_id: str, user_id: str) -> None:
        self._owners[session_id] = user_id
        self._owners.move_to_end(session_id)
        while len(self._owners) > self.cache_sessions * 4:
            self._owners.popitem(last=False)

    def _remember_recent(self, session_id: str, messages: list[Message]) -> None:
        self._recent[session_id] = deque(messages[-self.window :], maxlen=self.window)
        self._recent.move_to_end(session_id)
        while len(self._recent) > self.cache_sessions:
            self._recent.popitem(last=False)

    def _forget(self, session_id: str) -> None:
        self._owners.pop(session_id, None)
        self._recent.pop(session_id, None)

    # ---- sessions -------------------------------------------------------------------
    async def create_session(self, user_id: str, title: str = "") -> dict[str, Any]:
        sid = new_id("ses")
        ts = now()
        if user_id not in self._erased:
            await self._commit("session", [sid, user_id, title[:MAX_TITLE], ts, ts])
        self._remember_owner(sid, user_id)
        self._remember_recent(sid, [])
        return {
            "session_id": sid,
            "title": title[:MAX_TITLE],
            "created_at": iso(ts),
            "updated_at": iso(ts),
            "last_character": None,
            "message_count": 0,
        }

    async def owns(self, user_id: str, session_id: str) -> bool:
        owner = self._owners.get(session_id)
        if owner is not None:
            return owner == user_id
        return await self.get_session(user_id, session_id) is not None

    async def get_session(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        await self.flush()
        row = await self.db.fetchone(
            f"SELECT {_SESSION_COLS} FROM chat_sessions WHERE session_id = $1 AND user_id = $2",
            [session_id, user_id],
        )
        if row:
            self._remember_owner(session_id, user_id)
        return _session(row) if row else None

    async def list_sessions(
        self, user_id: str, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        await self.flush()
        rows = await self.db.fetchall(
            f"SELECT {_SESSION_COLS} FROM chat_sessions WHERE user_id = $1"
            " ORDER BY updated_at DESC, session_id LIMIT $2 OFFSET $3",
            [user_id, limit, offset],
        )
        return [_session(r) for r in rows]

    async def rename_session(
        self, user_id: str, session_id: str, title: str
    ) -> dict[str, Any] | None:
        """The session with its new title, or None when the user has no such session."""
        await self.flush()
        row = await self.db.fetchone(
            "UPDATE chat_sessions SET title = $1 WHERE session_id = $2 AND user_id = $3"
            f" RETURNING {_SESSION_COLS}",
            [title, session_id, user_id],
        )
        return _session(row) if row else None

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        await self.flush()

        async with self.db.transaction() as tx:
            found = await tx.fetchall(
                "DELETE FROM chat_sessions WHERE session_id = $1 AND user_id = $2 "
                "RETURNING session_id",
                [session_id, user_id],
            )
            if found:
                await tx.execute(
                    "DELETE FROM chat_messages WHERE session_id = $1 AND user_id = $2",
                    [session_id, user_id],
                )
                await tx.execute(
                    "DELETE FROM chat_turns WHERE session_id = $1 AND user_id = $2",
                    [session_id, user_id],
                )
        if found:
            self._forget(session_id)
        return bool(found)

    async def delete_user(self, user_id: str) -> int:
        self._erased[user_id] = None
        while len(self._erased) > 10000:
            self._erased.popitem(last=False)
        await self.flush()
        for sid in [s for s, owner in self._owners.items() if owner == user_id]:
            self._forget(sid)
        self._personas.pop(user_id, None)

        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM chat_messages WHERE user_id = $1", [user_id])
            await tx.execute("DELETE FROM chat_turns WHERE user_id = $1", [user_id])
            await tx.execute("DELETE FROM chat_personas WHERE user_id = $1", [user_id])
            gone = await tx.fetchall(
                "DELETE FROM chat_sessions WHERE user_id = $1 RETURNING session_id", [user_id]
            )
        return len(gone)

    # ---- messages -------------------------------------------------------------------
    async def add_messages(self, user_id: str, messages: list[Message]) -> None:
        """Store messages of one session; returns once they are committed."""
        if not messages or user_id in self._erased:
            return
        for m in messages:
            m.seq = m.seq or next_seq()
            m.created_at = m.created_at or now()
        session_id = messages[0].session_id
        await self._commit("messages", (user_id, list(messages)))
        recent = self._recent.get(session_id)
        if recent is not None:
            recent.extend(m for m in messages if not m.hidden)
            self._recent.move_to_end(session_id)

    async def recent_messages(self, user_id: str, session_id: str, limit: int) -> list[Message]:
        """The last ``limit`` messages for the prompt (from the cache when warm)."""
        recent = self._recent.get(session_id)
        if recent is not None and limit <= self.window:
            self._recent.move_to_end(session_id)
            return list(recent)[-limit:] if limit else []
        messages = await self.history(user_id, session_id, limit=max(limit, self.window))
        self._remember_recent(session_id, messages)
        return messages[-limit:] if limit else []

    async def history(
        self,
        user_id: str,
        session_id: str,
        *,
        limit: int = 50,
        before: Message | None = None,
    ) -> list[Message]:
        """The last ``limit`` shown messages (before ``before``), oldest first, each reply
        with the ids of its alternatives."""
        await self.flush()
        params: list[Any] = [session_id, user_id, limit]
        where = f"session_id = $1 AND user_id = $2 AND {SHOWN}"
        if before is not None:
            where += " AND (pos < $4 OR (pos = $4 AND seq < $5))"
            params.extend([before.pos, before.seq])
        rows = await self.db.fetchall(
            f"SELECT {_MSG_COLS} FROM chat_messages WHERE {where}"
            " ORDER BY pos DESC, seq DESC LIMIT $3",
            params,
        )
        messages = [_message(r) for r in reversed(rows)]
        await self._fill_alternatives(user_id, session_id, messages)
        return messages

    async def _fill_alternatives(
        self, user_id: str, session_id: str, messages: list[Message]
    ) -> None:
        groups = sorted({m.alt_group for m in messages if m.alt_group and m.role == "assistant"})
        if not groups:
            return
        rows = await self.db.fetchall(
            "SELECT alt_group, message_id FROM chat_messages WHERE session_id = $1"
            " AND user_id = $2 AND alt_group = ANY($3::TEXT[]) AND part_of IS NULL"
            " AND role = 'assistant' ORDER BY seq",
            [session_id, user_id, groups],
        )
        members: dict[str, list[str]] = {}
        for group, message_id in rows:
            members.setdefault(group, []).append(message_id)
        for m in messages:
            if m.alt_group and m.role == "assistant":
                m.alternatives = members.get(m.alt_group) or [m.message_id]

    async def get_message(self, user_id: str, message_id: str) -> Message | None:
        """One message of the user's (any session), with its alternatives."""
        await self.flush()
        row = await self.db.fetchone(
            f"SELECT {_MSG_COLS} FROM chat_messages WHERE message_id = $1 AND user_id = $2",
            [message_id, user_id],
        )
        if row is None:
            return None
        message = _message(row)
        await self._fill_alternatives(user_id, message.session_id, [message])
        return message

    async def get_session_message(
        self, user_id: str, session_id: str, message_id: str
    ) -> Message | None:
        found = await self.get_message(user_id, message_id)
        return found if found is not None and found.session_id == session_id else None

    async def before(self, user_id: str, anchor: Message, limit: int) -> list[Message]:
        """The last ``limit`` shown messages of the session that come before ``anchor``."""
        if limit <= 0:
            return []
        return await self.history(user_id, anchor.session_id, limit=limit, before=anchor)

    async def replies_to(self, user_id: str, session_id: str, message_id: str) -> list[Message]:
        """The shown replies (not tool rounds) answering a user message, in order."""
        await self.flush()
        rows = await self.db.fetchall(
            f"SELECT {_MSG_COLS} FROM chat_messages WHERE session_id = $1 AND user_id = $2"
            f" AND reply_to = $3 AND role = 'assistant' AND {SHOWN} AND part_of IS NULL"
            " ORDER BY pos, seq",
            [session_id, user_id, message_id],
        )
        messages = [_message(r) for r in rows]
        await self._fill_alternatives(user_id, session_id, messages)
        return messages

    async def run_tx(self, fn: Callable[[Transaction], Awaitable[Any]]) -> Any:
        """Run ``fn(tx)`` in the writer's next commit (after what is queued before it); its
        result. ``fn`` may run twice (a failed batch is retried one operation at a time)."""
        box: dict[str, Any] = {}

        async def op(tx: Transaction) -> None:
            box["result"] = await fn(tx)

        await self._commit("tx", op)
        return box.get("result")

    async def add_alternative(
        self, user_id: str, session_id: str, group: str, messages: list[Message]
    ) -> None:
        """Store a regenerated reply (with its tool rounds) as the shown alternative of
        ``group``: the group's other members are hidden in the same commit."""
        if user_id in self._erased:
            return
        for m in messages:
            m.seq = m.seq or next_seq()
            m.created_at = m.created_at or now()

        async def write(tx: Transaction) -> None:
            # a reply stored before alternatives existed is the first member of its group
            await tx.execute(
                "UPDATE chat_messages SET alt_group = $1 WHERE message_id = $1"
                " AND user_id = $2 AND alt_group IS NULL",
                [group, user_id],
            )
            await tx.execute(
                "UPDATE chat_messages SET hidden = true WHERE alt_group = $1"
                " AND session_id = $2 AND user_id = $3",
                [group, session_id, user_id],
            )
            await insert_messages(tx, [(user_id, messages)])
            await recount(tx, user_id, session_id)

        await self.run_tx(write)
        self._recent.pop(session_id, None)

    async def select_alternative(self, user_id: str, message: Message) -> None:
        """Show ``message`` (and its tool rounds) in its group; hide the others."""
        group = message.group

        async def write(tx: Transaction) -> None:
            await tx.execute(
                "UPDATE chat_messages SET hidden = NOT (message_id = $1 OR"
                " coalesce(part_of, '') = $1) WHERE (alt_group = $2 OR message_id = $2)"
                " AND session_id = $3 AND user_id = $4",
                [message.message_id, group, message.session_id, user_id],
            )
            await recount(tx, user_id, message.session_id)

        await self.run_tx(write)
        self._recent.pop(message.session_id, None)

    async def edit_and_truncate(self, user_id: str, message: Message, content: str) -> None:
        """Edit a user message and delete everything after it in its session."""

        async def write(tx: Transaction) -> None:
            await tx.execute(
                "UPDATE chat_messages SET content = $1 WHERE message_id = $2 AND user_id = $3",
                [content, message.message_id, user_id],
            )
            await tx.execute(
                "DELETE FROM chat_messages WHERE session_id = $1 AND user_id = $2"
                " AND (pos > $3 OR (pos = $3 AND seq > $4))",
                [message.session_id, user_id, message.pos, message.seq],
            )
            await recount(tx, user_id, message.session_id)

        await self.run_tx(write)
        message.content = content
        self._recent.pop(message.session_id, None)

    async def delete_message(self, user_id: str, message: Message) -> None:
        """Delete a message: a user message with every reply that answered it (their
        alternatives and tool rounds too); a reply with its tool rounds, the next of its
        alternatives (else the previous one) becoming the shown one."""
        sid = message.session_id

        async def write(tx: Transaction) -> None:
            if message.role == "user":
                await tx.execute(
                    "DELETE FROM chat_messages WHERE session_id = $1 AND user_id = $2"
                    " AND (message_id = $3 OR reply_to = $3)",
                    [sid, user_id, message.message_id],
                )
                await tx.execute(
                    "DELETE FROM chat_turns WHERE user_id = $1 AND message_id = $2",
                    [user_id, message.message_id],
                )
            else:
                await tx.execute(
                    "DELETE FROM chat_messages WHERE session_id = $1 AND user_id = $2"
                    " AND (message_id = $3 OR part_of = $3)",
                    [sid, user_id, message.message_id],
                )
                if message.alt_group and not message.hidden:
                    rows = await tx.fetchall(
                        "SELECT message_id, seq FROM chat_messages WHERE session_id = $1"
                        " AND user_id = $2 AND alt_group = $3 AND part_of IS NULL"
                        " AND role = 'assistant' ORDER BY seq",
                        [sid, user_id, message.alt_group],
                    )
                    later = [r[0] for r in rows if r[1] > message.seq]
                    shown = later[0] if later else (rows[-1][0] if rows else None)
                    if shown is not None:
                        await tx.execute(
                            "UPDATE chat_messages SET hidden = false WHERE session_id = $1"
                            " AND user_id = $2 AND (message_id = $3 OR part_of = $3)",
                            [sid, user_id, shown],
                        )
            await recount(tx, user_id, sid)

        await self.run_tx(write)
        self._recent.pop(sid, None)

    async def update_reply(
        self,
        user_id: str,
        message: Message,
    ) -> None:
        """Write a reply's content, status and usage back (a continued reply)."""

        async def write(tx: Transaction) -> None:
            await tx.execute(
                "UPDATE chat_messages SET content = $1, status = $2, usage = $3"
                " WHERE message_id = $4 AND user_id = $5",
                [
                    message.content,
                    message.status,
                    json.dumps(message.usage) if message.usage else None,
                    message.message_id,
                    user_id,
                ],
            )
            await tx.execute(
                "UPDATE chat_sessions SET updated_at = $1 WHERE session_id = $2 AND user_id = $3",
                [now(), message.session_id, user_id],
            )

        await self.run_tx(write)
        self._recent.pop(message.session_id, None)

    # ---- turns a client named (client_message_id) -------------------------------------
    async def accept_turn(
        self, user_id: str, client_message_id: str, message: Message, cutoff: datetime
    ) -> bool:
        """Store the user message of a turn with a ``client_message_id`` and remember the
        turn, in one commit; False (nothing stored) when the user already has a turn with
        that id newer than ``cutoff``."""
        message.seq = message.seq or next_seq()
        message.created_at = message.created_at or now()

        async def write(tx: Transaction) -> bool:
            ts = now()
            row = await tx.fetchone(
                "INSERT INTO chat_turns (user_id, client_message_id, session_id, message_id,"
                " state, created_at, updated_at) VALUES ($1, $2, $3, $4, 'running', $5, $5)"
                " ON CONFLICT (user_id, client_message_id) DO UPDATE SET"
                " session_id = excluded.session_id, message_id = excluded.message_id,"
                " state = 'running', created_at = excluded.created_at,"
                " updated_at = excluded.updated_at WHERE chat_turns.created_at < $6"
                " RETURNING message_id",
                [user_id, client_message_id, message.session_id, message.message_id, ts, cutoff],
            )
            if row is None or row[0] != message.message_id:
                return False
            await insert_messages(tx, [(user_id, [message])])
            return True

        if user_id in self._erased:
            return True
        accepted = bool(await self.run_tx(write))
        if accepted:
            recent = self._recent.get(message.session_id)
            if recent is not None:
                recent.append(message)
        return accepted

    async def find_turn(
        self, user_id: str, client_message_id: str, cutoff: datetime
    ) -> dict[str, Any] | None:
        await self.flush()
        row = await self.db.fetchone(
            "SELECT session_id, message_id, state, created_at, updated_at FROM chat_turns"
            " WHERE user_id = $1 AND client_message_id = $2 AND created_at >= $3",
            [user_id, client_message_id, cutoff],
        )
        if row is None:
            return None
        return {
            "session_id": row[0],
            "message_id": row[1],
            "state": row[2],
            "created_at": row[3],
            "updated_at": row[4],
        }

    async def claim_turn(self, user_id: str, client_message_id: str, seen: datetime) -> bool:
        """Take over a lost turn: True for the one caller that moved it on from ``seen``
        (through the writer: DuckDB refuses concurrent updates of one row)."""

        async def write(tx: Transaction) -> bool:
            row = await tx.fetchone(
                "UPDATE chat_turns SET updated_at = $1 WHERE user_id = $2"
                " AND client_message_id = $3 AND updated_at = $4 RETURNING client_message_id",
                [now(), user_id, client_message_id, seen],
            )
            return row is not None

        return bool(await self.run_tx(write))

    async def finish_turn(self, user_id: str, client_message_id: str, state: str) -> None:
        async def write(tx: Transaction) -> None:
            await tx.execute(
                "UPDATE chat_turns SET state = $1, updated_at = $2"
                " WHERE user_id = $3 AND client_message_id = $4",
                [state, now(), user_id, client_message_id],
            )

        await self.run_tx(write)


def _message_row(user_id: str, m: Message) -> list[Any]:
    return [
        m.message_id,
        m.session_id,
        user_id,
        m.seq,
        m.role,
        m.character,
        m.content,
        json.dumps(m.tool_calls, ensure_ascii=False) if m.tool_calls else None,
        m.tool_call_id,
        m.tool_name,
        json.dumps(m.usage) if m.usage else None,
        m.provider,
        m.model,
        m.created_at,
        m.status,
        m.reply_to,
        m.alt_group,
        m.part_of,
        m.hidden,
        m.pos or m.seq,
    ]


@dataclass(slots=True)
class _Op:
    op: str  # "session", "messages" or "tx" (a function of the transaction)
    payload: Any
    done: asyncio.Future[None]


_MSG_COLUMNS = [
    "message_id",
    "session_id",
    "user_id",
    "seq",
    "role",
    "character",
    "content",
    "tool_calls",
    "tool_call_id",
    "tool_name",
    "usage",
    "provider",
    "model",
    "created_at",
    "status",
    "reply_to",
    "alt_group",
    "part_of",
    "hidden",
    "pos",
]
_SESSION_INSERT = ["session_id", "user_id", "title", "created_at", "updated_at"]
_BUMP_TYPES = ["TEXT", "TEXT", "TIMESTAMPTZ", "INTEGER", "TEXT", "TEXT"]
_CHUNK = 400  # sessions per UPDATE statement


def _bump_rows(n: int) -> str:
    width = len(_BUMP_TYPES)
    return ", ".join(
        "("
        + ", ".join(f"CAST(${r * width + c + 1} AS {t})" for c, t in enumerate(_BUMP_TYPES))
        + ")"
        for r in range(n)
    )


async def _write(tx: Transaction, batch: list[_Op]) -> None:
    """One transaction's worth of queued operations, in multi-row statements; then the
    operations that bring their own statements (``tx``), in order."""
    sessions = [item.payload for item in batch if item.op == "session"]
    await tx.insert_rows("chat_sessions", _SESSION_INSERT, sessions)
    await insert_messages(tx, [item.payload for item in batch if item.op == "messages"])
    for item in batch:
        if item.op == "tx":
            await item.payload(tx)


async def insert_messages(tx: Transaction, groups: list[tuple[str, list[Message]]]) -> None:
    """Insert the messages of ``(user_id, messages of one session)`` groups and move
    their sessions' counters, title and last speaker."""
    rows: list[list[Any]] = []
    bumps: dict[tuple[str, str], dict[str, Any]] = {}
    for user_id, messages in groups:
        rows.extend(_message_row(user_id, m) for m in messages)
        key = (messages[0].session_id, user_id)
        bump = bumps.setdefault(key, {"count": 0, "last": None, "title": "", "ts": None})
        bump["count"] += sum(1 for m in messages if not m.hidden)
        speakers = [m.character for m in messages if m.role == "assistant" and m.character]
        if speakers:
            bump["last"] = speakers[-1]
        if not bump["title"]:
            bump["title"] = next((m.content[:80] for m in messages if m.role == "user"), "")
        bump["ts"] = messages[-1].created_at
    await tx.insert_rows("chat_messages", _MSG_COLUMNS, rows)
    items = list(bumps.items())
    for i in range(0, len(items), _CHUNK):
        chunk = items[i : i + _CHUNK]
        await tx.execute(
            "UPDATE chat_sessions SET updated_at = v.ts,"
            " message_count = chat_sessions.message_count + v.n,"
            " last_character = coalesce(v.last, chat_sessions.last_character),"
            " title = CASE WHEN chat_sessions.title = '' THEN v.title"
            " ELSE chat_sessions.title END"
            f" FROM (VALUES {_bump_rows(len(chunk))}) AS v(sid, uid, ts, n, last, title)"
            " WHERE chat_sessions.session_id = v.sid AND chat_sessions.user_id = v.uid",
            [
                v
                for (sid, uid), b in chunk
                for v in (sid, uid, b["ts"], b["count"], b["last"], b["title"])
            ],
        )


async def recount(tx: Transaction, user_id: str, session_id: str) -> None:
    """Set a session's message count to its shown messages (after hiding or deleting)."""
    await tx.execute(
        "UPDATE chat_sessions SET message_count = (SELECT count(*) FROM chat_messages"
        f" WHERE session_id = $1 AND user_id = $2 AND {SHOWN}), updated_at = $3"
        " WHERE session_id = $1 AND user_id = $2",
        [session_id, user_id, now()],
    )


@dataclass(slots=True)
class CharacterRow:
    character_id: str
    scope: str
    owner_id: str | None
    data: dict[str, Any]
    deleted: bool
    avatar_version: str | None


class CharacterStore:
    """Characters made through the API, admins' overrides of system ones, avatars.

    Every change bumps ``chat_versions.characters`` in the same transaction, so any
    instance can tell whether the set it holds is current with one read."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # one change at a time from this process: every change updates the version row,
        # and DuckDB refuses a second transaction updating a row another has updated
        self._lock = asyncio.Lock()

    async def version(self) -> int:
        value = await self.db.fetchval(
            "SELECT version FROM chat_versions WHERE name = 'characters'"
        )
        return int(value or 0)

    async def load(self) -> tuple[int, list[CharacterRow]]:
        """The version and every row (deleted ones too: their names stay in history)."""
        async with self.db.transaction() as tx:
            version = await tx.fetchval(
                "SELECT version FROM chat_versions WHERE name = 'characters'"
            )
            rows = await tx.fetchall(
                "SELECT character_id, scope, owner_id, data, deleted, avatar_version"
                " FROM chat_characters ORDER BY created_at, character_id"
            )
        return int(version or 0), [
            CharacterRow(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5]) for r in rows
        ]

    @staticmethod
    async def _bump(tx: Transaction) -> int:
        return int(
            await tx.fetchval(
                "UPDATE chat_versions SET version = version + 1 WHERE name = 'characters'"
                " RETURNING version"
            )
        )

    async def save(
        self,
        character_id: str,
        *,
        scope: str,
        owner_id: str | None,
        data: dict[str, Any],
        deleted: bool = False,
        create: bool = False,
    ) -> int:
        """Insert (``create``) or replace a character's row; the new version. A create
        whose id exists raises (the primary key)."""
        ts = now()
        text = json.dumps(data, ensure_ascii=False)
        async with self._lock, self.db.transaction() as tx:
            if create:
                await tx.execute(
                    "INSERT INTO chat_characters (character_id, scope, owner_id, data, deleted,"
                    " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    [character_id, scope, owner_id, text, deleted, ts],
                )
            else:
                await tx.execute(
                    "INSERT INTO chat_characters (character_id, scope, owner_id, data, deleted,"
                    " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)"
                    " ON CONFLICT (character_id) DO UPDATE SET data = excluded.data,"
                    " deleted = excluded.deleted, updated_at = excluded.updated_at",
                    [character_id, scope, owner_id, text, deleted, ts],
                )
            return await self._bump(tx)

    async def set_avatar(self, character_id: str, content_type: str, image: bytes) -> int:
        ts = now()
        version = uuid.uuid4().hex[:16]
        async with self._lock, self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO chat_avatars (character_id, content_type, image, updated_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (character_id) DO UPDATE SET"
                " content_type = excluded.content_type, image = excluded.image,"
                " updated_at = excluded.updated_at",
                [character_id, content_type, image, ts],
            )
            await tx.execute(
                "UPDATE chat_characters SET avatar_version = $1, updated_at = $2"
                " WHERE character_id = $3",
                [version, ts, character_id],
            )
            return await self._bump(tx)

    async def avatar(self, character_id: str) -> tuple[str, bytes] | None:
        row = await self.db.fetchone(
            "SELECT content_type, image FROM chat_avatars WHERE character_id = $1",
            [character_id],
        )
        return (row[0], bytes(row[1])) if row else None

    async def erase_owner(self, owner_id: str) -> int:
        """A deleted user's private characters and their avatars; the new version."""
        async with self._lock, self.db.transaction() as tx:
            await tx.execute(
                "DELETE FROM chat_avatars WHERE character_id IN (SELECT character_id FROM"
                " chat_characters WHERE owner_id = $1 AND scope = 'private')",
                [owner_id],
            )
            await tx.execute(
                "DELETE FROM chat_characters WHERE owner_id = $1 AND scope = 'private'",
                [owner_id],
            )
            return await self._bump(tx)
