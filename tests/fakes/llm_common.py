"""What the fake LLM servers share: a real aiohttp server on a random loopback port,
a script of queued replies, injected failures and slowness.

Used by :mod:`tests.fakes.openai_server` and :mod:`tests.fakes.anthropic_server`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .serving import serve

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: words and punctuation marks, CJK characters one each."""
    return len(re.findall(r"[\u3040-\u30ff\u3400-\u9fff]|\w+|[^\w\s]", text or ""))


def split_stream(text: str) -> list[str]:
    """Split text into streaming deltas (a word with its following space, CJK per character)."""
    if not text:
        return []
    parts = re.findall(r"[\u3040-\u30ff\u3400-\u9fff]|\S+\s*|\s+", text)
    return [p for p in parts if p]


@dataclass(slots=True)
class ScriptedReply:
    """One scripted answer.

    ``content``: the assistant text; ``tool_calls``: ``[{"name", "arguments", "id"?}]``
    (``arguments`` a dict or a JSON string); ``usage``: override of the token counts
    (OpenAI names ``prompt_tokens``/``completion_tokens`` or Anthropic names
    ``input_tokens``/``output_tokens``); ``chunks``: exact streaming deltas;
    ``chunk_delay``: seconds between streamed deltas; ``error_after``: number of deltas
    after which a streaming answer breaks off (connection dropped).
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    chunks: list[str] | None = None
    chunk_delay: float | None = None
    error_after: int | None = None


@dataclass(slots=True)
class Failure:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeLLMServer:
    """Base of the fakes: ``async with Fake() as fake:`` starts it; ``fake.url`` is its base URL."""

    url_suffix = ""

    def __init__(
        self,
        *,
        default_reply: str | Callable[[dict[str, Any]], str] | None = None,
        api_key: str | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
    ) -> None:
        self.default_reply = default_reply
        self.api_key = api_key
        # Seconds to wait before answering any request (slowness on demand).
        self.delay = delay
        # Seconds between streamed deltas (a slow stream).
        self.chunk_delay = chunk_delay
        self.requests: list[dict[str, Any]] = []  # every received JSON body
        self.headers: list[dict[str, str]] = []  # the headers of each of those requests
        self.paths: list[str] = []
        self._script: deque[ScriptedReply] = deque()
        self._failures: deque[Failure] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.streams_completed = 0
        self.streams_broken = 0

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base + self.url_suffix

    def build_app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    async def start(self) -> FakeLLMServer:
        self._runner, self.port = await serve(self.build_app(), self.host, shutdown_timeout=0.1)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- scripting ------------------------------------------------------------------
    def queue(
        self,
        content: str | None = None,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        usage: dict[str, int] | None = None,
        finish_reason: str | None = None,
        chunks: list[str] | None = None,
        chunk_delay: float | None = None,
        error_after: int | None = None,
    ) -> None:
        """Script the next reply (replies are used in the order queued, one per request)."""
        self._script.append(
            ScriptedReply(
                content=content,
                tool_calls=tool_calls,
                usage=usage,
                finish_reason=finish_reason,
                chunks=chunks,
                chunk_delay=chunk_delay,
                error_after=error_after,
            )
        )

    def fail_next(
        self,
        status: int = 500,
        times: int = 1,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and an error body in the
        upstream's format unless ``body`` is given)."""
        for _ in range(times):
            self._failures.append(Failure(status, body, dict(headers or {})))

    def reset(self) -> None:
        self.requests.clear()
        self.headers.clear()
        self.paths.clear()
        self._script.clear()
        self._failures.clear()

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._script)

    # ---- helpers for subclasses -----------------------------------------------------
    def _next_reply(self, body: dict[str, Any]) -> ScriptedReply:
        if self._script:
            return self._script.popleft()
        return ScriptedReply(content=self._default_text(body))

    def _default_text(self, body: dict[str, Any]) -> str:
        if callable(self.default_reply):
            return self.default_reply(body)
        if isinstance(self.default_reply, str):
            return self.default_reply
        last = ""
        for message in body.get("messages") or []:
            if message.get("role") == "user":
                last = _text_of(message.get("content"))
        return f"Hello! You said: {last[:200]}" if last else "Hello!"

    async def _record(self, request: web.Request) -> dict[str, Any] | web.Response:
        self.paths.append(request.path)
        self.headers.append(dict(request.headers))
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.requests.append({})
            return self.error_response(400, "invalid_request_error", "Body is not valid JSON")
        if not isinstance(body, dict):
            body = {"_": body}
        self.requests.append(body)
        return body

    async def _slow(self) -> None:
        if self.delay > 0:
            await asyncio.sleep(self.delay)

    def _pop_failure(self) -> web.Response | None:
        if not self._failures:
            return None
        failure = self._failures.popleft()
        if failure.body is None:
            kind = {
                400: "invalid_request_error",
                401: "authentication_error",
                403: "permission_error",
                404: "not_found_error",
                429: "rate_limit_error",
                529: "overloaded_error",
            }.get(failure.status, "api_error")
            resp = self.error_response(failure.status, kind, f"Injected failure {failure.status}")
        elif isinstance(failure.body, str | bytes):
            resp = web.Response(status=failure.status, body=failure.body)
        else:
            resp = web.json_response(failure.body, status=failure.status)
        resp.headers.update(failure.headers)
        return resp

    def error_response(self, status: int, kind: str, message: str) -> web.Response:
        raise NotImplementedError


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return ""


def tool_arguments_json(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)


def tool_arguments_dict(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments.strip():
        parsed = json.loads(arguments)
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return {}


def prompt_text(body: dict[str, Any]) -> str:
    """All the text a request sends (for the token estimate)."""
    parts: list[str] = []
    system = body.get("system")
    if system:
        parts.append(_text_of(system))
    for message in body.get("messages") or []:
        parts.append(_text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            parts.append(str(call.get("function", {}).get("arguments", "")))
    return "\n".join(parts)
