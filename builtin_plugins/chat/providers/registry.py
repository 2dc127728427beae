"""The configured providers (one per ``[plugins.chat.providers.<name>]`` table) and the
fallback along a character's chain of them."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from sdk import Completion, LLMProvider, StreamEvent, errors
from sdk.llm import takes_keyword
from sdk.metrics import NullMetrics

from ..metrics import ChatMetrics

log = logging.getLogger("llmmultichat.chat")

FALLBACK_ERRORS = (errors.BadGateway, errors.GatewayTimeout, errors.ServiceUnavailable)


class BrokenProvider(LLMProvider):
    """Stands in for a provider whose table names an unknown type or failed to build."""

    type = "unknown"

    def __init__(self, name: str, settings: dict[str, Any], reason: str) -> None:
        super().__init__(name, settings)
        self.reason = reason

    def unavailable_reason(self) -> str | None:
        return self.reason


class ProviderRegistry:
    def __init__(
        self,
        providers_config: dict[str, dict[str, Any]],
        types: dict[str, type[LLMProvider]],
        *,
        timeout: float,
        max_retries: int,
        retry_backoff: float,
        default_provider: str,
        metrics: ChatMetrics | None = None,
    ) -> None:
        self.default = default_provider
        self.metrics = metrics or ChatMetrics(NullMetrics())
        self.providers: dict[str, LLMProvider] = {}
        for name, settings in providers_config.items():
            kind = str(settings.get("type") or "")
            cls = types.get(kind)
            if cls is None:
                known = ", ".join(sorted(types)) or "none"
                self.providers[name] = BrokenProvider(
                    name,
                    settings,
                    f"provider {name!r} has unknown type {kind!r} (known: {known})",
                )
                continue
            try:
                self.providers[name] = cls(
                    name,
                    settings,
                    timeout=timeout,
                    max_retries=max_retries,
                    retry_backoff=retry_backoff,
                    config_path=f"plugins.chat.providers.{name}",
                )
            except Exception as exc:
                log.error("provider %r could not be built: %s", name, type(exc).__name__)
                self.providers[name] = BrokenProvider(
                    name, settings, f"provider {name!r} could not be built ({type(exc).__name__})"
                )

    def get(self, name: str | None) -> LLMProvider:
        name = name or self.default
        provider = self.providers.get(name)
        if provider is None:
            raise errors.ServiceUnavailable(
                f"no provider named {name!r} in plugins.chat.providers", code="PROVIDER_UNAVAILABLE"
            )
        return provider

    def ready(self, name: str) -> LLMProvider:
        """The provider ``name`` if it can serve; 503 ``PROVIDER_UNAVAILABLE`` otherwise."""
        provider = self.get(name)
        provider.check_available()
        return provider

    def unavailable(self) -> dict[str, str]:
        out = {}
        for name, provider in self.providers.items():
            reason = provider.unavailable_reason()
            if reason:
                out[name] = reason
        return out

    def checks(self) -> dict[str, Any]:
        return {name: p.health_check() for name, p in self.providers.items()}

    async def start(self) -> None:
        for provider in self.providers.values():
            if provider.unavailable_reason() is None:
                await provider.start()

    async def close(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("closing provider %r", provider.name)

    async def stream(
        self,
        chain: list[tuple[str, str | None]],
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[tuple[LLMProvider, str, StreamEvent]]:
        """Stream from the first provider of ``chain`` (``[(provider, model or None)]``)
        that answers; move on to the next only while nothing has been produced yet."""
        last: errors.Problem | None = None
        for name, model in chain:
            try:
                provider = self.ready(name)
            except errors.ServiceUnavailable as exc:
                last = exc
                continue
            use_model = model or provider.model
            produced = False
            started = time.perf_counter()
            try:
                async for event in provider.stream(
                    messages,
                    model=use_model,
                    tools=tools if provider.supports_tools else None,
                    max_tokens=max_tokens,
                    temperature=temperature,
                ):
                    if event.type in ("delta", "tool_call"):
                        if not produced:
                            elapsed = time.perf_counter() - started
                            self.metrics.first_token(name, use_model, elapsed)
                        produced = True
                    elif event.type == "usage" and event.usage is not None:
                        self.metrics.used(name, use_model, event.usage)
                    yield provider, use_model, event
                self.metrics.call_done(name, use_model, None)
                return
            except errors.Problem as exc:
                self.metrics.call_failed(name, use_model, exc.code)
                if produced or not isinstance(exc, FALLBACK_ERRORS):
                    raise
                last = exc
                if len(chain) > 1:
                    log.warning("provider %r failed (%s); trying the next", name, exc.code)
        assert last is not None
        raise last

    async def complete(
        self,
        chain: list[tuple[str, str | None]],
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """``json_schema`` is passed only to providers whose ``complete`` takes it (a
        provider type written before it existed is called as before)."""
        last: errors.Problem | None = None
        for name, model in chain:
            try:
                provider = self.ready(name)
            except FALLBACK_ERRORS as exc:
                last = exc
                continue
            use_model = model or provider.model
            extra: dict[str, Any] = {}
            if json_schema is not None and takes_keyword(provider.complete, "json_schema"):
                extra["json_schema"] = json_schema
            try:
                result = await provider.complete(
                    messages,
                    model=use_model,
                    tools=tools if provider.supports_tools else None,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    **extra,
                )
            except errors.Problem as exc:
                self.metrics.call_failed(name, use_model, exc.code)
                if not isinstance(exc, FALLBACK_ERRORS):
                    raise
                last = exc
                continue
            self.metrics.call_done(name, use_model, result.usage)
            return result
        assert last is not None
        raise last
