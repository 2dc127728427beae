"""The memory plugin's domain types: a memory of any tier, the tiers, and what a chat
turn becomes. Nothing here reads or writes anything."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TIERS = ("short_term", "mid_term", "long_term", "associative", "knowledge")
# the tiers as the in-process indexes store them (one byte a row)
TIER_CODES = {tier: code for code, tier in enumerate(TIERS)}
SEARCH_MODES = ("hybrid", "semantic", "keyword")


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
    occurred_at: datetime | None = None  # when what it says happened; None: created_at
    score: float | None = None
    # hybrid search: the evidence behind ``score`` (cosine, BM25; None: not among its hits)
    evidence: dict[str, float | None] | None = None

    @property
    def happened_at(self) -> datetime:
        return self.occurred_at or self.created_at

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
            occurred_at=row[13],
            score=float(row[14]) if len(row) > 14 and row[14] is not None else None,
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
            "occurred_at": iso(self.happened_at),
            "metadata": self.metadata,
            "related": related or [],
        }
        if self.score is not None:
            out["score"] = round(self.score, 6)
        if self.evidence is not None:
            out["evidence"] = {
                k: None if v is None else round(v, 6) for k, v in self.evidence.items()
            }
        return out


_EPOCH = datetime(1970, 1, 1)


def search_hit(user_id: str, memory_id: str, score: float) -> Memory:
    """A search hit whose row is not read yet: only its id and score are real."""
    return Memory(
        memory_id=memory_id,
        user_id=user_id,
        tier="",
        session_id=None,
        content="",
        metadata={},
        importance=0.5,
        fact_key=None,
        parent_id=None,
        source_message_id=None,
        searchable=True,
        created_at=_EPOCH,
        updated_at=_EPOCH,
        score=score,
    )


def turn_text(data: dict[str, Any], content: str) -> str:
    """What a chat turn is embedded as: a character's turn with the character's name in
    front ("Lumina: ..."), as a reader of the conversation would see it; the user's turn
    as it is. The stored content stays the message itself."""
    character = data.get("character")
    if str(data.get("role") or "user") != "user" and isinstance(character, str) and character:
        return f"{character}: {content}"
    return content


def turn_speaker(memory: Memory) -> str:
    role = memory.metadata.get("role") or "user"
    if role == "user":
        return "User"
    return str(memory.metadata.get("character") or role).capitalize()


def turn_dict(memory: Memory) -> dict[str, Any]:
    return {
        "memory_id": memory.memory_id,
        "role": memory.metadata.get("role"),
        "character": memory.metadata.get("character"),
        "message_id": memory.source_message_id,
        "content": memory.content,
        "created_at": iso(memory.created_at),
    }
