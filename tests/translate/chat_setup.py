"""A chat plugin pointed at the fake OpenAI server, for the tests where characters or the
llm provider go through chat."""

from __future__ import annotations

from typing import Any


def chat_table(openai_url: str) -> dict[str, Any]:
    return {
        "default_provider": "fake",
        "max_retries": 0,
        "request_timeout_seconds": 5,
        "providers": {"fake": {"type": "openai", "base_url": openai_url, "model": "fake-model"}},
        "characters": {
            "lumina": {
                "name": "Lumina",
                "provider": "fake",
                "persona": "You are Lumina, the host.",
                "talkativeness": 0.0,
            }
        },
    }


def with_chat(
    openai_url: str, enabled: tuple[str, ...], **tables: dict[str, Any]
) -> dict[str, Any]:
    return {
        "plugins": {
            "enabled": ["chat", *enabled],
            "chat": chat_table(openai_url),
            **tables,
        }
    }
