"""An OpenAI-compatible door: ``POST /v1/chat/completions`` (plain and streaming) and
``GET /v1/models``, so any OpenAI client library can talk to a character.

Errors come in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` with
the same status codes as everywhere else (the kernel's own refusals included), so OpenAI
clients show them.

The model id is ``character:<id>`` (a bare character id works too). The client's
``messages`` are the conversation (OpenAI clients send the whole history each time), so
nothing is stored in chat sessions; the character still gets the caller's memory context
and tools, and the usage counts against the caller's quota. ``tools`` sent by the client
are not used: the character calls the server's own tools and answers with their results.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from sdk import Request, Route, errors

from .graph import Turn
from .service import ChatService, turn_problem

CREATED = 1735689600  # fixed "created" of the character models

COMPLETIONS_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 200},
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": {
                        "anyOf": [
                            {"type": "string"},
                            {"type": "null"},
                            {"type": "array", "items": {"type": "object"}},
                        ]
                    },
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": ["object", "null"]},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    },
}


# OpenAI's error types by status; anything else 4xx is an invalid request.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


def openai_error(problem: errors.Problem) -> dict[str, Any]:
    """A Problem as OpenAI's error body (``param`` names the first field at fault)."""
    if problem.status >= 500:
        kind = "server_error" if problem.status == 500 else "upstream_error"
    else:
        kind = _ERROR_TYPES.get(problem.status, "invalid_request_error")
    param = None
    if problem.errors:
        param = problem.errors[0].get("path", "").strip("/").replace("/", ".") or None
    return {
        "error": {"message": problem.detail, "type": kind, "param": param, "code": problem.code}
    }


OPENAI_ERROR = errors.ErrorShape(
    openai_error,
    {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


class OpenAIDoor:
    def __init__(self, service: ChatService) -> None:
        self.service = service

    def _character(self, model: str, visible: dict[str, Any]) -> str:
        char_id = model.split(":", 1)[1] if model.startswith("character:") else model
        if char_id not in visible:
            raise errors.NotFound(
                f"The model {model!r} does not exist; use one of GET /v1/models",
                code="MODEL_NOT_FOUND",
            )
        return char_id

    async def models(self, req: Request) -> Any:
        visible = await self.service.visible(req.require_identity())
        return {
            "object": "list",
            "data": [
                {
                    "id": f"character:{c.id}",
                    "object": "model",
                    "created": CREATED,
                    "owned_by": "llmmultichat",
                    "name": c.name,
                    "description": c.description,
                }
                for c in visible.values()
            ],
        }

    async def completions(self, req: Request) -> Any:
        identity = req.require_identity()
        body = req.body or {}
        visible = await self.service.visible(identity)
        char_id = self._character(body["model"], visible)
        messages = [
            {
                "role": "system" if m["role"] == "developer" else m["role"],
                "content": _text(m.get("content")),
            }
            for m in body["messages"]
        ]
        turn = self.service.prepare_conversation(
            identity, char_id, messages, request_id=req.request_id, characters=visible
        )
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        model = f"character:{char_id}"
        if body.get("stream"):
            return await self._stream(req, turn, completion_id, created, model, body)
        await asyncio.shield(self.service.launch(turn))
        reply: dict[str, Any] = turn.replies[0] if turn.replies else {"content": "", "usage": {}}
        usage: dict[str, int] = reply.get("usage") or {}
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply["content"]},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage.get("prompt_tokens", 0),
                "completion_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        }

    async def _stream(
        self,
        req: Request,
        turn: Turn,
        completion_id: str,
        created: int,
        model: str,
        body: dict[str, Any],
    ) -> web.StreamResponse:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def emit(event: dict[str, Any]) -> None:
            if event.get("type") == "chunk":
                queue.put_nowait(event)

        turn.emit = emit
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **req.response_headers,  # X-Request-ID, RateLimit-*
            }
        )
        await resp.prepare(req.raw)
        task = self.service.launch(turn)
        task.add_done_callback(lambda _t: queue.put_nowait(None))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        connected = True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if include_usage:
                out["usage"] = None
            return out

        async def send(data: dict[str, Any] | str) -> None:
            nonlocal connected
            if not connected:
                return
            payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            try:
                await resp.write(f"data: {payload}\n\n".encode())
            except (ConnectionError, RuntimeError):
                connected = False

        await send(chunk({"role": "assistant", "content": ""}))
        while (item := await queue.get()) is not None:
            await send(chunk({"content": item["delta"]}))
        exc = task.exception() if not task.cancelled() else None
        if exc is not None:
            await send(openai_error(turn_problem(exc)))
        else:
            await send(chunk({}, "stop"))
            if include_usage:
                usage = turn.usage.to_dict()
                await send(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
        await send("[DONE]")
        if connected:
            try:
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        return resp


def openai_routes(service: ChatService) -> list[Route]:
    door = OpenAIDoor(service)
    return [
        Route(
            "GET",
            "/v1/models",
            door.models,
            summary="Characters as OpenAI models (character:<id>)",
            tags=["openai"],
            operation_id="openai_models",
            error_shape=OPENAI_ERROR,
        ),
        Route(
            "POST",
            "/v1/chat/completions",
            door.completions,
            rate_limit="chat",
            request_schema=COMPLETIONS_REQUEST,
            summary="OpenAI-compatible chat completions with a character",
            description=(__doc__ or "").strip(),
            tags=["openai"],
            operation_id="openai_chat_completions",
            error_shape=OPENAI_ERROR,
            responses={404: "Unknown model", 502: "Upstream failed", 504: "Upstream timed out"},
        ),
    ]
