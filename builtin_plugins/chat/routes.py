"""REST and Server-Sent Events handlers of ``/api/v1/chat``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from sdk import Request, Response, Route

from .service import ChatService, turn_problem
from .store import MAX_TITLE, iso, now

PREFIX = "/api/v1/chat"
TAGS = ["chat"]

CHAT_REQUEST = {
    "type": "object",
    "required": ["user_input"],
    "properties": {
        "user_input": {"type": "string", "minLength": 1},
        "session_id": {"type": ["string", "null"], "maxLength": 200},
        "character": {"type": ["string", "null"], "maxLength": 200},
    },
}

USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}

REPLY = {
    "type": "object",
    "required": ["message_id", "character", "content", "created_at", "usage"],
    "properties": {
        "message_id": {"type": "string"},
        "character": {"type": "string"},
        "content": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "usage": USAGE,
    },
}

CHAT_RESPONSE = {
    "type": "object",
    "required": ["session_id", "response", "character", "timestamp", "replies"],
    "properties": {
        "session_id": {"type": "string"},
        "response": {"type": "string"},
        "character": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "replies": {"type": "array", "items": REPLY},
    },
}

CHARACTERS_RESPONSE = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "name", "description", "provider", "model"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "provider": {"type": "string"},
            "model": {"type": "string"},
            "aliases": {"type": "array", "items": {"type": "string"}},
        },
    },
}

MESSAGE = {
    "type": "object",
    "required": ["message_id", "role", "character", "content", "created_at"],
    "properties": {
        "message_id": {"type": "string"},
        "role": {"enum": ["user", "assistant", "tool"]},
        "character": {"type": ["string", "null"]},
        "content": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "tool_call_id": {"type": "string"},
        "tool_name": {"type": ["string", "null"]},
    },
}

RENAME_REQUEST = {
    "type": "object",
    "required": ["title"],
    "additionalProperties": False,
    "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 1000}},
}

SESSION = {
    "type": "object",
    "required": ["session_id", "title", "created_at", "updated_at", "message_count"],
    "properties": {
        "session_id": {"type": "string"},
        "title": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "last_character": {"type": ["string", "null"]},
        "message_count": {"type": "integer"},
    },
}


def sse_frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class ChatRoutes:
    def __init__(self, service: ChatService) -> None:
        self.service = service

    async def characters(self, req: Request) -> Any:
        return self.service.public_characters()

    async def chat(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        turn, _created = await self.service.prepare_turn(
            identity,
            body["user_input"],
            session_id=body.get("session_id"),
            character=body.get("character"),
            request_id=req.request_id,
        )
        task = self.service.launch(turn)
        await asyncio.shield(task)
        first = turn.replies[0] if turn.replies else {"content": "", "character": ""}
        return {
            "session_id": turn.session_id,
            "response": first["content"],
            "character": first["character"],
            "timestamp": iso(now()),
            "replies": turn.replies,
        }

    async def stream(self, req: Request) -> web.StreamResponse:
        identity = req.require_identity()
        body = req.body or {}
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def emit(event: dict[str, Any]) -> None:
            queue.put_nowait(event)

        turn, _created = await self.service.prepare_turn(
            identity,
            body["user_input"],
            session_id=body.get("session_id"),
            character=body.get("character"),
            emit=emit,
            request_id=req.request_id,
        )
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **req.response_headers,  # X-Request-ID, RateLimit-*
            }
        )
        await resp.prepare(req.raw)
        task = self.service.launch(turn)
        task.add_done_callback(lambda _t: queue.put_nowait(None))
        connected = True

        async def send(event: str, data: dict[str, Any]) -> None:
            nonlocal connected
            if not connected:
                return
            try:
                await resp.write(sse_frame(event, data))
            except (ConnectionError, RuntimeError):
                connected = False  # the client left; the reply is still finished and stored

        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                if connected:
                    try:
                        await resp.write(b": keep-alive\n\n")
                    except (ConnectionError, RuntimeError):
                        connected = False
                continue
            if item is None:
                break
            kind = item.pop("type")
            if kind == "start":
                await send("start", {"session_id": turn.session_id, **item})
            elif kind in ("chunk", "end", "tool"):
                await send(kind, item)
        if task.cancelled():
            await send("error", {"code": "CANCELLED", "detail": "the reply was cancelled"})
        elif task.exception() is not None:
            problem = turn_problem(task.exception())  # type: ignore[arg-type]
            await send(
                "error", {"code": problem.code, "status": problem.status, "detail": problem.detail}
            )
        else:
            await send("done", {"session_id": turn.session_id})
        if connected:
            try:
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        return resp

    async def history(self, req: Request) -> Any:
        identity = req.require_identity()
        session_id = req.match_info["session_id"]
        messages = await self.service.history(
            identity.user_id,
            session_id,
            limit=req.params["limit"],
            before=req.params.get("before"),
        )
        return {"session_id": session_id, "messages": [m.public() for m in messages]}

    async def sessions(self, req: Request) -> Any:
        identity = req.require_identity()
        sessions = await self.service.sessions(
            identity.user_id, req.params["limit"], req.params["offset"]
        )
        return {"sessions": sessions}

    async def session(self, req: Request) -> Any:
        identity = req.require_identity()
        return await self.service.session(identity.user_id, req.match_info["session_id"])

    async def rename_session(self, req: Request) -> Any:
        identity = req.require_identity()
        return await self.service.rename_session(
            identity.user_id, req.match_info["session_id"], req.body["title"]
        )

    async def delete_session(self, req: Request) -> Any:
        identity = req.require_identity()
        await self.service.delete_session(identity.user_id, req.match_info["session_id"])
        return Response(None, status=204)


def chat_routes(service: ChatService) -> list[Route]:
    h = ChatRoutes(service)
    not_found = {404: "No such session (or not yours)"}
    upstream = {
        502: "The LLM upstream failed",
        503: "The provider is unavailable",
        504: "The LLM upstream timed out",
    }
    return [
        Route(
            "GET",
            f"{PREFIX}/characters",
            h.characters,
            response_schema=CHARACTERS_RESPONSE,
            summary="List the characters",
            tags=TAGS,
            operation_id="chat_characters",
        ),
        Route(
            "POST",
            PREFIX,
            h.chat,
            rate_limit="chat",
            request_schema=CHAT_REQUEST,
            response_schema=CHAT_RESPONSE,
            summary="Send a message; the chosen characters answer",
            description="Without session_id a new session is created. `character` names who must "
            "answer; otherwise the routing strategy chooses (a character named in the text, in "
            "any alias, answers first). `response`/`character` are the first reply's.",
            tags=TAGS,
            operation_id="chat_send",
            responses={**not_found, **upstream},
        ),
        Route(
            "POST",
            f"{PREFIX}/stream",
            h.stream,
            rate_limit="chat",
            request_schema=CHAT_REQUEST,
            summary="Send a message; replies stream as Server-Sent Events",
            description="Events: `start` {session_id, character}, `chunk` {character, delta}, "
            "`tool` {character, name, arguments, ok}, `end` {character, message_id, usage}, "
            "`done` {session_id}, `error` {code, status, detail}.",
            tags=TAGS,
            operation_id="chat_stream",
            response_content_type="text/event-stream",
            responses={**not_found},
        ),
        Route(
            "GET",
            f"{PREFIX}/history/{{session_id}}",
            h.history,
            query_schema={
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    "before": {"type": "string", "description": "a message_id: messages before it"},
                },
            },
            response_schema={
                "type": "object",
                "required": ["session_id", "messages"],
                "properties": {
                    "session_id": {"type": "string"},
                    "messages": {"type": "array", "items": MESSAGE},
                },
            },
            summary="Messages of a session, oldest first",
            tags=TAGS,
            operation_id="chat_history",
            responses={**not_found, 422: "A query parameter is out of range or unknown"},
        ),
        Route(
            "GET",
            f"{PREFIX}/sessions",
            h.sessions,
            query_schema={
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    "offset": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 10_000_000,
                        "default": 0,
                    },
                },
            },
            response_schema={
                "type": "object",
                "required": ["sessions"],
                "properties": {"sessions": {"type": "array", "items": SESSION}},
            },
            summary="The caller's sessions, most recent first",
            tags=TAGS,
            operation_id="chat_sessions",
            responses={422: "A query parameter is out of range"},
        ),
        Route(
            "GET",
            f"{PREFIX}/sessions/{{session_id}}",
            h.session,
            response_schema=SESSION,
            summary="One session",
            tags=TAGS,
            operation_id="chat_session",
            responses=not_found,
        ),
        Route(
            "PATCH",
            f"{PREFIX}/sessions/{{session_id}}",
            h.rename_session,
            request_schema=RENAME_REQUEST,
            response_schema=SESSION,
            summary="Rename a session",
            description="`title` is kept on one line (runs of whitespace become one space), "
            f"1 to {MAX_TITLE} characters. The session's place in the list does not change.",
            tags=TAGS,
            operation_id="chat_session_rename",
            responses=not_found,
        ),
        Route(
            "DELETE",
            f"{PREFIX}/sessions/{{session_id}}",
            h.delete_session,
            status=204,
            summary="Delete a session and its messages",
            tags=TAGS,
            operation_id="chat_session_delete",
            responses=not_found,
        ),
    ]
