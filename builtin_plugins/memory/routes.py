"""HTTP handlers of ``/api/v1/memory``. Every query is scoped to the caller's user_id;
another user's memory answers 404 exactly like one that never existed."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sdk import Request, Response, Route, errors

from .domain import SEARCH_MODES, TIERS, turn_dict, utcnow
from .service import MemoryService

BASE = "/api/v1/memory"
MAX_DOCUMENT_CHARS = 200_000
MAX_METADATA_CHARS = 10_000

TIER_SCHEMA = {"type": "string", "enum": list(TIERS)}
ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200}

MEMORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["memory_id", "tier", "content", "session_id", "created_at", "metadata", "related"],
    "properties": {
        "memory_id": {"type": "string"},
        "tier": TIER_SCHEMA,
        "content": {"type": "string"},
        "score": {
            "type": "number",
            "description": "relevance to the query: the fused score in hybrid mode (1.0 for "
            "first place in both rankings), the cosine similarity in semantic mode, BM25 in "
            "keyword mode",
        },
        "evidence": {
            "type": "object",
            "description": "search results: the cosine similarity and the BM25 score behind "
            "`score` (null: not among that ranking's candidates)",
            "properties": {
                "semantic": {"type": ["number", "null"]},
                "keyword": {"type": ["number", "null"]},
            },
        },
        "occurred_at": {
            "type": "string",
            "format": "date-time",
            "description": "when what the memory says happened (default: when it was stored)",
        },
        "session_id": {"type": ["string", "null"]},
        "importance": {"type": "number"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "metadata": {"type": "object"},
        "related": {"type": "array", "items": {"type": "string"}},
    },
}

SEARCH_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 4000, "pattern": r"\S"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
        "session_id": ID_SCHEMA,
        "tiers": {"type": "array", "items": TIER_SCHEMA, "minItems": 1, "uniqueItems": True},
        "min_score": {
            "type": "number",
            "minimum": -1,
            "maximum": 1,
            "description": "the least cosine similarity; in hybrid mode a memory whose words "
            "match the query is kept below it; keyword mode ignores it",
        },
        "mode": {
            "type": "string",
            "enum": list(SEARCH_MODES),
            "default": "hybrid",
            "description": "hybrid: keyword (BM25) and semantic (embedding) evidence ranked "
            "together; semantic: embeddings only; keyword: words only",
        },
    },
}

CREATE_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["content"],
    "properties": {
        "content": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_DOCUMENT_CHARS,
            "pattern": r"\S",
            "description": "the memory; for tier knowledge a whole document (chunked and embedded)",
        },
        "tier": {**TIER_SCHEMA, "default": "long_term"},
        "session_id": ID_SCHEMA,
        "metadata": {
            "type": "object",
            "maxProperties": 50,
            "description": "free-form; for tier associative, 'related': [memory_id] links the note to those memories",
        },
        "importance": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "occurred_at": {
            "type": "string",
            "minLength": 10,
            "maxLength": 64,
            "description": "when what it says happened, ISO 8601 (a date, or a date-time; "
            "without a zone: UTC); default now. Used by ranking's recency, shown in results",
        },
    },
}

MAX_BATCH = 500
BATCH_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["items"],
    "properties": {
        "items": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": CREATE_REQUEST}
    },
}

FLUSH_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "user_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "tier": TIER_SCHEMA,
        "older_than": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "an ISO 8601 date-time, or an age such as '30d', '12h', '15m', '2w'",
        },
    },
}

LIST_QUERY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tier": TIER_SCHEMA,
        "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        "offset": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
    },
}


def _query_int(req: Request, name: str) -> int:
    """An integer query parameter within LIST_QUERY's bounds (422 naming it otherwise)."""
    spec = LIST_QUERY["properties"][name]
    raw = req.query.get(name, "")
    if raw == "":
        return int(spec["default"])
    ok = raw.isascii() and raw.isdigit() and len(raw) <= 9
    if not ok or not spec["minimum"] <= int(raw) <= spec["maximum"]:
        bounds = f"an integer from {spec['minimum']} to {spec['maximum']}"
        raise errors.ValidationFailed(
            f"{name} must be {bounds}", errors=[{"path": f"/{name}", "message": bounds}]
        )
    return int(raw)


STATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "total", "tiers", "links", "sessions", "embedder"],
    "properties": {
        "user_id": {"type": "string"},
        "total": {"type": "integer"},
        "tiers": {"type": "object", "additionalProperties": {"type": "integer"}},
        "links": {"type": "integer"},
        "sessions": {"type": "integer"},
        "embedded": {"type": "integer"},
        "content_chars": {"type": "integer"},
        "oldest": {"type": ["string", "null"]},
        "newest": {"type": ["string", "null"]},
        "embedder": {"type": "object"},
    },
}

_AGE = re.compile(r"^\s*(\d{1,6})\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_occurred_at(value: str, path: str = "/occurred_at") -> datetime:
    """An ISO 8601 date or date-time as naive UTC (422 naming ``path`` otherwise)."""
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.ValidationFailed(
            "occurred_at must be an ISO 8601 date or date-time",
            errors=[{"path": path, "message": f"cannot read {value[:80]!r}"}],
        ) from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def parse_older_than(value: str) -> datetime:
    m = _AGE.match(value)
    if m:
        return utcnow() - timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.ValidationFailed(
            "older_than must be an ISO 8601 date-time or an age like '30d'",
            errors=[{"path": "/older_than", "message": f"cannot read {value!r}"}],
        ) from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


class MemoryRoutes:
    def __init__(
        self,
        service: Callable[[], MemoryService],
        *,
        max_content_chars: int,
        embedder_info: Callable[[], dict[str, Any]],
        log: logging.Logger,
    ) -> None:
        # the service exists only while the plugin runs: asked for at each request (503 otherwise)
        self._service = service
        self.max_content_chars = max_content_chars
        self.embedder_info = embedder_info
        self.log = log

    @property
    def service(self) -> MemoryService:
        return self._service()

    def routes(self) -> list[Route]:
        tags = ["memory"]
        not_found = {404: "No such memory (or not yours)"}
        return [
            Route(
                "POST",
                f"{BASE}/search",
                self.search,
                request_schema=SEARCH_REQUEST,
                response_schema={
                    "type": "object",
                    "required": ["results"],
                    "properties": {"results": {"type": "array", "items": MEMORY_SCHEMA}},
                },
                summary="Search the caller's memories (hybrid: keywords and meaning)",
                description="`mode` hybrid (default) fuses a BM25 ranking of the memories' "
                "words and a cosine ranking of their embeddings (reciprocal rank fusion); "
                "semantic and keyword use one of them. Filtered by tier and session, nudged "
                "by importance and recency (`occurred_at`). `related` lists associated "
                "memories (one hop).",
                tags=tags,
                operation_id="memory_search",
                responses={503: "The embedder is unavailable"},
            ),
            Route(
                "POST",
                BASE,
                self.create,
                request_schema=CREATE_REQUEST,
                response_schema=MEMORY_SCHEMA,
                status=201,
                summary="Store a memory (tier knowledge: a document, chunked and embedded)",
                tags=tags,
                operation_id="memory_create",
                responses={
                    404: "metadata.related names a memory that is not yours",
                    503: "The embedder is unavailable",
                },
            ),
            Route(
                "POST",
                f"{BASE}/batch",
                self.create_batch,
                request_schema=BATCH_REQUEST,
                response_schema={
                    "type": "object",
                    "required": ["memory_ids"],
                    "properties": {"memory_ids": {"type": "array", "items": {"type": "string"}}},
                },
                status=201,
                summary="Store up to 500 memories at once (their ids, in order)",
                description="Each item is a body of `POST /api/v1/memory`. The items are "
                "embedded in one call and stored in one transaction (all or none); when one "
                "is a knowledge document or an associative note with `metadata.related`, "
                "the items are stored one by one, in order.",
                tags=tags,
                operation_id="memory_create_batch",
                responses={
                    404: "an item's metadata.related names a memory that is not yours",
                    503: "The embedder is unavailable",
                },
            ),
            Route(
                "GET",
                BASE,
                self.list,
                query_schema=LIST_QUERY,
                response_schema={
                    "type": "object",
                    "required": ["memories", "total"],
                    "properties": {
                        "memories": {"type": "array", "items": MEMORY_SCHEMA},
                        "total": {"type": "integer"},
                    },
                },
                summary="Browse the caller's memories, newest first, optionally of one tier",
                description="A knowledge document is listed once (its chunks are not). "
                "`total` counts every memory that matches, for paging with `offset`.",
                tags=tags,
                operation_id="memory_list",
                responses={422: "A query parameter is out of range or unknown"},
            ),
            Route(
                "GET",
                f"{BASE}/stats",
                self.stats,
                response_schema=STATS_SCHEMA,
                summary="Counts of the caller's memories by tier, links, sessions and the embedder in use",
                tags=tags,
                operation_id="memory_stats",
            ),
            Route(
                "GET",
                f"{BASE}/sessions/{{session_id}}",
                self.session,
                summary="The caller's memories of one session: recent turns, summary and the rest",
                tags=tags,
                operation_id="memory_session",
                responses={404: "No memory of that session (or not yours)"},
            ),
            Route(
                "DELETE",
                f"{BASE}/sessions/{{session_id}}/all",
                self.delete_session,
                response_schema={
                    "type": "object",
                    "required": ["deleted"],
                    "properties": {"deleted": {"type": "integer"}},
                },
                summary="Delete every memory of one of the caller's sessions, with their links",
                tags=tags,
                operation_id="memory_delete_session",
            ),
            Route(
                "POST",
                f"{BASE}/admin/flush",
                self.flush,
                auth="admin",
                request_schema=FLUSH_REQUEST,
                response_schema={
                    "type": "object",
                    "required": ["deleted"],
                    "properties": {
                        "deleted": {"type": "integer"},
                        "links_deleted": {"type": "integer"},
                    },
                },
                summary="Delete memories of every user or one, of a tier, older than a date (admin)",
                description="Every filter given must match; `{}` flushes everything.",
                tags=tags,
                operation_id="memory_admin_flush",
            ),
            Route(
                "GET",
                f"{BASE}/{{memory_id}}",
                self.get,
                response_schema=MEMORY_SCHEMA,
                summary="One of the caller's memories",
                tags=tags,
                operation_id="memory_get",
                responses=not_found,
            ),
            Route(
                "DELETE",
                f"{BASE}/{{memory_id}}",
                self.delete,
                status=204,
                summary="Delete one of the caller's memories (a document with its chunks) and its links",
                tags=tags,
                operation_id="memory_delete",
                responses=not_found,
            ),
        ]

    async def list(self, req: Request) -> Any:
        identity = req.require_identity()
        tier = req.query.get("tier") or None
        if tier is not None and tier not in TIERS:
            raise errors.ValidationFailed(
                f"tier must be one of {', '.join(TIERS)}",
                errors=[{"path": "/tier", "message": "an unknown tier"}],
            )
        limit, offset = _query_int(req, "limit"), _query_int(req, "offset")
        service = self.service
        memories, total = await service.page(identity.user_id, tier, limit, offset)
        pairs = await service.with_related(identity.user_id, memories)
        return {"memories": [m.to_api(related) for m, related in pairs], "total": total}

    async def search(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        service = self.service
        results = await service.search(
            identity.user_id,
            body["query"],
            top_k=int(body.get("top_k", 5)),
            session_id=body.get("session_id"),
            tiers=body.get("tiers"),
            min_score=body.get("min_score"),
            mode=str(body.get("mode") or "hybrid"),
        )
        pairs = await service.with_related(identity.user_id, results)
        return {"results": [m.to_api(related) for m, related in pairs]}

    def _item(self, body: dict[str, Any], path: str = "") -> dict[str, Any]:
        """A memory body, checked beyond its schema: the arguments of ``service.add``."""
        tier = body.get("tier", "long_term")
        content = body["content"].strip()
        limit = self.max_content_chars
        if tier != "knowledge" and len(content) > limit:
            raise errors.ValidationFailed(
                f"content is longer than {limit} characters (use tier 'knowledge' for documents)",
                errors=[{"path": f"{path}/content", "message": f"at most {limit} characters"}],
            )
        if tier in ("short_term", "mid_term") and not body.get("session_id"):
            raise errors.ValidationFailed(
                f"a {tier} memory belongs to a session: session_id is required",
                errors=[{"path": f"{path}/session_id", "message": f"required for tier {tier}"}],
            )
        metadata = body.get("metadata") or {}
        if len(json.dumps(metadata)) > MAX_METADATA_CHARS:
            raise errors.ValidationFailed(
                f"metadata is larger than {MAX_METADATA_CHARS} characters as JSON",
                errors=[{"path": f"{path}/metadata", "message": "too large"}],
            )
        occurred = body.get("occurred_at")
        return {
            "content": content,
            "tier": tier,
            "session_id": body.get("session_id"),
            "metadata": metadata,
            "importance": float(body.get("importance", 0.5)),
            "occurred_at": parse_occurred_at(occurred, f"{path}/occurred_at") if occurred else None,
        }

    async def create(self, req: Request) -> Any:
        identity = req.require_identity()
        item = self._item(req.body or {})
        service = self.service
        memory = await service.add(identity.user_id, **item)
        [(memory, related)] = await service.with_related(identity.user_id, [memory])
        return Response(memory.to_api(related), status=201)

    async def create_batch(self, req: Request) -> Any:
        identity = req.require_identity()
        items = [
            self._item(body, f"/items/{i}") for i, body in enumerate((req.body or {})["items"])
        ]
        memories = await self.service.add_many(identity.user_id, items)
        return Response({"memory_ids": [m.memory_id for m in memories]}, status=201)

    async def get(self, req: Request) -> Any:
        identity = req.require_identity()
        service = self.service
        memory = await service.get(identity.user_id, req.match_info["memory_id"])
        if memory is None:
            raise errors.NotFound("no such memory", code="MEMORY_NOT_FOUND")
        [(memory, related)] = await service.with_related(identity.user_id, [memory])
        return memory.to_api(related)

    async def delete(self, req: Request) -> Any:
        identity = req.require_identity()
        if not await self.service.delete(identity.user_id, req.match_info["memory_id"]):
            raise errors.NotFound("no such memory", code="MEMORY_NOT_FOUND")
        return Response(None, status=204)

    async def stats(self, req: Request) -> Any:
        identity = req.require_identity()
        raw = await self.service.stats(identity.user_id)
        tiers = {t: int(raw["tiers"].get(t, 0)) for t in TIERS}
        return {
            "user_id": identity.user_id,
            "total": raw["total"],
            "tiers": tiers,
            "links": raw["links"],
            "sessions": raw["sessions"],
            "embedded": raw["embedded"],
            "content_chars": raw["content_chars"],
            "oldest": raw["oldest"],
            "newest": raw["newest"],
            "embedder": self.embedder_info(),
        }

    async def session(self, req: Request) -> Any:
        identity = req.require_identity()
        session_id = req.match_info["session_id"]
        service = self.service
        memories = await service.session_memories(identity.user_id, session_id)
        if not memories:
            raise errors.NotFound("no memory of that session", code="SESSION_NOT_FOUND")
        turns, source = await service.recent_turns(identity.user_id, session_id)
        summary = await service.session_summary(identity.user_id, session_id)
        pairs = await service.with_related(identity.user_id, memories)
        return {
            "session_id": session_id,
            "summary": summary.to_api() if summary else None,
            "recent_turns": turns,
            "recent_turns_source": source,
            "memories": [m.to_api(related) for m, related in pairs],
        }

    async def delete_session(self, req: Request) -> Any:
        identity = req.require_identity()
        deleted = await self.service.delete_session(identity.user_id, req.match_info["session_id"])
        return {"deleted": deleted}

    async def flush(self, req: Request) -> Any:
        body = req.body or {}
        older_than = parse_older_than(body["older_than"]) if body.get("older_than") else None
        deleted, links_deleted = await self.service.flush(
            body.get("user_id"), body.get("tier"), older_than
        )
        self.log.info(
            "admin %s flushed %d memories (user=%s tier=%s older_than=%s)",
            req.identity.user_id if req.identity else "?",
            deleted,
            body.get("user_id"),
            body.get("tier"),
            body.get("older_than"),
        )
        return {"deleted": deleted, "links_deleted": links_deleted}


__all__ = ["MemoryRoutes", "parse_older_than", "turn_dict"]
