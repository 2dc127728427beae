"""REST and Server-Sent Events handlers of ``/api/v1/chat``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from sdk import Request, Response, Route, errors

from .export import export_markdown
from .graph import Turn
from .service import ChatService, turn_problem
from .store import MAX_TITLE, iso, now

PREFIX = "/api/v1/chat"
TAGS = ["chat"]

CLIENT_MESSAGE_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "the client's id of this message: a resend with the same id within 24 h "
    "starts no second turn and answers with the stored one (409 TURN_IN_PROGRESS while it runs)",
}

CHAT_REQUEST = {
    "type": "object",
    "required": ["user_input"],
    "properties": {
        "user_input": {"type": "string", "minLength": 1},
        "session_id": {"type": ["string", "null"], "maxLength": 200},
        "character": {"type": ["string", "null"], "maxLength": 200},
        "client_message_id": CLIENT_MESSAGE_ID,
    },
}

CHARACTER_CHOICE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"character": {"type": ["string", "null"], "maxLength": 200}},
}

EDIT_REQUEST = {
    "type": "object",
    "required": ["content"],
    "additionalProperties": False,
    "properties": {"content": {"type": "string", "minLength": 1}},
}

STATUS = {
    "enum": ["complete", "stopped", "failed"],
    "description": "stopped: cancelled; failed: the upstream failed. Both keep the streamed text",
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
        "status": STATUS,
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
        "replayed": {
            "type": "boolean",
            "description": "true: a resent client_message_id; these are the stored replies",
        },
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
        "status": STATUS,
        "alternatives": {
            "type": "array",
            "items": {"type": "string"},
            "description": "a reply: the message_ids of every reply in its group of "
            "alternatives (regenerations), oldest first, this one included; [] otherwise",
        },
        "reply_to": {"type": "string", "description": "the user message a reply answers"},
        "character_name": {
            "type": "string",
            "description": "the character's name (also once the character is deleted)",
        },
    },
}

PERSONA = {
    "type": "object",
    "required": ["name", "description"],
    "properties": {
        "name": {"type": "string", "maxLength": 60},
        "description": {"type": "string", "maxLength": 1000},
    },
}

PERSONA_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 60},
        "description": {"type": "string", "maxLength": 1000},
    },
}

RENAME_REQUEST = {
    "type": "object",
    "required": ["title"],
    "additionalProperties": False,
    "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 1000}},
}

SESSION: dict[str, Any] = {
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
        return await self.service.public_characters(req.identity)

    async def chat(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        replay = await self.service.replay(identity, body.get("client_message_id"))
        if replay is not None:
            return replay
        turn, _created = await self.service.prepare_turn(
            identity,
            body["user_input"],
            session_id=body.get("session_id"),
            character=body.get("character"),
            request_id=req.request_id,
            client_message_id=body.get("client_message_id"),
        )
        return await self._answer(req, turn)

    async def stream(self, req: Request) -> web.StreamResponse:
        identity = req.require_identity()
        body = req.body or {}
        replay = await self.service.replay(identity, body.get("client_message_id"))
        if replay is not None:
            return await self._replay_sse(req, replay)
        turn, _created = await self.service.prepare_turn(
            identity,
            body["user_input"],
            session_id=body.get("session_id"),
            character=body.get("character"),
            request_id=req.request_id,
            client_message_id=body.get("client_message_id"),
        )
        return await self._sse(req, turn)

    async def _answer(self, req: Request, turn: Turn) -> Any:
        """Run a turn: its replies as JSON, or as Server-Sent Events when the client asks
        for ``text/event-stream``."""
        if "text/event-stream" in req.headers.get("Accept", ""):
            return await self._sse(req, turn)
        task = self.service.launch(turn)
        try:
            await asyncio.shield(task)
        except errors.Problem as problem:
            # the user's message (and what was streamed) is stored: say where
            problem.extra = {**problem.extra, **turn.where()}
            raise
        return self.service.answer(turn.session_id, turn.replies)

    def _sse_response(self, req: Request) -> web.StreamResponse:
        return web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **req.response_headers,  # X-Request-ID, RateLimit-*
            }
        )

    async def _replay_sse(self, req: Request, answer: dict[str, Any]) -> web.StreamResponse:
        """A stored turn, as the stream that delivered it would have."""
        resp = self._sse_response(req)
        await resp.prepare(req.raw)
        sid = answer["session_id"]
        for reply in answer["replies"]:
            character = reply["character"]
            await resp.write(sse_frame("start", {"session_id": sid, "character": character}))
            if reply["content"]:
                await resp.write(
                    sse_frame("chunk", {"character": character, "delta": reply["content"]})
                )
            await resp.write(
                sse_frame(
                    "end",
                    {
                        "character": character,
                        "message_id": reply["message_id"],
                        "usage": reply["usage"],
                        "status": reply["status"],
                    },
                )
            )
        await resp.write(sse_frame("done", {"session_id": sid, "replayed": True}))
        await resp.write_eof()
        return resp

    async def _sse(self, req: Request, turn: Turn) -> web.StreamResponse:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def emit(event: dict[str, Any]) -> None:
            queue.put_nowait(event)

        turn.emit = emit
        # launched first: the turn is accepted, so it runs even if the client is gone
        task = self.service.launch(turn)
        task.add_done_callback(lambda _t: queue.put_nowait(None))
        resp = self._sse_response(req)
        await resp.prepare(req.raw)
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
                "error",
                {
                    "code": problem.code,
                    "status": problem.status,
                    "detail": problem.detail,
                    **turn.where(),
                },
            )
        else:
            await send("done", {"session_id": turn.session_id})
        if connected:
            try:
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        return resp

    # ---- messages as data ------------------------------------------------------------
    async def regenerate(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        turn = await self.service.prepare_regenerate(
            identity,
            req.match_info["message_id"],
            character=body.get("character"),
            request_id=req.request_id,
        )
        return await self._answer(req, turn)

    async def edit(self, req: Request) -> Any:
        identity = req.require_identity()
        turn = await self.service.prepare_edit(
            identity, req.match_info["message_id"], req.body["content"], request_id=req.request_id
        )
        return await self._answer(req, turn)

    async def continue_(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        turn = await self.service.prepare_continue(
            identity,
            req.match_info["session_id"],
            character=body.get("character"),
            request_id=req.request_id,
        )
        return await self._answer(req, turn)

    async def select(self, req: Request) -> Any:
        identity = req.require_identity()
        return await self.service.select(identity, req.match_info["message_id"])

    async def delete_message(self, req: Request) -> Any:
        identity = req.require_identity()
        await self.service.delete_message(identity, req.match_info["message_id"])
        return Response(None, status=204)

    async def persona(self, req: Request) -> Any:
        return await self.service.persona(req.require_identity())

    async def set_persona(self, req: Request) -> Any:
        return await self.service.set_persona(req.require_identity(), req.body or {})

    async def export(self, req: Request) -> Any:
        identity = req.require_identity()
        session, messages = await self.service.export(identity, req.match_info["session_id"])
        fmt = req.params["format"]
        stem = f"chat-{session['session_id']}"
        if fmt == "markdown":
            return web.Response(
                text=export_markdown(session, messages, self.service.character_name),
                content_type="text/markdown",
                charset="utf-8",
                headers={
                    "Content-Disposition": f'attachment; filename="{stem}.md"',
                    **req.response_headers,
                },
            )
        return Response(
            {
                "session": session,
                "exported_at": iso(now()),
                "messages": [
                    {**m.public(), "character_name": self.service.character_name(m.character)}
                    if m.character
                    else m.public()
                    for m in messages
                ],
            },
            headers={"Content-Disposition": f'attachment; filename="{stem}.json"'},
        )

    async def history(self, req: Request) -> Any:
        identity = req.require_identity()
        session_id = req.match_info["session_id"]
        messages = await self.service.history(
            identity.user_id,
            session_id,
            limit=req.params["limit"],
            before=req.params.get("before"),
        )
        name = self.service.character_name
        return {
            "session_id": session_id,
            "messages": [
                {**m.public(), "character_name": name(m.character)} if m.character else m.public()
                for m in messages
            ],
        }

    async def sessions(self, req: Request) -> Any:
        identity = req.require_identity()
        sessions = await self.service.sessions(
            identity.user_id, req.params["limit"], req.params["offset"]
        )
        return {"sessions": sessions}

    async def new_session(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        created = await self.service.new_session(identity, body.get("character"), body.get("title"))
        return Response(created, status=201)

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
            "POST",
            f"{PREFIX}/sessions",
            h.new_session,
            request_schema={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "character": {"type": ["string", "null"], "maxLength": 200},
                    "title": {"type": ["string", "null"], "maxLength": 1000},
                },
            },
            response_schema={
                **SESSION,
                "properties": {
                    **SESSION["properties"],
                    "messages": {"type": "array", "items": MESSAGE},
                },
            },
            status=201,
            summary="Start a conversation (with a character: its greeting opens it)",
            description="`messages` holds the greeting when `character` has one; send the "
            "user's first message with this `session_id`.",
            tags=TAGS,
            operation_id="chat_session_create",
            responses={422: "Unknown character"},
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
            "POST",
            f"{PREFIX}/messages/{{message_id}}/regenerate",
            h.regenerate,
            rate_limit="chat",
            request_schema=CHARACTER_CHOICE,
            response_schema=CHAT_RESPONSE,
            summary="A new reply in place of a reply; the earlier ones stay as alternatives",
            description="Answers the same user message again (by `character`, else by the "
            "same character). The new reply is shown; history lists the group in "
            "`alternatives`. Same answer as `POST /api/v1/chat`; with `Accept: "
            "text/event-stream` the reply streams with the events of `/chat/stream`.",
            tags=TAGS,
            operation_id="chat_message_regenerate",
            responses={404: "No such message (or not yours)", **upstream},
        ),
        Route(
            "POST",
            f"{PREFIX}/messages/{{message_id}}/select",
            h.select,
            response_schema=MESSAGE,
            summary="Show this reply of its group of alternatives",
            tags=TAGS,
            operation_id="chat_message_select",
            responses={404: "No such message (or not yours)"},
        ),
        Route(
            "PATCH",
            f"{PREFIX}/messages/{{message_id}}",
            h.edit,
            rate_limit="chat",
            request_schema=EDIT_REQUEST,
            response_schema=CHAT_RESPONSE,
            summary="Edit a user message and have it answered again",
            description="What came after the message in its session is removed. Same answer "
            "as `POST /api/v1/chat` (or SSE with `Accept: text/event-stream`).",
            tags=TAGS,
            operation_id="chat_message_edit",
            responses={404: "No such message (or not yours)", **upstream},
        ),
        Route(
            "DELETE",
            f"{PREFIX}/messages/{{message_id}}",
            h.delete_message,
            status=204,
            summary="Delete a message",
            description="A user message goes with the replies that answered it (their "
            "alternatives too); a reply goes alone: the next of its alternatives (else the "
            "previous one) is shown, and without alternatives its user message stays, "
            "unanswered. 422 NOT_DELETABLE for a tool round (it goes with its reply).",
            tags=TAGS,
            operation_id="chat_message_delete",
            responses={404: "No such message (or not yours)", 422: "A tool round"},
        ),
        Route(
            "POST",
            f"{PREFIX}/sessions/{{session_id}}/continue",
            h.continue_,
            rate_limit="chat",
            request_schema=CHARACTER_CHOICE,
            response_schema=CHAT_RESPONSE,
            summary="The character goes on from the end of its last reply",
            description="The session's last reply (of `character` if given) grows; the "
            "answer's reply has the whole text and this generation's usage. 409 "
            "NOTHING_TO_CONTINUE when there is no such reply.",
            tags=TAGS,
            operation_id="chat_session_continue",
            responses={**not_found, 409: "No reply to continue", **upstream},
        ),
        Route(
            "GET",
            f"{PREFIX}/persona",
            h.persona,
            response_schema=PERSONA,
            summary="The caller's persona: what the characters are told about the user",
            tags=TAGS,
            operation_id="chat_persona",
        ),
        Route(
            "PUT",
            f"{PREFIX}/persona",
            h.set_persona,
            request_schema=PERSONA_REQUEST,
            response_schema=PERSONA,
            summary="Set the caller's persona (the fields given; empty strings clear it)",
            description="`name` 0-60 characters, `description` 0-1000. When either is set, "
            "every character's system prompt says who the user is.",
            tags=TAGS,
            operation_id="chat_persona_set",
            responses={422: "A field is too long or unknown"},
        ),
        Route(
            "GET",
            f"{PREFIX}/sessions/{{session_id}}/export",
            h.export,
            query_schema={
                "type": "object",
                "properties": {"format": {"enum": ["json", "markdown"], "default": "json"}},
            },
            summary="The whole session as JSON or Markdown (shown replies)",
            tags=TAGS,
            operation_id="chat_session_export",
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
