"""Shared bits of the chat tests: a config pointing every character at a fake upstream,
and an SSE reader."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


def chat_config(
    url: str,
    *,
    enabled: tuple[str, ...] = ("chat",),
    provider_type: str = "openai",
    api_key: str | None = None,
    characters: dict[str, dict[str, Any]] | None = None,
    extra_plugins: dict[str, Any] | None = None,
    **chat: Any,
) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": provider_type, "base_url": url, "model": "fake-model"}
    if api_key is not None:
        provider["api_key"] = api_key
    table: dict[str, Any] = {
        "default_provider": "fake",
        "retry_backoff_seconds": 0.01,
        "max_retries": 1,
        "request_timeout_seconds": 5,
        "seed": 7,
        "providers": {"fake": provider},
        "characters": characters
        or {
            "lumina": {
                "name": "Lumina",
                "aliases": ["ルミナ", "るみな"],
                "provider": "fake",
                "persona": "You are Lumina, the host.",
                "talkativeness": 0.0,
            },
            "claris": {
                "name": "Claris",
                "aliases": ["クラリス"],
                "provider": "fake",
                "persona": "You are Claris, who explains.",
                "keywords": ["説明", "explain", "why"],
                "talkativeness": 0.0,
            },
            "nox": {
                "name": "Nox",
                "aliases": ["ノクス"],
                "provider": "fake",
                "persona": "You are Nox, the sceptic.",
                "keywords": ["調べて", "search", "news"],
                "talkativeness": 0.0,
            },
        },
    }
    table.update(chat)
    return {"plugins": {"enabled": list(enabled), "chat": table, **(extra_plugins or {})}}


async def read_sse(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    event, data = "", []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                events.append((event or "message", json.loads("\n".join(data))))
            event, data = "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


async def frames_until(ws: Any, predicate: Any, limit: float = 10) -> list[dict[str, Any]]:
    """WebSocket frames received until one matches ``predicate`` (that one included)."""
    out = []
    async with asyncio.timeout(limit):
        while True:
            frame = await ws.receive_json()
            out.append(frame)
            if predicate(frame):
                return out


def is_done(rid: str) -> Any:
    """Matches the frame that ends request ``rid``."""
    return lambda f: f.get("request_id") == rid and f["type"] in ("complete", "error")


async def history(client: Any, sid: str, h: dict[str, str]) -> list[dict[str, Any]]:
    """A session's messages, as the history route answers them."""
    r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
    assert r.status == 200, await r.text()
    return (await r.json())["messages"]


async def chat(client: Any, h: dict[str, str], **body: Any) -> dict[str, Any]:
    """One ``POST /api/v1/chat`` that must succeed; its answer."""
    r = await client.post("/api/v1/chat", json=body, headers=h)
    assert r.status == 200, await r.text()
    return await r.json()
