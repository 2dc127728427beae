"""The ratelimit plugin: per-route request limits and daily LLM token quotas."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from sdk import Event, Health, Middleware, Plugin, Request, events, hookimpl, services
from sdk.plugin import shared_redis_url

from .backends import Backend, MemoryBackend, RedisBackend
from .limiter import Limiter
from .limits import LIMIT_PATTERN

# on the aiohttp request of a chat route: its quota reservation (quota key, id)
RESERVATION_KEY = web.RequestKey("llmmc_ratelimit_reservation", tuple)

LIMIT_SCHEMA = {
    "type": "string",
    "pattern": LIMIT_PATTERN,
    "description": "requests per period, e.g. '10/minute', '5/second', '1000/day', '30/5 minutes'",
}


class RateLimitPlugin(Plugin):
    name = "ratelimit"
    version = "0.1.0"
    description = (
        "Request limits per route (in-process or shared through Redis) and daily LLM token quotas."
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            # no defaults: unset, both follow [kernel.bus] (Redis when the bus runs on it)
            "backend": {
                "enum": ["memory", "redis"],
                "description": 'unset: "redis" when [kernel.bus] runs on Redis (or redis_url is set), else "memory"',
            },
            "redis_url": {
                "type": "string",
                "description": 'empty: [kernel.bus] redis_url when the bus runs on Redis, else redis://127.0.0.1:6379/0; "none": no Redis',
            },
            "key_prefix": {
                "type": "string",
                "default": "llmmc:ratelimit:",
                "description": "prefix of every Redis key this plugin writes",
            },
            "redis_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 0.5},
            "backend_retry_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 1.0,
                "description": "after a Redis failure, how long to follow on_backend_error before trying Redis again",
            },
            "default": {**LIMIT_SCHEMA, "default": "200/minute"},
            "on_backend_error": {"enum": ["open", "closed"], "default": "open"},
            "routes": {
                "type": "object",
                "description": "limits by route key ('METHOD /path', as declared by the plugin)",
                "additionalProperties": LIMIT_SCHEMA,
                "default": {
                    "POST /api/v1/auth/register": "5/minute",
                    "POST /api/v1/auth/login": "10/minute",
                    "POST /api/v1/chat": "100/minute",
                    "POST /api/v1/chat/stream": "50/minute",
                },
            },
            "quotas": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "tokens_per_day": {
                        "type": "object",
                        "description": "LLM tokens per user per UTC day, by role; 0 = unlimited",
                        "additionalProperties": {"type": "integer", "minimum": 0},
                        "default": {"user": 200000, "admin": 0},
                    },
                    "reserve_tokens": {
                        "type": "integer",
                        "minimum": 0,
                        "default": 4096,
                        "description": "tokens a chat turn sets aside when it starts (its max_tokens and prompt), settled when it ends; turns are admitted while used + reserved < quota; 0: no reservations",
                    },
                    "reservation_seconds": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "default": 150,
                        "description": "a reservation no turn end settles (WebSocket turns) lapses after this; keep it above [plugins.chat] request_timeout_seconds",
                    },
                },
                "default": {
                    "tokens_per_day": {"user": 200000, "admin": 0},
                    "reserve_tokens": 4096,
                    "reservation_seconds": 150,
                },
            },
        },
    }

    limiter: Limiter
    _unsubscribe: Any = None

    @classmethod
    def process_local_settings(
        cls, config: dict[str, Any], kernel_config: dict[str, Any]
    ) -> list[str]:
        backend, url = resolve_backend(config, kernel_config)
        if backend != "redis":
            return ['[plugins.ratelimit] backend = "redis"']
        bus_url = shared_redis_url("", kernel_config)
        if bus_url and not is_loopback(bus_url) and is_loopback(url):
            return [
                "[plugins.ratelimit] redis_url (on this machine only while [kernel.bus] "
                "redis_url is remote; leave it unset to share the bus's Redis)"
            ]
        return []

    async def initialize(self) -> None:
        cfg = self.config
        backend: Backend
        kind, url = resolve_backend(cfg, self.context.kernel_config)
        if kind == "redis":
            backend = RedisBackend(
                url,
                cfg["key_prefix"],
                timeout=float(cfg["redis_timeout_seconds"]),
                retry_seconds=float(cfg["backend_retry_seconds"]),
            )
        else:
            backend = MemoryBackend()
        self.limiter = Limiter(
            backend,
            default=cfg["default"],
            routes=cfg["routes"],
            tokens_per_day=cfg["quotas"]["tokens_per_day"],
            on_backend_error=cfg["on_backend_error"],
            reserve_tokens=int(cfg["quotas"].get("reserve_tokens", 4096)),
            reservation_seconds=float(cfg["quotas"].get("reservation_seconds", 150)),
            logger=self.log,
            refusals=self.context.metrics.counter(
                "refusals",
                "Requests refused by a rate limit, a token quota or an unreachable backend",
                labels=("route", "reason"),
            ),
        )
        self.context.services.provide(services.RATELIMIT, self.limiter, plugin=self.name)
        self.context.services.provide(services.QUOTA, self.limiter, plugin=self.name)

    async def start(self) -> None:
        await self.limiter.backend.start()
        self._unsubscribe = self.context.bus.subscribe(events.LLM_USAGE, self._on_usage)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.limiter.backend.stop()

    async def _on_usage(self, event: Event) -> None:
        data = event.data
        tokens = 0
        for field in ("prompt_tokens", "completion_tokens"):
            value = data.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                tokens += value
        await self.limiter.record_usage(
            str(data.get("user_id") or ""), tokens, event.id, event.timestamp
        )

    async def health(self) -> Health:
        backend = self.limiter.backend
        await backend.probe()
        ok, detail = backend.status()
        checks = {
            "backend": resolve_backend(self.config, self.context.kernel_config)[0],
            "reachable": ok,
        }
        if ok:
            return Health("ok", detail, checks)
        policy = "allowing requests" if self.limiter.fail_open else "refusing requests with 503"
        return Health("degraded", f"{detail}; {policy}", checks)

    @hookimpl
    async def before_request(self, request: Request) -> dict[str, str] | None:
        route = request.route
        if route.rate_limit is None:
            return None
        headers, reservation = await self.limiter.check_turn(
            route.key, request.identity, request.client_ip, quota=route.rate_limit == "chat"
        )
        if reservation is not None:  # settled when the request ends (settle_turns)
            request.raw[RESERVATION_KEY] = reservation
        return headers

    @hookimpl
    def register_middleware(self) -> list[Middleware]:
        return [Middleware(self._settle_turns, order=95)]

    async def _settle_turns(self, raw: web.Request, handler: Any) -> web.StreamResponse:
        """A chat request's quota reservation is settled when it ends (a stream's too)."""
        try:
            return await handler(raw)  # type: ignore[no-any-return]
        finally:
            reservation = raw.get(RESERVATION_KEY)
            if reservation is not None:
                await asyncio.shield(self.limiter.settle(reservation))


LOCAL_REDIS = "redis://127.0.0.1:6379/0"  # an explicit backend = "redis" with no URL anywhere


def resolve_backend(config: dict[str, Any], kernel_config: dict[str, Any]) -> tuple[str, str]:
    """``(backend, redis_url)`` as configured, unset values following ``[kernel.bus]``:
    the bus's Redis when it runs on Redis, else counters in this process."""
    own = str(config.get("redis_url") or "")
    url = shared_redis_url(own, kernel_config)
    backend = config.get("backend") or ("redis" if url else "memory")
    if backend == "redis" and not url:
        url = LOCAL_REDIS
    return str(backend), url


def is_loopback(url: str) -> bool:
    """Whether a Redis URL names this machine only (127.0.0.0/8, ::1, localhost, a
    unix socket)."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or not parts.hostname:
        return True
    host = parts.hostname
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
