"""The events chat publishes on the bus. Publishing is best effort: a reply already
stored must not fail because a subscriber or the bus did."""

from __future__ import annotations

import logging
from typing import Any

from sdk import EventBus, Identity, Usage, events

from .store import Message


class Publisher:
    def __init__(self, bus: EventBus, log: logging.Logger) -> None:
        self.bus = bus
        self.log = log

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        try:
            await self.bus.publish(topic, data)
        except Exception as exc:
            self.log.warning("could not publish %s: %s", topic, type(exc).__name__)

    async def usage(
        self,
        identity: Identity | None,
        usage: Usage,
        *,
        provider: str,
        model: str,
        character: str | None,
    ) -> None:
        if identity is None:
            return
        await self.publish(
            events.LLM_USAGE,
            {
                "user_id": identity.user_id,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "provider": provider,
                "model": model,
                "character": character,
            },
        )

    async def message(self, identity: Identity, message: Message) -> None:
        await self.publish(
            events.CHAT_MESSAGE_CREATED,
            {
                "user_id": identity.user_id,
                "session_id": message.session_id,
                "message_id": message.message_id,
                "role": message.role,
                "character": message.character,
                "content": message.content,
            },
        )

    async def session_deleted(self, user_id: str, session_id: str) -> None:
        await self.publish(events.SESSION_DELETED, {"user_id": user_id, "session_id": session_id})
