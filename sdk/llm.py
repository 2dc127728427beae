"""The LLM provider contract: what a plugin implements to add an LLM backend.

A provider *type* is a subclass of :class:`LLMProvider` that sets ``type`` and implements
:meth:`LLMProvider.stream`. A plugin offers its types through the
``register_llm_providers`` hook (a list of classes); the chat plugin builds one instance
per ``[plugins.chat.providers.<name>]`` table whose ``type`` names the class::

    from sdk import LLMProvider, StreamEvent, Usage, hookimpl

    class EchoProvider(LLMProvider):
        type = "echo"

        async def stream(self, messages, *, model=None, tools=None,
                         max_tokens=None, temperature=None, json_schema=None):
            yield StreamEvent("delta", text=messages[-1]["content"])
            yield StreamEvent("usage", usage=Usage(1, 1))
            yield StreamEvent("finish", finish_reason="stop")

    class EchoPlugin(Plugin):
        @hookimpl
        def register_llm_providers(self):
            return [EchoProvider]

Messages are OpenAI-style dicts: ``{"role": "system"|"user"|"assistant"|"tool",
"content": str, "tool_calls"?: [...], "tool_call_id"?: str}``. Failures are
``sdk.errors`` Problems: ``BadGateway``/``GatewayTimeout``/``ServiceUnavailable`` make
the chat plugin try the character's next provider while nothing has been streamed yet.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from . import errors


@dataclass(slots=True)
class ToolCallRequest:
    """A function call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": self.raw_arguments or json.dumps(self.arguments, ensure_ascii=False),
            },
        }


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the upstream did not report usage and the counts are estimates.
    estimated: bool = False

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.estimated = self.estimated or other.estimated

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


StreamEventType = Literal["delta", "tool_call", "usage", "finish"]


@dataclass(slots=True)
class StreamEvent:
    """One thing a streaming provider yields: ``delta`` (text), ``tool_call``, ``usage``,
    ``finish`` (with ``finish_reason``)."""

    type: StreamEventType
    text: str = ""
    tool_call: ToolCallRequest | None = None
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class Completion:
    """A whole answer (:meth:`LLMProvider.complete`)."""

    content: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    model: str = ""
    provider: str = ""


def estimate_tokens(text: str) -> int:
    """Rough token count (about 4 characters a token) when an upstream reports none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def messages_text(messages: list[dict[str, Any]]) -> str:
    """The text of every message, one per line (for estimating prompt tokens)."""
    return "\n".join(str(m.get("content") or "") for m in messages)


def takes_keyword(function: Any, name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name``."""
    params = inspect.signature(function).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class LLMProvider:
    """Base class of provider types.

    Subclasses set ``type`` and implement :meth:`stream`; they may override
    :meth:`complete` (the default collects the stream), :meth:`start`, :meth:`close`,
    :meth:`missing_settings` and :meth:`unavailable_reason`.
    """

    # The name a ``[plugins.chat.providers.<name>]`` table gives as its ``type``.
    type: ClassVar[str] = ""
    # Settings that must be non-empty for the provider to work (e.g. ("api_key",)).
    required_settings: ClassVar[tuple[str, ...]] = ()
    # False: the chat plugin never offers tools to this provider.
    supports_tools: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        *,
        timeout: float = 120.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        config_path: str = "",
    ) -> None:
        self.name = name
        self.settings = dict(settings)
        self.timeout = float(self.settings.get("timeout_seconds") or timeout)
        self.max_retries = int(self.settings.get("max_retries", max_retries))
        self.retry_backoff = float(self.settings.get("retry_backoff_seconds", retry_backoff))
        # Where this provider's table lives, for messages naming a missing setting.
        self.config_path = config_path or f"plugins.chat.providers.{name}"

    @property
    def model(self) -> str:
        return str(self.settings.get("model") or "")

    def missing_settings(self) -> list[str]:
        return [key for key in self.required_settings if not self.settings.get(key)]

    def unavailable_reason(self) -> str | None:
        """Why this provider cannot serve (None when it can)."""
        missing = self.missing_settings()
        if missing:
            names = ", ".join(f"{self.config_path}.{key}" for key in missing)
            return f"provider {self.name!r} is not configured: missing setting {names}"
        return None

    def check_available(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise errors.ServiceUnavailable(reason, code="PROVIDER_UNAVAILABLE")

    async def start(self) -> None:
        """Open connections (called when the chat plugin starts)."""

    def not_ready(self) -> str | None:
        """Why this provider cannot answer yet (its model still loading), or None; the chat
        plugin passes it to ``/readyz``. Keep it cheap."""
        return None

    async def close(self) -> None:
        """Release connections and models."""

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Yield ``delta`` events as text arrives, then ``tool_call``s, ``usage`` and ``finish``.

        ``json_schema``: the reply should be one JSON value valid against this schema. A
        provider that can constrain its output (``llama_cpp``: a grammar) does so; one that
        cannot may ignore it, so callers still validate what they get."""
        raise NotImplementedError

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
        out = Completion(model=model or self.model, provider=self.name)
        parts: list[str] = []
        # passed on only to a stream() that takes it (one written before it existed may not)
        extra: dict[str, Any] = {}
        if json_schema is not None and takes_keyword(self.stream, "json_schema"):
            extra["json_schema"] = json_schema
        async for event in self.stream(
            messages,
            model=model,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            **extra,
        ):
            if event.type == "delta":
                parts.append(event.text)
            elif event.type == "tool_call" and event.tool_call is not None:
                out.tool_calls.append(event.tool_call)
            elif event.type == "usage" and event.usage is not None:
                out.usage = event.usage
            elif event.type == "finish":
                out.finish_reason = event.finish_reason or "stop"
        out.content = "".join(parts)
        return out

    def health_check(self) -> dict[str, Any]:
        reason = self.unavailable_reason()
        check: dict[str, Any] = {
            "type": self.type,
            "status": "ok" if reason is None else "unavailable",
        }
        if self.model:
            check["model"] = self.model
        if reason:
            check["detail"] = reason
        return check


def provider_class_problem(value: object) -> str | None:
    """Why ``value`` cannot be a provider type (None when it can): what the kernel and the
    chat plugin check of every class a ``register_llm_providers`` hook returns."""
    if not (isinstance(value, type) and issubclass(value, LLMProvider)):
        return f"{value!r} is not a subclass of sdk.LLMProvider"
    if value is LLMProvider or not value.type:
        return f"{value.__qualname__} sets no provider type (the class attribute 'type')"
    if value.stream is LLMProvider.stream:
        return f"{value.__qualname__} does not implement stream()"
    return None


def check_provider_classes(plugin: str, classes: Any, registered: dict[str, str]) -> None:
    """What plugin ``plugin``'s ``register_llm_providers`` returned must be a list of
    provider classes whose types no other plugin registered (``registered``: type ->
    plugin, filled in); raises with a message naming the plugin. The kernel fails that
    plugin when it collects contributions."""
    if classes is None:
        return
    if not isinstance(classes, list | tuple):
        raise TypeError(
            f"register_llm_providers of plugin {plugin!r} returned {type(classes).__name__}, "
            "not a list of sdk.LLMProvider subclasses"
        )
    for cls in classes:
        problem = provider_class_problem(cls)
        if problem:
            raise TypeError(f"register_llm_providers of plugin {plugin!r}: {problem}")
        owner = registered.setdefault(cls.type, plugin)
        if owner != plugin:
            raise ValueError(
                f"plugin {plugin!r} registers LLM provider type {cls.type!r}, "
                f"which plugin {owner!r} already registered"
            )
