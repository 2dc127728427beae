"""Sample plugins for the kernel's own tests, installed for subprocess tests through a
real entry point (see ``tests/kernel/conftest.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sdk import Plugin, Request, Route, hookimpl
from sdk.events import Event

PHASES = ["none", "initialize", "start", "stop", "register_routes"]


class Crasher(Plugin):
    """Raises in the lifecycle phase its config names."""

    name = "crasher"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"fail_in": {"enum": PHASES, "default": "none"}},
    }

    def _maybe_fail(self, phase: str) -> None:
        if self.config["fail_in"] == phase:
            raise RuntimeError(f"crasher fails in {phase}")

    async def initialize(self) -> None:
        self._maybe_fail("initialize")

    async def start(self) -> None:
        self._maybe_fail("start")

    async def stop(self) -> None:
        self._maybe_fail("stop")

    @hookimpl
    def register_routes(self) -> list[Route]:
        self._maybe_fail("register_routes")

        async def hello(req: Request) -> dict[str, Any]:
            return {"plugin": "crasher"}

        return [Route("GET", "/api/v1/crasher/hello", hello, auth="public")]


class Echoer(Plugin):
    """Publishes events on request and remembers the events it receives."""

    name = "echoer"
    config_schema = {"type": "object"}

    async def initialize(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.context.bus.subscribe("sample.*", self.on_event)

    async def on_event(self, event: Event) -> None:
        self.received.append({"topic": event.topic, "data": event.data, "source": event.source})

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def publish(req: Request) -> dict[str, Any]:
            await self.context.bus.publish(req.body["topic"], req.body["data"])
            return {"published": True}

        async def events(req: Request) -> dict[str, Any]:
            return {"events": self.received}

        async def slow(req: Request) -> dict[str, Any]:
            await asyncio.sleep(float(req.query.get("seconds", "1")))
            return {"slept": True}

        schema = {
            "type": "object",
            "required": ["topic", "data"],
            "properties": {"topic": {"type": "string"}, "data": {"type": "object"}},
        }
        return [
            Route("POST", "/api/v1/echoer/publish", publish, auth="public", request_schema=schema),
            Route("GET", "/api/v1/echoer/events", events, auth="public"),
            Route("GET", "/api/v1/echoer/slow", slow, auth="public"),
        ]


class NeedsCrasher(Plugin):
    name = "needs_crasher"
    requires = ("crasher",)

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def hello(req: Request) -> dict[str, Any]:
            return {"plugin": self.name}

        return [Route("GET", "/api/v1/needs_crasher/hello", hello, auth="public")]


class SlowStart(Plugin):
    """Its start() waits until the file its config names exists (a model that loads)."""

    name = "slowstart"
    config_schema = {
        "type": "object",
        "required": ["wait_for"],
        "properties": {"wait_for": {"type": "string"}},
    }

    async def start(self) -> None:
        marker = Path(self.config["wait_for"])
        # a file appearing sets no event: poll for it
        while not await asyncio.to_thread(marker.exists):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def hello(req: Request) -> dict[str, Any]:
            return {"plugin": self.name}

        return [Route("GET", "/api/v1/slowstart/hello", hello, auth="public")]
