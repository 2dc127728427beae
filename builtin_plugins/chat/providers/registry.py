"""The configured providers (one per ``[plugins.chat.providers.<name>]`` table) and the
fallback along a character's chain of them."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from sdk import Completion, LLMProvider, PluginEvent, StreamEvent, ToolCallRequest, Usage, errors
from sdk.llm import takes_keyword
from sdk.metrics import NullMetrics
from sdk.plugin import ServerView

from ..metrics import ChatMetrics

log = logging.getLogger("llmmultichat.chat")

FALLBACK_ERRORS = (errors.BadGateway, errors.GatewayTimeout, errors.ServiceUnavailable)


def event_problem(event: object) -> str | None:
    """Why ``event`` is not something a provider's ``stream`` may yield (None when it is)."""
    if not isinstance(event, StreamEvent):
        return f"yielded {type(event).__name__}, not sdk.StreamEvent"
    if event.type == "delta" and not isinstance(event.text, str):
        return f"yielded a delta whose text is {type(event.text).__name__}, not str"
    if event.type == "tool_call" and not isinstance(event.tool_call, ToolCallRequest | None):
        return f"yielded a tool_call that is {type(event.tool_call).__name__}, not ToolCallRequest"
    if event.type == "usage" and not isinstance(event.usage, Usage | None):
        return f"yielded usage that is {type(event.usage).__name__}, not sdk.Usage"
    if event.type not in ("delta", "tool_call", "usage", "finish"):
        return f"yielded a StreamEvent of unknown type {event.type!r}"
    return None


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
        owners: dict[str, str] | None = None,
        server: ServerView | None = None,
    ) -> None:
        self.default = default_provider
        self.metrics = metrics or ChatMetrics(NullMetrics())
        # provider type -> the plugin whose register_llm_providers gave it
        self.owners = dict(owners or {})
        # where a failed call is recorded (the plugin's history and /health)
        self.server = server
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

    def not_ready(self) -> str | None:
        return next((r for p in self.providers.values() if (r := p.not_ready())), None)

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

    def plugin_of(self, provider: LLMProvider) -> str:
        """The plugin that registered ``provider``'s type ("" when unknown)."""
        return self.owners.get(provider.type, "")

    def describe(self, provider: LLMProvider) -> str:
        """``provider 'x' (type 'echo' of plugin 'echo')``: how errors and logs name it."""
        plugin = self.plugin_of(provider)
        of = f" of plugin {plugin!r}" if plugin else ""
        return f"provider {provider.name!r} (type {provider.type!r}{of})"

    def _faulty(
        self, provider: LLMProvider, model: str, what: str, exc: BaseException | None
    ) -> errors.BadGateway:
        """A provider broke its contract (raised something not a Problem, or yielded or
        returned the wrong thing): logged with its plugin's name, and a 502 for the
        client that names the provider and the plugin."""
        log.error(
            "LLM %s, model %r, %s",
            self.describe(provider),
            model,
            what,
            exc_info=exc if exc is not None else None,
        )
        return errors.BadGateway(f"the LLM {self.describe(provider)} failed: {what}")

    def _failed(
        self,
        provider: LLMProvider,
        model: str,
        problem: errors.Problem,
        started: float,
        actor_id: str | None,
    ) -> None:
        """Count a failed call and record it in its plugin's history (``/health`` shows it)."""
        self.metrics.call_failed(provider.name, model, problem.code)
        plugin = self.plugin_of(provider)
        if self.server is None or not plugin:
            return
        try:
            self.server.record(
                PluginEvent(
                    plugin=plugin,
                    kind="llm",
                    outcome="error",
                    detail=f"provider {provider.name!r} (type {provider.type!r}), model {model!r}",
                    error=f"{problem.code}: {problem.detail}",
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    actor_id=actor_id,
                    # a 4xx is the request's fault, not the plugin's: history only
                    caller_error=problem.status < 500,
                )
            )
        except Exception:  # pragma: no cover - the history is best effort
            log.exception("could not record a failed LLM call")

    async def stream(
        self,
        chain: list[tuple[str, str | None]],
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        actor_id: str | None = None,
    ) -> AsyncGenerator[tuple[LLMProvider, str, StreamEvent], None]:
        """Stream from the first provider of ``chain`` (``[(provider, model or None)]``)
        that answers; move on to the next only while nothing has been produced yet.

        A provider that raises anything but a Problem, or yields anything but a valid
        ``StreamEvent``, fails the call with 502 ``UPSTREAM_ERROR`` naming it and its
        plugin. Every failed call is counted (``llm_calls{outcome="error"}``) and recorded
        in the history of the plugin that registered the provider's type (``actor_id``:
        the user whose turn it was). A cancelled call (Stop, shutdown) is neither: the
        provider's generator is closed and the cancellation goes on."""
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
            source: Any = None
            try:
                try:
                    source = provider.stream(
                        messages,
                        model=use_model,
                        tools=tools if provider.supports_tools else None,
                        max_tokens=max_tokens,
                        temperature=temperature,
                    )
                    async for event in source:
                        wrong = event_problem(event)
                        if wrong is not None:
                            raise self._faulty(provider, use_model, wrong, None)
                        if event.type in ("delta", "tool_call"):
                            if not produced:
                                elapsed = time.perf_counter() - started
                                self.metrics.first_token(name, use_model, elapsed)
                            produced = True
                        elif event.type == "usage" and event.usage is not None:
                            self.metrics.used(name, use_model, event.usage)
                        yield provider, use_model, event
                except errors.Problem:
                    raise
                except Exception as exc:
                    where = "mid-stream" if produced else "before streaming"
                    what = f"raised {type(exc).__name__} {where}"
                    raise self._faulty(provider, use_model, what, exc) from exc
                finally:
                    # closed now, not when collected: its ``finally`` blocks run at once
                    # (on Stop too, where this generator is itself closed)
                    aclose = getattr(source, "aclose", None)
                    if aclose is not None:
                        try:
                            await aclose()
                        except Exception:
                            log.warning("closing %s failed", self.describe(provider))
                self.metrics.call_done(name, use_model, None)
                return
            except errors.Problem as exc:
                self._failed(provider, use_model, exc, started, actor_id)
                if produced or not isinstance(exc, FALLBACK_ERRORS):
                    raise
                last = exc
                if len(chain) > 1:
                    log.warning(
                        "%s failed (%s); trying the next", self.describe(provider), exc.code
                    )
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
        actor_id: str | None = None,
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
            started = time.perf_counter()
            try:
                try:
                    result = await provider.complete(
                        messages,
                        model=use_model,
                        tools=tools if provider.supports_tools else None,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        **extra,
                    )
                except errors.Problem:
                    raise
                except Exception as exc:
                    what = f"raised {type(exc).__name__}"
                    raise self._faulty(provider, use_model, what, exc) from exc
                if not isinstance(result, Completion):
                    what = f"complete() returned {type(result).__name__}, not sdk.Completion"
                    raise self._faulty(provider, use_model, what, None)
            except errors.Problem as exc:
                self._failed(provider, use_model, exc, started, actor_id)
                if not isinstance(exc, FALLBACK_ERRORS):
                    raise
                last = exc
                continue
            self.metrics.call_done(name, use_model, result.usage)
            return result
        assert last is not None
        raise last
