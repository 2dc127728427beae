"""What the chat plugin measures (``llmmc_chat_*`` on ``GET /metrics``): replies, LLM
calls, tokens and time to first token by provider and model, upstream errors, and the
WebSockets. Provider and model labels come from the configuration, never from a client."""

from __future__ import annotations

from sdk.llm import Usage
from sdk.metrics import Metrics

# Seconds to the first token: from a local model's fraction of a second to a cold
# remote one.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)


class ChatMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.turns = metrics.counter(
            "turns", "Replies the characters gave, by provider and model", ("provider", "model")
        )
        self.llm_calls = metrics.counter(
            "llm_calls",
            "Calls to LLM providers (each fallback and tool round is one), by outcome: ok or error",
            ("provider", "model", "outcome"),
        )
        self.tokens = metrics.counter(
            "tokens",
            "LLM tokens used, by provider, model and kind (prompt or completion)",
            ("provider", "model", "kind"),
        )
        self.ttft = metrics.histogram(
            "time_to_first_token_seconds",
            "From sending a streaming call to its first text or tool call, by provider and model",
            ("provider", "model"),
            buckets=TTFT_BUCKETS,
        )
        self.upstream_errors = metrics.counter(
            "upstream_errors",
            "LLM calls that failed, by provider, model and error code "
            "(UPSTREAM_ERROR, UPSTREAM_TIMEOUT, PROVIDER_UNAVAILABLE, ...)",
            ("provider", "model", "code"),
        )
        self.websockets = metrics.gauge("websockets_open", "Chat WebSockets open now")
        self.websocket_messages = metrics.counter(
            "websocket_messages",
            "Chat WebSocket messages, by direction: received or sent",
            ("direction",),
        )

    def first_token(self, provider: str, model: str, seconds: float) -> None:
        self.ttft.labels(provider=provider, model=model).observe(seconds)

    def call_done(self, provider: str, model: str, usage: Usage | None) -> None:
        self.llm_calls.labels(provider=provider, model=model, outcome="ok").inc()
        if usage is not None:
            self.used(provider, model, usage)

    def used(self, provider: str, model: str, usage: Usage) -> None:
        if usage.prompt_tokens:
            self.tokens.labels(provider=provider, model=model, kind="prompt").inc(
                usage.prompt_tokens
            )
        if usage.completion_tokens:
            self.tokens.labels(provider=provider, model=model, kind="completion").inc(
                usage.completion_tokens
            )

    def call_failed(self, provider: str, model: str, code: str) -> None:
        self.llm_calls.labels(provider=provider, model=model, outcome="error").inc()
        self.upstream_errors.labels(provider=provider, model=model, code=code).inc()
