"""Small interfaces that one plugin publishes for others, without importing each other.

A plugin publishes an object with ``self.context.services.provide(NAME, obj)`` in its
``initialize``; another finds it with ``self.context.services.get(NAME)``, which returns
None when the providing plugin is not enabled or not running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .identity import Identity

RATELIMIT = "ratelimit"
# The storage plugin publishes the database (``sdk.Database``); plugins read it as
# ``self.context.database``.
DATABASE = "database"
# A metrics plugin publishes where every plugin's declared metrics live
# (``sdk.metrics.MetricsBackend``); the kernel connects them when it appears.
METRICS = "metrics"
LLM = "llm"
# The ratelimit plugin publishes its daily token quotas so that the auth plugin's
# GET /api/v1/auth/me can show them without importing it.
QUOTA = "quota"


@runtime_checkable
class RateLimiter(Protocol):
    """Published by the ratelimit plugin as ``"ratelimit"``."""

    async def check(
        self,
        route_key: str,
        identity: Identity | None,
        client_ip: str,
        *,
        quota: bool = False,
    ) -> dict[str, str]:
        """Count one hit against ``route_key``'s limit (e.g. ``"POST /api/v1/chat"``).

        Returns the RateLimit-* headers; raises ``TooManyRequests`` (code ``RATE_LIMITED``,
        or ``QUOTA_EXCEEDED`` when ``quota`` is true and the user's daily tokens are spent).
        """


@runtime_checkable
class QuotaService(Protocol):
    """Published by the ratelimit plugin as ``"quota"``."""

    async def usage(self, identity: Identity) -> dict[str, Any]:
        """``{"tokens_per_day": int, "used_today": int}`` for this UTC day; 0 tokens_per_day = unlimited."""


@runtime_checkable
class LLMService(Protocol):
    """Published by the chat plugin as ``"llm"``: one completion from a configured provider."""

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        provider: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        identity: Identity | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> str:
        """Return the assistant's text for OpenAI-style ``messages``; raises BadGateway/GatewayTimeout/ServiceUnavailable.

        ``json_schema``: ask for one JSON value valid against this schema. The embedded
        ``llama_cpp`` provider constrains its output to it (a grammar), ``openai`` sends it
        as ``response_format``; other providers may ignore it: validate the answer."""


class Services:
    """Registry of published interfaces; the kernel hides those of plugins that are not running."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, Any]] = {}
        self._running: set[str] = set()

    def provide(self, name: str, obj: Any, *, plugin: str = "") -> None:
        self._items[name] = (plugin, obj)

    def get(self, name: str) -> Any:
        entry = self._items.get(name)
        if entry is None:
            return None
        plugin, obj = entry
        if plugin and plugin not in self._running:
            return None
        return obj

    # kernel side
    def set_running(self, plugin: str, running: bool) -> None:
        if running:
            self._running.add(plugin)
        else:
            self._running.discard(plugin)
