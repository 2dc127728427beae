"""Contributions reach plugins that start earlier, and the kernel announces states."""

from __future__ import annotations

from typing import Any

from sdk import Plugin, hookimpl
from sdk.events import Event


class Early(Plugin):
    """Starts first and, like chat, collects what others contribute in its start()."""

    name = "early"

    async def initialize(self) -> None:
        self.seen: list[Any] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

        async def on_event(event: Event) -> None:
            self.events.append((event.topic, event.data))

        self.context.bus.subscribe("kernel.*", on_event)

    async def start(self) -> None:
        self.seen = await self.context.hooks.call("register_characters")


class Late(Plugin):
    name = "late"
    optional = ("early",)  # ordered after early

    @hookimpl
    def register_characters(self) -> list[dict[str, Any]]:
        return [{"id": "guest", "name": "Guest", "persona": "A visitor."}]


async def test_register_hooks_reach_plugins_that_start_later(llmmc: Any) -> None:
    client = await llmmc(
        {"plugins": {"enabled": ["early", "late"]}}, plugins={"early": Early, "late": Late}
    )
    early = client.kernel.records["early"].instance
    assert early.seen == [[{"id": "guest", "name": "Guest", "persona": "A visitor."}]]
    states = [d for t, d in early.events if t == "kernel.plugin.state"]
    assert {"plugin": "late", "state": "RUNNING", "error": ""} in states
    assert early.events[-1][0] == "kernel.started"
    assert early.events[-1][1]["plugins"]["late"] == "RUNNING"
