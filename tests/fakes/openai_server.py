"""A fake OpenAI-compatible server: a real aiohttp server speaking Chat Completions
(plain and SSE streaming, ``stream_options.include_usage``, tool calls), ``/v1/embeddings``
and ``/v1/models``.

    async with FakeOpenAI() as fake:
        fake.queue("Sunny!", usage={"prompt_tokens": 12, "completion_tokens": 2})
        fake.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Tokyo"}}])
        fake.fail_next(429, times=2)
        fake.delay = 0.5                      # every answer waits half a second
        ... point a client at fake.url ("http://127.0.0.1:PORT/v1") ...
        fake.requests[-1]["messages"]         # what was received

With nothing queued it answers ``"Hello! You said: <last user message>"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from typing import Any

from aiohttp import web

from .llm_common import (
    FakeLLMServer,
    ScriptedReply,
    count_tokens,
    next_id,
    prompt_text,
    split_stream,
    tool_arguments_json,
)

__all__ = ["FakeOpenAI", "fake_embedding"]


def fake_embedding(text: str, dim: int = 384) -> list[float]:
    """A deterministic unit vector: hashed bag of words (so texts sharing words are close)."""
    vec = [0.0] * dim
    words = re.findall(r"[\u3040-\u30ff\u3400-\u9fff]|\w+", (text or "").lower())
    for word in words or ["<empty>"]:
        digest = hashlib.sha256(word.encode()).digest()
        for i in range(0, 8, 2):
            bucket = int.from_bytes(digest[i : i + 2], "big") % dim
            vec[bucket] += 1.0 if digest[i + 8] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class FakeOpenAI(FakeLLMServer):
    url_suffix = "/v1"

    def __init__(
        self,
        *,
        embedding_dim: int = 384,
        models: tuple[str, ...] = ("gpt-4o-mini", "text-embedding-3-small"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.models = list(models)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        return app

    # ---- protocol -------------------------------------------------------------------
    def error_response(self, status: int, kind: str, message: str) -> web.Response:
        code = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status)
        return web.json_response(
            {"error": {"message": message, "type": kind, "param": None, "code": code}},
            status=status,
        )

    def _check_key(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error_response(401, "invalid_request_error", "Incorrect API key provided")
        return None

    async def _models(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        if (denied := self._check_key(request)) is not None:
            return denied
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
                    for m in self.models
                ],
            }
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        if (denied := self._check_key(request)) is not None:
            return denied
        await self._slow()
        if (failure := self._pop_failure()) is not None:
            return failure
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            return self.error_response(400, "invalid_request_error", "'input' must be text")
        dim = int(body.get("dimensions") or self.embedding_dim)
        tokens = sum(count_tokens(x) for x in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": fake_embedding(text, dim)}
                    for i, text in enumerate(inputs)
                ],
                "model": body.get("model") or "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        if (denied := self._check_key(request)) is not None:
            return denied
        await self._slow()
        if (failure := self._pop_failure()) is not None:
            return failure
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.error_response(400, "invalid_request_error", "'messages' is required")
        reply = self._next_reply(body)
        model = str(body.get("model") or "gpt-4o-mini")
        tool_calls = [
            {
                "id": call.get("id") or next_id("call_"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": tool_arguments_json(call.get("arguments")),
                },
            }
            for call in reply.tool_calls or []
        ]
        content = reply.content
        if content is None and not tool_calls:
            content = ""
        finish = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
        usage = self._usage(body, reply, content, tool_calls)
        if body.get("stream"):
            return await self._stream(
                request, body, reply, model, content, tool_calls, finish, usage
            )
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return web.json_response(
            {
                "id": next_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def _usage(
        self,
        body: dict[str, Any],
        reply: ScriptedReply,
        content: str | None,
        tool_calls: list[dict[str, Any]],
    ) -> dict[str, int]:
        prompt = count_tokens(prompt_text(body))
        completion = count_tokens(content or "") + sum(
            count_tokens(c["function"]["arguments"]) + 1 for c in tool_calls
        )
        given = reply.usage or {}
        prompt = int(given.get("prompt_tokens", given.get("input_tokens", prompt)))
        completion = int(given.get("completion_tokens", given.get("output_tokens", completion)))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        reply: ScriptedReply,
        model: str,
        content: str | None,
        tool_calls: list[dict[str, Any]],
        finish: str,
        usage: dict[str, int],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        cid = next_id("chatcmpl-")
        created = int(time.time())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        delay = self.chunk_delay if reply.chunk_delay is None else reply.chunk_delay

        def frame(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if include_usage:
                chunk["usage"] = None
            try:
                return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
            except UnicodeEncodeError:  # lone surrogates travel as \udxxx, as JSON allows
                return f"data: {json.dumps(chunk)}\n\n".encode()

        frames: list[bytes] = [frame({"role": "assistant", "content": ""})]
        for piece in reply.chunks if reply.chunks is not None else split_stream(content or ""):
            frames.append(frame({"content": piece}))
        for index, call in enumerate(tool_calls):
            frames.append(
                frame(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            args = call["function"]["arguments"]
            step = max(1, len(args) // 3 or 1)
            for start in range(0, len(args), step):
                frames.append(
                    frame(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "function": {"arguments": args[start : start + step]},
                                }
                            ]
                        }
                    )
                )
        frames.append(frame({}, finish))
        if include_usage:
            tail = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            frames.append(f"data: {json.dumps(tail)}\n\n".encode())
        frames.append(b"data: [DONE]\n\n")

        try:
            for i, data in enumerate(frames):
                if reply.error_after is not None and i > reply.error_after:
                    # Break the stream off mid-answer, like a dropped upstream connection.
                    self.streams_broken += 1
                    if request.transport is not None:
                        request.transport.close()
                    return resp
                await resp.write(data)
                if delay and 0 < i < len(frames) - 1:
                    await asyncio.sleep(delay)
            await resp.write_eof()
            self.streams_completed += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_broken += 1
            raise
        return resp
