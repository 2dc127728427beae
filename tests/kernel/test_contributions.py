"""Contributions reach plugins that start earlier, and the kernel announces states."""

from __future__ import annotations

from typing import Any

from sdk import LLMProvider, Plugin, StreamEvent, hookimpl
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


class Echo(LLMProvider):
    type = "echo-test"

    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, temperature=None):  # type: ignore[no-untyped-def]
        yield StreamEvent("delta", text=messages[-1]["content"])


class Typeless(LLMProvider):
    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, temperature=None):  # type: ignore[no-untyped-def]
        yield StreamEvent("delta", text="")


def providing(plugin_name: str, answer: Any, after: tuple[str, ...] = ()) -> type[Plugin]:
    class Providing(Plugin):
        name = plugin_name
        optional = after

        @hookimpl
        def register_llm_providers(self) -> Any:
            return answer

    return Providing


async def test_llm_provider_contributions_are_checked_and_blame_the_plugin(llmmc: Any) -> None:
    plugins = {
        "good": providing("good", [Echo]),
        "twin": providing("twin", [Echo], after=("good",)),
        "mapping": providing("mapping", {"echo-test": Echo}),
        "stranger": providing("stranger", [dict]),
        "typeless": providing("typeless", [Typeless]),
        "bare": providing("bare", [LLMProvider]),
    }
    client = await llmmc({"plugins": {"enabled": list(plugins)}}, plugins=plugins)
    h = client.auth_headers("root", admin=True)
    states = {}
    for name in plugins:
        r = await client.get(f"/api/v1/plugins/{name}", headers=h)
        body = await r.json()
        states[name] = (body["state"], body["error"])
    assert states["good"] == ("RUNNING", "")
    assert states["twin"][0] == "ERROR"
    assert "plugin 'twin' registers LLM provider type 'echo-test'" in states["twin"][1]
    assert "which plugin 'good' already registered" in states["twin"][1]
    assert states["mapping"][0] == "ERROR"
    assert "plugin 'mapping' returned dict, not a list" in states["mapping"][1]
    assert states["stranger"][0] == "ERROR"
    assert "plugin 'stranger'" in states["stranger"][1]
    assert "is not a subclass of sdk.LLMProvider" in states["stranger"][1]
    assert "Typeless sets no provider type" in states["typeless"][1]
    assert "LLMProvider sets no provider type" in states["bare"][1]
    # only what passed the check is offered to the plugins that collect provider types
    offered = await client.kernel.hooks.call("register_llm_providers")
    assert offered == [[Echo]]
