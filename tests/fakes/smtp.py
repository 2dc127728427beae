"""A real SMTP server (aiosmtpd) that keeps every mail it receives, for the reset-by-email
tests. It runs in its own thread, as aiosmtpd's Controller does."""

from __future__ import annotations

import asyncio
import email
import queue
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.serverproc import free_port


class _Keep:
    def __init__(self, inbox: queue.Queue[Message]) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inbox.put(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


class FakeSMTP:
    def __init__(self) -> None:
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.port = free_port()
        self._controller = Controller(_Keep(self.inbox), hostname="127.0.0.1", port=self.port)

    def start(self) -> FakeSMTP:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def next_mail(self, timeout: float = 10) -> Message:
        return await asyncio.to_thread(self.inbox.get, True, timeout)

    def settings(self, **over: Any) -> dict[str, Any]:
        """``[plugins.auth.email]`` pointing at this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "security": "none",
            "from_address": "LlmMultiChat <noreply@example.com>",
            **over,
        }
