"""Sessions and messages in the shared DuckDB file. All SQL of the chat plugin lives here.

Every read and write takes the owner's ``user_id``: a session of another user is simply
not found.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sdk import Database

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
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_tables(self) -> None:
        def create(cur: Any) -> None:
            for statement in SCHEMA:
                cur.execute(statement)

        await self.db.run(create)

    # ---- sessions -------------------------------------------------------------------
    async def create_session(self, user_id: str, title: str = "") -> dict[str, Any]:
        sid = new_id("ses")
        ts = now()
        await self.db.execute(
            "INSERT INTO chat_sessions (session_id, user_id, title, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [sid, user_id, title[:120], ts, ts],
        )
        return {
            "session_id": sid,
            "title": title[:120],
            "created_at": iso(ts),
            "updated_at": iso(ts),
            "last_character": None,
            "message_count": 0,
        }

    async def get_session(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            f"SELECT {_SESSION_COLS} FROM chat_sessions WHERE session_id = ? AND user_id = ?",
            [session_id, user_id],
        )
        return _session(row) if row else None

    async def list_sessions(
        self, user_id: str, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            f"SELECT {_SESSION_COLS} FROM chat_sessions WHERE user_id = ?"
            " ORDER BY updated_at DESC, session_id LIMIT ? OFFSET ?",
            [user_id, limit, offset],
        )
        return [_session(r) for r in rows]

    async def delete_session(self, user_id: str, session_id: str) -> bool:
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

        return await self.db.run(delete)

    async def delete_user(self, user_id: str) -> int:
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
        """Store messages of one session and bump the session, in one transaction."""
        if not messages:
            return
        session_id = messages[0].session_id
        rows = []
        for m in messages:
            m.seq = m.seq or next_seq()
            m.created_at = m.created_at or now()
            rows.append(
                [
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
            )
        speakers = [m.character for m in messages if m.role == "assistant" and m.character]
        last_character = speakers[-1] if speakers else None
        first_user = next((m.content for m in messages if m.role == "user"), "")
        ts = messages[-1].created_at

        def write(cur: Any) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.executemany(
                    f"INSERT INTO chat_messages (message_id, session_id, user_id, seq, role,"
                    f" character, content, tool_calls, tool_call_id, tool_name, usage, provider,"
                    f" model, created_at) VALUES ({', '.join('?' * 14)})",
                    rows,
                )
                cur.execute(
                    "UPDATE chat_sessions SET updated_at = ?,"
                    " message_count = message_count + ?,"
                    " last_character = coalesce(?, last_character),"
                    " title = CASE WHEN title = '' THEN ? ELSE title END"
                    " WHERE session_id = ? AND user_id = ?",
                    [ts, len(rows), last_character, first_user[:80], session_id, user_id],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

        await self.db.run(write)

    async def history(
        self,
        user_id: str,
        session_id: str,
        *,
        limit: int = 50,
        before_seq: int | None = None,
    ) -> list[Message]:
        """The last ``limit`` messages (before ``before_seq``), oldest first."""
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
        row = await self.db.fetchone(
            "SELECT seq FROM chat_messages WHERE message_id = ? AND session_id = ? AND user_id = ?",
            [message_id, session_id, user_id],
        )
        return int(row[0]) if row else None

    async def recent_speakers(self, user_id: str, session_id: str, limit: int = 10) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT character FROM chat_messages WHERE session_id = ? AND user_id = ?"
            " AND role = 'assistant' AND character IS NOT NULL AND content <> ''"
            " ORDER BY seq DESC LIMIT ?",
            [session_id, user_id, limit],
        )
        return [r[0] for r in reversed(rows)]
