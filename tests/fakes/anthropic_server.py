"""A fake Anthropic Messages API: a real aiohttp server speaking ``POST /v1/messages``
(plain and streaming events, ``tool_use`` blocks, usage, errors in Anthropic's shape).

    async with FakeAnthropic(api_key="sk-ant-test") as fake:
        fake.queue("Bonjour")
        fake.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Paris"}}])
        fake.fail_next(529)                      # overloaded_error
        ... base_url = fake.url  ("http://127.0.0.1:PORT", the client adds /v1/messages) ...
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from .llm_common import (
    FakeLLMServer,
    ScriptedReply,
    count_tokens,
    next_id,
    prompt_text,
    split_stream,
    tool_arguments_dict,
)

__all__ = ["FakeAnthropic"]


class FakeAnthropic(FakeLLMServer):
    url_suffix = ""

    def __init__(self, *, models: tuple[str, ...] = ("claude-sonnet-4-5",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = list(models)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        return app

    def error_response(self, status: int, kind: str, message: str) -> web.Response:
        return web.json_response(
            {"type": "error", "error": {"type": kind, "message": message}}, status=status
        )

    def _check_key(self, request: web.Request) -> web.Response | None:
        if not request.headers.get("anthropic-version"):
            return self.error_response(
                400, "invalid_request_error", "anthropic-version header is required"
            )
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return self.error_response(401, "authentication_error", "invalid x-api-key")
        return None

    async def _models(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.json_response(
            {
                "data": [
                    {
                        "type": "model",
                        "id": m,
                        "display_name": m,
                        "created_at": "2025-01-01T00:00:00Z",
                    }
                    for m in self.models
                ],
                "has_more": False,
            }
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        if (denied := self._check_key(request)) is not None:
            return denied
        await self._slow()
        if (failure := self._pop_failure()) is not None:
            return failure
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.error_response(400, "invalid_request_error", "messages: field required")
        if not isinstance(body.get("max_tokens"), int):
            return self.error_response(400, "invalid_request_error", "max_tokens: field required")
        for message in body["messages"]:
            if message.get("role") not in ("user", "assistant"):
                return self.error_response(
                    400, "invalid_request_error", "messages: roles must be 'user' or 'assistant'"
                )
        reply = self._next_reply(body)
        model = str(body.get("model") or self.models[0])
        if reply.finish_reason and reply.finish_reason.startswith("__error__:"):
            _, kind, message = reply.finish_reason.split(":", 2)
            if not body.get("stream"):
                return self.error_response(
                    529 if kind == "overloaded_error" else 500, kind, message
                )
            return await self._error_stream(request, model, kind, message)
        blocks: list[dict[str, Any]] = []
        if reply.content:
            blocks.append({"type": "text", "text": reply.content})
        for call in reply.tool_calls or []:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or next_id("toolu_"),
                    "name": call["name"],
                    "input": tool_arguments_dict(call.get("arguments")),
                }
            )
        stop = reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")
        usage = self._usage(body, reply, blocks)
        if body.get("stream"):
            return await self._stream(request, reply, model, blocks, stop, usage)
        return web.json_response(
            {
                "id": next_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            }
        )

    def _usage(
        self, body: dict[str, Any], reply: ScriptedReply, blocks: list[dict[str, Any]]
    ) -> dict[str, int]:
        given = reply.usage or {}
        out = sum(
            count_tokens(b["text"])
            if b["type"] == "text"
            else count_tokens(json.dumps(b["input"])) + 1
            for b in blocks
        )
        return {
            "input_tokens": int(
                given.get(
                    "input_tokens", given.get("prompt_tokens", count_tokens(prompt_text(body)))
                )
            ),
            "output_tokens": int(given.get("output_tokens", given.get("completion_tokens", out))),
        }

    async def _stream(
        self,
        request: web.Request,
        reply: ScriptedReply,
        model: str,
        blocks: list[dict[str, Any]],
        stop: str,
        usage: dict[str, int],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        delay = self.chunk_delay if reply.chunk_delay is None else reply.chunk_delay

        def event(name: str, data: dict[str, Any]) -> bytes:
            data = {"type": name, **data}
            return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

        frames = [
            event(
                "message_start",
                {
                    "message": {
                        "id": next_id("msg_"),
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
                    }
                },
            ),
            event("ping", {}),
        ]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                frames.append(
                    event(
                        "content_block_start",
                        {"index": index, "content_block": {"type": "text", "text": ""}},
                    )
                )
                pieces = reply.chunks if reply.chunks is not None else split_stream(block["text"])
                for piece in pieces:
                    frames.append(
                        event(
                            "content_block_delta",
                            {"index": index, "delta": {"type": "text_delta", "text": piece}},
                        )
                    )
            else:
                frames.append(
                    event(
                        "content_block_start",
                        {
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": block["id"],
                                "name": block["name"],
                                "input": {},
                            },
                        },
                    )
                )
                args = json.dumps(block["input"], ensure_ascii=False)
                step = max(1, len(args) // 3)
                for start in range(0, len(args), step):
                    frames.append(
                        event(
                            "content_block_delta",
                            {
                                "index": index,
                                "delta": {
                                    "type": "input_json_delta",
                                    "partial_json": args[start : start + step],
                                },
                            },
                        )
                    )
            frames.append(event("content_block_stop", {"index": index}))
        frames.append(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        frames.append(event("message_stop", {}))
        try:
            for i, data in enumerate(frames):
                if reply.error_after is not None and i > reply.error_after:
                    self.streams_broken += 1
                    if request.transport is not None:
                        request.transport.close()
                    return resp
                await resp.write(data)
                if delay and 1 < i < len(frames) - 1:
                    await asyncio.sleep(delay)
            await resp.write_eof()
            self.streams_completed += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_broken += 1
            raise
        return resp

    async def _error_stream(
        self, request: web.Request, model: str, kind: str, message: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        start = {
            "type": "message_start",
            "message": {
                "id": next_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        }
        await resp.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
        err = {"type": "error", "error": {"type": kind, "message": message}}
        await resp.write(f"event: error\ndata: {json.dumps(err)}\n\n".encode())
        await resp.write_eof()
        return resp

    def queue_error_event(
        self, kind: str = "overloaded_error", message: str = "Overloaded"
    ) -> None:
        """Script a stream that starts and then sends an ``error`` event (as Anthropic does mid-stream)."""
        self._script.append(
            ScriptedReply(content=None, finish_reason=f"__error__:{kind}:{message}")
        )
