"""The one interface every LLM provider implements, and the HTTP plumbing the remote ones
share (timeouts, retries with backoff on 429/5xx, errors as Problems, no secret in logs).

A provider is built from one ``[plugins.chat.providers.<name>]`` table. Third-party
plugins add provider *types* through the ``register_llm_providers`` hook, returning
``{"mytype": MyProvider}`` where ``MyProvider`` subclasses :class:`LLMProvider`.

Messages are OpenAI-style dicts: ``{"role": "system"|"user"|"assistant"|"tool",
"content": str, "tool_calls"?: [...], "tool_call_id"?: str}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import aiohttp

from sdk import errors

log = logging.getLogger("llmmultichat.chat.providers")


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


@dataclass(slots=True)
class StreamEvent:
    """One thing a streaming provider yields."""

    type: Literal["delta", "tool_call", "usage", "finish"]
    text: str = ""
    tool_call: ToolCallRequest | None = None
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class Completion:
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
    return "\n".join(str(m.get("content") or "") for m in messages)


class LLMProvider:
    """Base class of provider types.

    Subclasses set ``type`` and implement :meth:`stream`; they may override
    :meth:`complete` (the default collects the stream), :meth:`start`, :meth:`close` and
    :meth:`unavailable_reason`.
    """

    type: ClassVar[str] = ""
    # Settings that must be non-empty for the provider to work (e.g. ("api_key",)).
    required_settings: ClassVar[tuple[str, ...]] = ()
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
    ) -> AsyncIterator[StreamEvent]:
        """Yield ``delta`` events as text arrives, then ``tool_call``s, ``usage`` and ``finish``."""
        raise NotImplementedError

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        out = Completion(model=model or self.model, provider=self.name)
        parts: list[str] = []
        async for event in self.stream(
            messages, model=model, tools=tools, max_tokens=max_tokens, temperature=temperature
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


RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class HTTPProvider(LLMProvider):
    """Shared HTTP client for remote providers: one connection pool per provider,
    total timeout per call, retries with exponential backoff (honouring Retry-After) on
    429/5xx and connection errors before any output has been received."""

    def __init__(self, name: str, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, settings, **kwargs)
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return str(self.settings.get("base_url") or "").rstrip("/")

    def secrets(self) -> list[str]:
        return [str(self.settings[k]) for k in ("api_key",) if self.settings.get(k)]

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    async def start(self) -> None:
        self._http()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=int(self.settings.get("max_connections", 100))
                ),
                headers={"User-Agent": "llmmultichat"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def headers(self) -> dict[str, str]:
        return {}

    async def post_json(self, url: str, payload: dict[str, Any]) -> Any:
        """POST with retries and return the parsed JSON answer (a non-streaming call)."""
        resp = await self.post(url, payload)
        try:
            return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise upstream_stream_error(self.name, exc, self.timeout) from exc
        except ValueError as exc:
            raise errors.BadGateway(f"provider {self.name!r} answered something not JSON") from exc
        finally:
            resp.release()

    async def post(self, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST with retries; returns a 2xx response (the caller reads and releases it)."""
        self.check_available()
        attempt = 0
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(10.0, self.timeout))
        while True:
            failure: errors.Problem
            retry_after: float | None = None
            try:
                resp = await self._http().post(
                    url, json=payload, headers=self.headers(), timeout=timeout
                )
            except TimeoutError:
                failure = errors.GatewayTimeout(
                    f"provider {self.name!r} did not answer within {self.timeout:g} s"
                )
            except aiohttp.ClientError as exc:
                failure = errors.BadGateway(
                    f"provider {self.name!r} could not be reached ({type(exc).__name__})"
                )
            else:
                if resp.status < 400:
                    return resp
                detail = await self._error_detail(resp)
                resp.release()
                log.warning(
                    "provider %r answered HTTP %s: %s", self.name, resp.status, self.redact(detail)
                )
                failure = errors.BadGateway(
                    f"provider {self.name!r} answered HTTP {resp.status}"
                    + (f" ({detail})" if detail else ""),
                    extra={"upstream_status": resp.status},
                )
                if resp.status not in RETRYABLE:
                    raise failure
                retry_after = _retry_after(resp.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise failure
            delay = self.retry_backoff * (2**attempt) * (0.75 + random.random() / 2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 30.0))
            if delay > 0:
                await asyncio.sleep(delay)
            attempt += 1

    async def _error_detail(self, resp: aiohttp.ClientResponse) -> str:
        """The upstream's error *type* only: never its message, which may echo our key."""
        try:
            raw = await resp.content.read(16384)
            body = json.loads(raw)
        except Exception:
            return ""
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            kind = err.get("type") or err.get("code")
            return str(kind)[:80] if kind else ""
        return ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def iter_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """Yield ``(event, data)`` pairs of a text/event-stream body."""
    event = ""
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            event = value
        elif key == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


def upstream_stream_error(provider: str, exc: BaseException, timeout: float) -> errors.Problem:
    """Map an exception raised while reading a stream to the Problem a client sees."""
    if isinstance(exc, TimeoutError):
        return errors.GatewayTimeout(f"provider {provider!r} did not finish within {timeout:g} s")
    return errors.BadGateway(f"provider {provider!r} broke off the answer ({type(exc).__name__})")
