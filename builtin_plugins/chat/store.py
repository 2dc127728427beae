"""Sessions and messages in the shared DuckDB file. All SQL of the chat plugin lives here.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sdk import Database

log = logging.getLogger("llmmultichat.chat.store")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS chat_sessions (
        session_id VARCHAR PRIMARY KEY,
        user_id VARCHAR NOT NULL,
        title VARCHAR NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        last_character VARCHAR,
        message_count INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS chat_sessions_user ON chat_sessions (user_id)",
    """CREATE TABLE IF NOT EXISTS chat_messages (
        message_id VARCHAR PRIMARY KEY,
        session_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        role VARCHAR NOT NULL,
        character VARCHAR,
        content VARCHAR NOT NULL,
        tool_calls VARCHAR,
        tool_call_id VARCHAR,
        tool_name VARCHAR,
        usage VARCHAR,
        provider VARCHAR,
        model VARCHAR,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chat_messages_session ON chat_messages (session_id, seq)",
    "CREATE INDEX IF NOT EXISTS chat_messages_user ON chat_messages (user_id)",
]

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

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "role": self.role,
            "character": self.character,
            "content": self.content,
            "created_at": iso(self.created_at),
        }
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
            out["tool_name"] = self.tool_name
        return out


_MSG_COLS = (
    "message_id, session_id, role, content, character, tool_calls, tool_call_id, tool_name,"
    " usage, provider, model, created_at, seq"
)


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


class ChatStore:
    """Sessions and messages, with write-behind and two small caches.

    DuckDB commits cost milliseconds, so new sessions and messages are queued and written
    by one background writer, many turns per transaction (group commit). Every read of
    the tables first waits until everything queued before it is committed, so a client
    always reads its own writes. ``stop()`` drains the queue. Session owners and the last
    messages of recently active sessions are cached, so a chat turn needs no database
    read on its hot path.
    """

    def __init__(
        self,
        db: Database,
        *,
        window: int = 36,
        cache_sessions: int = 4096,
        linger: float = 0.02,
    ) -> None:
        self.db = db
        # how long the writer waits for more work before a commit (unless a read waits)
        self.linger = linger
        self._urgent: asyncio.Event | None = None
        self.window = max(1, window)
        self.cache_sessions = cache_sessions
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._recent: OrderedDict[str, deque[Message]] = OrderedDict()
        self._pending: list[tuple[str, Any]] = []
        self._batch_done: asyncio.Future[None] | None = None  # completes when _pending is written
        self._writing: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self.write_errors = 0
        # users erased while a reply of theirs may still be in flight: drop its writes
        self._erased: OrderedDict[str, None] = OrderedDict()

    async def create_tables(self) -> None:
        def create(cur: Any) -> None:
            for statement in SCHEMA:
                cur.execute(statement)

        await self.db.run(create)

    # ---- the writer -----------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())

    async def stop(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    def _enqueue(self, op: str, payload: Any) -> asyncio.Future[None]:
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        self._pending.append((op, payload))
        if self._wake is not None:
            self._wake.set()
        return self._batch_done

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        if self._writer is None and self._pending:
            await self._write_batch()  # not started (or stopped): write inline
        if self._urgent is not None and self._pending:
            self._urgent.set()
        for fut in (self._writing, self._batch_done):
            if fut is not None:
                await asyncio.shield(fut)

    async def _write_loop(self) -> None:
        assert self._wake is not None
        assert self._urgent is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger > 0 and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self.linger)
            self._urgent.clear()
            while self._pending:
                await self._write_batch()

    async def _write_batch(self) -> None:
        batch, self._pending = self._pending, []
        done, self._batch_done = self._batch_done, None
        self._writing = done
        try:
            await self.db.run(lambda cur: _write(cur, batch))
        except Exception:
            self.write_errors += 1
            log.exception("chat store: writing %d queued operations failed", len(batch))
        finally:
            self._writing = None
            if done is not None and not done.done():
                done.set_result(None)

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
            self._enqueue("session", [sid, user_id, title[:120], ts, ts])
        self._remember_owner(sid, user_id)
        self._remember_recent(sid, [])
        return {
            "session_id": sid,
            "title": title[:120],
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
            f"SELECT {_SESSION_COLS} FROM chat_sessions WHERE session_id = ? AND user_id = ?",
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
            f"SELECT {_SESSION_COLS} FROM chat_sessions WHERE user_id = ?"
            " ORDER BY updated_at DESC, session_id LIMIT ? OFFSET ?",
            [user_id, limit, offset],
        )
        return [_session(r) for r in rows]

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        await self.flush()

        def delete(cur: Any) -> bool:
            cur.execute("BEGIN TRANSACTION")
            try:
                found = cur.execute(
                    "SELECT 1 FROM chat_sessions WHERE session_id = ? AND user_id = ?",
                    [session_id, user_id],
                ).fetchone()
                if found:
                    cur.execute(
                        "DELETE FROM chat_messages WHERE session_id = ? AND user_id = ?",
                        [session_id, user_id],
                    )
                    cur.execute(
                        "DELETE FROM chat_sessions WHERE session_id = ? AND user_id = ?",
                        [session_id, user_id],
                    )
                cur.execute("COMMIT")
                return bool(found)
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        found = await self.db.run(delete)
        if found:
            self._forget(session_id)
        return found

    async def delete_user(self, user_id: str) -> int:
        self._erased[user_id] = None
        while len(self._erased) > 10000:
            self._erased.popitem(last=False)
        await self.flush()
        for sid in [s for s, owner in self._owners.items() if owner == user_id]:
            self._forget(sid)

        def delete(cur: Any) -> int:
            cur.execute("BEGIN TRANSACTION")
            try:
                row = cur.execute(
                    "SELECT count(*) FROM chat_sessions WHERE user_id = ?", [user_id]
                ).fetchone()
                cur.execute("DELETE FROM chat_messages WHERE user_id = ?", [user_id])
                cur.execute("DELETE FROM chat_sessions WHERE user_id = ?", [user_id])
                cur.execute("COMMIT")
                return int(row[0]) if row else 0
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        return await self.db.run(delete)

    # ---- messages -------------------------------------------------------------------
    async def add_messages(self, user_id: str, messages: list[Message]) -> None:
        """Queue messages of one session (written by the next group commit)."""
        if not messages or user_id in self._erased:
            return
        for m in messages:
            m.seq = m.seq or next_seq()
            m.created_at = m.created_at or now()
        session_id = messages[0].session_id
        self._enqueue("messages", (user_id, list(messages)))
        recent = self._recent.get(session_id)
        if recent is not None:
            recent.extend(m for m in messages)
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
        before_seq: int | None = None,
    ) -> list[Message]:
        """The last ``limit`` messages (before ``before_seq``), oldest first."""
        await self.flush()
        params: list[Any] = [session_id, user_id]
        where = "session_id = ? AND user_id = ?"
        if before_seq is not None:
            where += " AND seq < ?"
            params.append(before_seq)
        params.append(limit)
        rows = await self.db.fetchall(
            f"SELECT {_MSG_COLS} FROM chat_messages WHERE {where} ORDER BY seq DESC LIMIT ?",
            params,
        )
        return [_message(r) for r in reversed(rows)]

    async def message_seq(self, user_id: str, session_id: str, message_id: str) -> int | None:
        await self.flush()
        row = await self.db.fetchone(
            "SELECT seq FROM chat_messages WHERE message_id = ? AND session_id = ? AND user_id = ?",
            [message_id, session_id, user_id],
        )
        return int(row[0]) if row else None


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
    ]


_MSG_INSERT = (
    "INSERT INTO chat_messages (message_id, session_id, user_id, seq, role, character, content,"
    " tool_calls, tool_call_id, tool_name, usage, provider, model, created_at) VALUES "
)
_MSG_ROW = "(" + ", ".join("?" * 14) + ")"
_BUMP_ROW = (
    "(CAST(? AS VARCHAR), CAST(? AS VARCHAR), CAST(? AS TIMESTAMPTZ), CAST(? AS INTEGER),"
    " CAST(? AS VARCHAR), CAST(? AS VARCHAR))"
)
_CHUNK = 400  # rows per INSERT statement


def _write(cur: Any, batch: list[tuple[str, Any]]) -> None:
    """One transaction for a batch of queued operations. Multi-row statements, not
    executemany: DuckDB runs executemany row by row, several times slower."""
    sessions = [payload for op, payload in batch if op == "session"]
    rows: list[list[Any]] = []
    bumps: dict[tuple[str, str], dict[str, Any]] = {}
    for op, payload in batch:
        if op != "messages":
            continue
        user_id, messages = payload
        rows.extend(_message_row(user_id, m) for m in messages)
        key = (messages[0].session_id, user_id)
        bump = bumps.setdefault(key, {"count": 0, "last": None, "title": "", "ts": None})
        bump["count"] += len(messages)
        speakers = [m.character for m in messages if m.role == "assistant" and m.character]
        if speakers:
            bump["last"] = speakers[-1]
        if not bump["title"]:
            bump["title"] = next((m.content[:80] for m in messages if m.role == "user"), "")
        bump["ts"] = messages[-1].created_at
    cur.execute("BEGIN TRANSACTION")
    try:
        for i in range(0, len(sessions), _CHUNK):
            chunk = sessions[i : i + _CHUNK]
            cur.execute(
                "INSERT INTO chat_sessions (session_id, user_id, title, created_at, updated_at)"
                " VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
                [v for row in chunk for v in row],
            )
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i : i + _CHUNK]
            cur.execute(
                _MSG_INSERT + ", ".join([_MSG_ROW] * len(chunk)), [v for row in chunk for v in row]
            )
        items = list(bumps.items())
        for i in range(0, len(items), _CHUNK):
            chunk = items[i : i + _CHUNK]
            cur.execute(
                "UPDATE chat_sessions SET updated_at = v.ts,"
                " message_count = chat_sessions.message_count + v.n,"
                " last_character = coalesce(v.last, chat_sessions.last_character),"
                " title = CASE WHEN chat_sessions.title = '' THEN v.title"
                " ELSE chat_sessions.title END"
                " FROM (VALUES " + ", ".join([_BUMP_ROW] * len(chunk)) + ")"
                " AS v(sid, uid, ts, n, last, title)"
                " WHERE chat_sessions.session_id = v.sid AND chat_sessions.user_id = v.uid",
                [
                    v
                    for (sid, uid), b in chunk
                    for v in (sid, uid, b["ts"], b["count"], b["last"], b["title"])
                ],
            )
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
