"""Echo: an LLM provider type written the way any third party would, with only the SDK.

It needs no model and no network: it answers with the reply of the first rule whose
keyword appears in the last user message, else with that message echoed back, and streams
the answer word by word like a real model would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from sdk import LLMProvider, Plugin, StreamEvent, Usage, hookimpl
from sdk.llm import estimate_tokens, messages_text


class EchoProvider(LLMProvider):
    """``[plugins.chat.providers.<name>]`` with ``type = "echo"``; settings: ``prefix``
    (put before an echoed message, default "You said: "), ``replies`` (a table keyword →
    reply, matched case-insensitively), ``model`` (reported as the model, default
    "echo-1")."""

    type = "echo"
    supports_tools = False

    @property
    def model(self) -> str:
        return str(self.settings.get("model") or "echo-1")

    def answer(self, messages: list[dict[str, Any]]) -> str:
        last = next(
            (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        wanted = last.casefold()
        for keyword, reply in (self.settings.get("replies") or {}).items():
            if str(keyword).casefold() in wanted:
                return str(reply)
        return str(self.settings.get("prefix", "You said: ")) + last

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        words = re.findall(r"\S+\s*", self.answer(messages))
        finish = "stop"
        if max_tokens is not None and len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
        for word in words:
            yield StreamEvent("delta", text=word)
        yield StreamEvent(
            "usage",
            usage=Usage(
                estimate_tokens(messages_text(messages)),
                estimate_tokens("".join(words)),
                estimated=True,
            ),
        )
        yield StreamEvent("finish", finish_reason=finish)


class EchoPlugin(Plugin):
    name = "echo"
    version = "1.0.0"
    description = "A rule-based LLM provider type (echo) for characters"
    config_schema = {"type": "object", "additionalProperties": False}

    @hookimpl
    def register_llm_providers(self) -> list[type[LLMProvider]]:
        return [EchoProvider]
