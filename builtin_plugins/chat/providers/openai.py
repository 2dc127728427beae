"""Any OpenAI-compatible Chat Completions server: OpenAI, Ollama, vLLM, llama.cpp server,
LM Studio. SSE streaming with ``stream_options.include_usage`` (usage from the final
chunk), tool calls assembled from their streamed fragments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import aiohttp

from sdk import Completion, StreamEvent, ToolCallRequest, Usage, errors
from sdk.llm import estimate_tokens, messages_text

from .http import HTTPProvider, iter_sse, upstream_stream_error


def _parse_arguments(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"value": value}


class OpenAIProvider(HTTPProvider):
    type = "openai"

    @property
    def base_url(self) -> str:
        return str(self.settings.get("base_url") or "https://api.openai.com/v1").rstrip("/")

    def missing_settings(self) -> list[str]:
        # A key is needed by OpenAI itself (and whenever require_api_key is set); local
        # OpenAI-compatible servers (Ollama, vLLM, llama.cpp server) take none.
        host = urlparse(self.base_url).hostname or ""
        needs_key = self.settings.get("require_api_key")
        if needs_key is None:
            needs_key = host == "openai.com" or host.endswith(".openai.com")
        missing = []
        if needs_key and not self.settings.get("api_key"):
            missing.append("api_key")
        if not self.model:
            missing.append("model")
        return missing

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if self.settings.get("api_key"):
            out["Authorization"] = f"Bearer {self.settings['api_key']}"
        return out

    def _payload(
        self,
        messages: list[dict[str, Any]],
        model: str | None,
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        temperature: float | None,
        stream: bool,
        json_schema: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": model or self.model, "messages": messages}
        if json_schema is not None:
            # Structured Outputs; servers without it may answer 400 or ignore it
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema},
            }
        if stream:
            payload["stream"] = True
            if self.settings.get("stream_usage", True):
                payload["stream_options"] = {"include_usage": True}
        if tools:
            payload["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t.get("description", ""),
                        "parameters": t.get("parameters") or {"type": "object"},
                    },
                }
                for t in tools
            ]
        max_tokens = max_tokens or self.settings.get("max_tokens")
        if max_tokens:
            payload["max_tokens"] = int(max_tokens)
        temperature = temperature if temperature is not None else self.settings.get("temperature")
        if temperature is not None:
            payload["temperature"] = float(temperature)
        return payload

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        payload = self._payload(
            messages, model, tools, max_tokens, temperature, stream=True, json_schema=json_schema
        )
        resp = await self.post(self.base_url + "/chat/completions", payload)
        usage: Usage | None = None
        finish: str | None = None
        calls: dict[int, dict[str, Any]] = {}
        produced: list[str] = []
        try:
            async for _event, data in iter_sse(resp):
                if data.strip() == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    continue
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise errors.BadGateway(f"provider {self.name!r} reported an error mid-stream")
                if chunk.get("usage"):
                    u = chunk["usage"]
                    usage = Usage(
                        int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
                    )
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        produced.append(text)
                        yield StreamEvent("delta", text=text)
                    for frag in delta.get("tool_calls") or []:
                        slot = calls.setdefault(
                            int(frag.get("index", len(calls))), {"id": "", "name": "", "args": []}
                        )
                        if frag.get("id"):
                            slot["id"] = frag["id"]
                        fn = frag.get("function") or {}
                        if fn.get("name"):
                            slot["name"] = fn["name"]
                        if fn.get("arguments"):
                            slot["args"].append(fn["arguments"])
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        except errors.Problem:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise upstream_stream_error(self.name, exc, self.timeout) from exc
        finally:
            resp.release()
        if finish is None and not produced and not calls:
            raise errors.BadGateway(f"provider {self.name!r} ended the stream without an answer")
        for index in sorted(calls):
            slot = calls[index]
            raw = "".join(slot["args"])
            yield StreamEvent(
                "tool_call",
                tool_call=ToolCallRequest(
                    id=slot["id"] or f"call_{index}",
                    name=slot["name"],
                    arguments=_parse_arguments(raw),
                    raw_arguments=raw,
                ),
            )
        if usage is None:
            usage = Usage(
                estimate_tokens(messages_text(messages)),
                estimate_tokens("".join(produced)),
                estimated=True,
            )
        yield StreamEvent("usage", usage=usage)
        yield StreamEvent("finish", finish_reason=finish or "stop")

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        payload = self._payload(
            messages, model, tools, max_tokens, temperature, stream=False, json_schema=json_schema
        )
        body = await self.post_json(self.base_url + "/chat/completions", payload)
        try:
            choice = body["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise errors.BadGateway(f"provider {self.name!r} answered without choices") from exc
        content = message.get("content") or ""
        calls = [
            ToolCallRequest(
                id=c.get("id") or f"call_{i}",
                name=(c.get("function") or {}).get("name", ""),
                arguments=_parse_arguments((c.get("function") or {}).get("arguments") or ""),
                raw_arguments=(c.get("function") or {}).get("arguments") or "",
            )
            for i, c in enumerate(message.get("tool_calls") or [])
        ]
        u = body.get("usage")
        usage = (
            Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
            if isinstance(u, dict)
            else Usage(
                estimate_tokens(messages_text(messages)), estimate_tokens(content), estimated=True
            )
        )
        return Completion(
            content=content,
            tool_calls=calls,
            usage=usage,
            finish_reason=choice.get("finish_reason") or "stop",
            model=str(body.get("model") or model or self.model),
            provider=self.name,
        )
