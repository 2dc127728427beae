"""Helpers for the ratelimit tests: a tiny plugin with a chat-class route and a route that
asks the ratelimit service like the chat plugin's WebSocket does for each message."""

from __future__ import annotations

from typing import Any

from sdk import Plugin, Request, Route, errors, hookimpl, services
from tests.serverproc import ThrowawayRedis, unique_prefix

GENEROUS = "100000/minute"


class ChatLikePlugin(Plugin):
    """``POST /test/chat`` is a chat route (limits + token quota); ``POST /test/ws-message``
    is exempt from route limits and counts through the ``ratelimit`` service instead."""

    name = "chatlike"
    config_schema = {"type": "object"}

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def chat(req: Request) -> Any:
            return {"ok": True}

        async def ws_message(req: Request) -> Any:
            limiter = self.context.services.get(services.RATELIMIT)
            if limiter is None:
                raise errors.ServiceUnavailable("no limiter")
            assert isinstance(limiter, services.RateLimiter)
            headers = await limiter.check(
                "POST /api/v1/chat", req.identity, req.client_ip, quota=True
            )
            return {"ok": True, "headers": headers}

        async def quota(req: Request) -> Any:
            service = self.context.services.get(services.QUOTA)
            return await service.usage(req.require_identity())

        return [
            Route("GET", "/test/quota", quota, auth="user", rate_limit=None),
            Route("POST", "/test/chat", chat, auth="user", rate_limit="chat"),
            Route("POST", "/test/ws-message", ws_message, auth="user", rate_limit=None),
        ]


def rl_config(
    ratelimit: dict[str, Any] | None = None,
    kernel: dict[str, Any] | None = None,
    enabled: tuple[str, ...] = ("ratelimit", "chatlike"),
) -> dict[str, Any]:
    rl: dict[str, Any] = {"default": GENEROUS, "routes": {}}
    rl.update(ratelimit or {})
    cfg: dict[str, Any] = {"plugins": {"enabled": list(enabled), "required": [], "ratelimit": rl}}
    if kernel:
        cfg["kernel"] = kernel
    return cfg


__all__ = ["GENEROUS", "ChatLikePlugin", "ThrowawayRedis", "rl_config", "unique_prefix"]
