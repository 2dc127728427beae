"""Anthropic's Messages API: streaming events, tool use, usage.

OpenAI-style messages are translated: system messages become ``system``, assistant
``tool_calls`` become ``tool_use`` blocks, ``tool`` messages become ``tool_result``
blocks of a user turn, and consecutive turns of one role are merged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from sdk import Completion, StreamEvent, ToolCallRequest, Usage, errors

from .http import HTTPProvider, iter_sse, upstream_stream_error

API_VERSION = "2023-06-01"


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": list(blocks)})

    for m in messages:
        role = m.get("role")
        content = m.get("content") or ""
        if role == "system":
            if content:
                system.append(str(content))
        elif role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": str(m.get("tool_call_id") or ""),
                        "content": str(content),
                    }
                ],
            )
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            if content:
                blocks.append({"type": "text", "text": str(content)})
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or "",
                        "name": fn.get("name") or "",
                        "input": args if isinstance(args, dict) else {},
                    }
                )
            add("assistant", blocks)
        else:
            add("user", [{"type": "text", "text": str(content)}] if content else [])
    if not out or out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "(start)"}]})
    return "\n\n".join(system), out


class AnthropicProvider(HTTPProvider):
    type = "anthropic"
    required_settings = ("api_key", "model")

    @property
    def base_url(self) -> str:
        return str(self.settings.get("base_url") or "https://api.anthropic.com").rstrip("/")

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "x-api-key": str(self.settings.get("api_key") or ""),
            "anthropic-version": str(self.settings.get("anthropic_version") or API_VERSION),
        }

    def _payload(
        self,
        messages: list[dict[str, Any]],
        model: str | None,
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        temperature: float | None,
        stream: bool,
    ) -> dict[str, Any]:
        system, converted = to_anthropic(messages)
        payload: dict[str, Any] = {
            "model": model or self.model,
            "messages": converted,
            "max_tokens": int(max_tokens or self.settings.get("max_tokens") or 1024),
        }
        if system:
            payload["system"] = system
        if stream:
            payload["stream"] = True
        if tools:
            payload["tools"] = [
                {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "input_schema": t.get("parameters") or {"type": "object"},
                }
                for t in tools
            ]
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
    ) -> AsyncIterator[StreamEvent]:
        payload = self._payload(messages, model, tools, max_tokens, temperature, stream=True)
        resp = await self.post(self.base_url + "/v1/messages", payload)
        usage = Usage()
        stop: str | None = None
        blocks: dict[int, dict[str, Any]] = {}
        finished = False
        pending: list[ToolCallRequest] = []
        try:
            async for event, data in iter_sse(resp):
                try:
                    body = json.loads(data)
                except json.JSONDecodeError:
                    continue
                kind = body.get("type") or event
                if kind == "message_start":
                    u = (body.get("message") or {}).get("usage") or {}
                    usage.prompt_tokens = int(u.get("input_tokens") or 0)
                    usage.completion_tokens = int(u.get("output_tokens") or 0)
                elif kind == "content_block_start":
                    block = body.get("content_block") or {}
                    blocks[int(body.get("index", 0))] = {
                        "type": block.get("type"),
                        "id": block.get("id", ""),
                        "name": block.get("name", ""),
                        "json": [],
                    }
                elif kind == "content_block_delta":
                    delta = body.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield StreamEvent("delta", text=delta["text"])
                    elif delta.get("type") == "input_json_delta":
                        slot = blocks.get(int(body.get("index", 0)))
                        if slot is not None:
                            slot["json"].append(delta.get("partial_json") or "")
                elif kind == "content_block_stop":
                    slot = blocks.get(int(body.get("index", 0)))
                    if slot is not None and slot["type"] == "tool_use":
                        raw = "".join(slot["json"])
                        try:
                            args = json.loads(raw) if raw.strip() else {}
                        except json.JSONDecodeError:
                            args = {"_raw": raw}
                        pending.append(
                            ToolCallRequest(
                                id=slot["id"],
                                name=slot["name"],
                                arguments=args if isinstance(args, dict) else {"value": args},
                                raw_arguments=raw,
                            )
                        )
                elif kind == "message_delta":
                    stop = (body.get("delta") or {}).get("stop_reason") or stop
                    u = body.get("usage") or {}
                    if u.get("output_tokens") is not None:
                        usage.completion_tokens = int(u["output_tokens"])
                    if u.get("input_tokens"):
                        usage.prompt_tokens = int(u["input_tokens"])
                elif kind == "message_stop":
                    finished = True
                    break
                elif kind == "error":
                    err = body.get("error") or {}
                    raise errors.BadGateway(
                        f"provider {self.name!r} reported {err.get('type') or 'an error'} mid-stream"
                    )
        except errors.Problem:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise upstream_stream_error(self.name, exc, self.timeout) from exc
        finally:
            resp.release()
        if not finished:
            raise errors.BadGateway(f"provider {self.name!r} ended the stream early")
        for call in pending:
            yield StreamEvent("tool_call", tool_call=call)
        yield StreamEvent("usage", usage=usage)
        yield StreamEvent("finish", finish_reason=_finish(stop))

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        payload = self._payload(messages, model, tools, max_tokens, temperature, stream=False)
        body = await self.post_json(self.base_url + "/v1/messages", payload)
        text: list[str] = []
        calls: list[ToolCallRequest] = []
        for block in body.get("content") or []:
            if block.get("type") == "text":
                text.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                args = block.get("input") or {}
                calls.append(
                    ToolCallRequest(
                        id=block.get("id") or "",
                        name=block.get("name") or "",
                        arguments=args,
                        raw_arguments=json.dumps(args, ensure_ascii=False),
                    )
                )
        u = body.get("usage") or {}
        return Completion(
            content="".join(text),
            tool_calls=calls,
            usage=Usage(int(u.get("input_tokens") or 0), int(u.get("output_tokens") or 0)),
            finish_reason=_finish(body.get("stop_reason")),
            model=str(body.get("model") or model or self.model),
            provider=self.name,
        )


def _finish(stop: str | None) -> str:
    return {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}.get(
        stop or "end_turn", stop or "stop"
    )
