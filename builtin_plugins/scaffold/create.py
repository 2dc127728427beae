"""``llmmultichat plugin new NAME [--kind provider|tool|routes]``: a plugin package that
installs, is discovered through its entry point, and whose generated tests pass.

``routes`` (the default): a route and a tool. ``tool``: a tool characters call and clients
run through ``POST /api/v1/plugins/{name}/execute``. ``provider``: an LLM provider type
(``sdk.LLMProvider`` with streaming) that chat characters speak through."""

from __future__ import annotations

import re
from pathlib import Path

KINDS = ("routes", "tool", "provider")

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "llmmultichat-{dash}"
version = "0.1.0"
description = "The {name} plugin for LlmMultiChat"
requires-python = ">=3.11"
dependencies = ["llmmultichat"]

[project.entry-points."llmmultichat.plugins"]
{name} = "llmmc_{name}.plugin:{cls}"

[tool.setuptools]
packages = ["llmmc_{name}"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

ROUTES_PLUGIN = '''"""The {name} plugin: a greeting route and an echo tool. Make it yours."""

from __future__ import annotations

from typing import Any

from sdk import Plugin, Request, Route, Tool, ToolCall, hookimpl


class {cls}(Plugin):
    name = "{name}"
    version = "0.1.0"
    description = "Says hello"
    config_schema = {{
        "type": "object",
        "additionalProperties": False,
        "properties": {{"greeting": {{"type": "string", "default": "Hello"}}}},
    }}

    @hookimpl
    def register_routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/api/v1/{name}/hello",
                self.hello,
                auth="user",
                summary="Greet the caller",
                response_schema={{"type": "object", "required": ["message"]}},
            )
        ]

    @hookimpl
    def register_tools(self) -> list[Tool]:
        return [
            Tool(
                name="{name}_echo",
                description="Repeat the given text",
                parameters={{
                    "type": "object",
                    "required": ["text"],
                    "properties": {{"text": {{"type": "string", "maxLength": 1000}}}},
                    "additionalProperties": False,
                }},
                result={{"type": "object", "required": ["text"]}},
                handler=self.echo,
            )
        ]

    async def hello(self, req: Request) -> dict[str, Any]:
        identity = req.require_identity()
        return {{"message": f"{{self.config['greeting']}}, {{identity.user_id}}!"}}

    async def echo(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        return {{"text": params["text"]}}
'''

ROUTES_TEST = '''"""Runs the plugin in a real LlmMultiChat kernel (the ``llmmc`` fixture comes with the SDK)."""


async def test_hello_greets_the_caller(llmmc):
    client = await llmmc({{"plugins": {{"enabled": ["{name}"], "{name}": {{"greeting": "Hi"}}}}}})
    r = await client.get("/api/v1/{name}/hello", headers=client.auth_headers("ada"))
    assert r.status == 200
    assert (await r.json()) == {{"message": "Hi, ada!"}}


async def test_hello_needs_a_user(llmmc):
    client = await llmmc({{"plugins": {{"enabled": ["{name}"]}}}})
    r = await client.get("/api/v1/{name}/hello")
    assert r.status == 401


async def test_echo_tool(llmmc):
    client = await llmmc({{"plugins": {{"enabled": ["{name}"]}}}})
    r = await client.post(
        "/api/v1/plugins/{name}/execute",
        json={{"tool": "{name}_echo", "params": {{"text": "ping"}}}},
        headers=client.auth_headers("ada"),
    )
    assert r.status == 200
    assert (await r.json())["result"] == {{"text": "ping"}}
'''

ROUTES_README = """# llmmultichat-{dash}

A plugin for LlmMultiChat.

    pip install -e .
    pytest

Enable it in `plugins.toml`:

    [plugins]
    enabled = ["auth", "{name}"]

    [plugins.{name}]
    greeting = "Hello"
"""


# The tool and provider templates name the plugin __NAME__ (its class __CLS__, the
# provider's __PCLS__, the distribution llmmultichat-__DASH__): filled in by replacement, not str.format, so their
# code keeps its braces.

TOOL_PLUGIN = '''"""The __NAME__ plugin: a tool that characters call through function calling
and that clients run with ``POST /api/v1/plugins/__NAME__/execute``. Make it yours."""

from __future__ import annotations

from typing import Any

from sdk import Plugin, Tool, ToolCall, errors, hookimpl


class __CLS__(Plugin):
    name = "__NAME__"
    version = "0.1.0"
    description = "Counts the words of a text"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"max_words": {"type": "integer", "minimum": 1, "default": 1000}},
    }

    @hookimpl
    def register_tools(self) -> list[Tool]:
        return [
            Tool(
                name="__NAME___count_words",
                # what the model reads to decide when to call it: say what it is for
                description="Count the words of a text",
                # checked by the kernel before the handler runs; the model sees it too
                parameters={
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": {"type": "string", "maxLength": 100000}},
                    "additionalProperties": False,
                },
                result={"type": "object", "required": ["words"]},
                handler=self.count_words,
            )
        ]

    async def count_words(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        """``call.identity``: who asked (None for none); ``call.origin``: "api" or "llm"."""
        words = params["text"].split()
        if len(words) > self.config["max_words"]:
            # a Problem reaches the client (or the model) as an error with this code
            raise errors.ValidationFailed(
                f"more than {self.config['max_words']} words", code="TOO_MANY_WORDS"
            )
        return {"words": len(words)}
'''

TOOL_TEST = '''"""Runs the plugin in a real LlmMultiChat kernel (the ``llmmc`` fixture comes with the SDK)."""

EXECUTE = "/api/v1/plugins/__NAME__/execute"


async def test_the_tool_counts_words(llmmc):
    client = await llmmc({"plugins": {"enabled": ["__NAME__"]}})
    r = await client.post(
        EXECUTE,
        json={"tool": "__NAME___count_words", "params": {"text": "one two three"}},
        headers=client.auth_headers("ada"),
    )
    assert r.status == 200
    assert (await r.json())["result"] == {"words": 3}


async def test_params_are_checked_against_the_schema(llmmc):
    client = await llmmc({"plugins": {"enabled": ["__NAME__"]}})
    r = await client.post(
        EXECUTE,
        json={"tool": "__NAME___count_words", "params": {"words": "no text"}},
        headers=client.auth_headers("ada"),
    )
    assert r.status == 422


async def test_the_configured_limit_holds(llmmc):
    client = await llmmc({"plugins": {"enabled": ["__NAME__"], "__NAME__": {"max_words": 2}}})
    r = await client.post(
        EXECUTE,
        json={"tool": "__NAME___count_words", "params": {"text": "one two three"}},
        headers=client.auth_headers("ada"),
    )
    assert r.status == 422
    assert (await r.json())["code"] == "TOO_MANY_WORDS"


async def test_the_tool_is_listed(llmmc):
    client = await llmmc({"plugins": {"enabled": ["__NAME__"]}})
    r = await client.get("/api/v1/plugins/__NAME__", headers=client.auth_headers("ada"))
    assert r.status == 200
    assert [t["name"] for t in (await r.json())["tools"]] == ["__NAME___count_words"]
'''

TOOL_README = """# llmmultichat-__DASH__

A tool plugin for LlmMultiChat: `__NAME___count_words`, which characters call through
function calling and clients run with `POST /api/v1/plugins/__NAME__/execute`.

    pip install -e .
    pytest

Enable it in `plugins.toml` (a character calls it when its `tools` list allows it):

    [plugins]
    enabled = ["auth", "chat", "__NAME__"]

    [plugins.__NAME__]
    max_words = 1000
"""

PROVIDER_PLUGIN = '''"""The __NAME__ plugin: an LLM provider type ``__NAME__`` that chat characters speak
through. It echoes the user's last message word by word: replace the body of ``stream``
with calls to your model. Configure one provider of this type in ``plugins.toml``::

    [plugins.chat.providers.mine]
    type = "__NAME__"
    model = "__NAME__-1"
    prefix = "Heard"        # any other key reaches the provider in self.settings
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sdk import LLMProvider, Plugin, StreamEvent, Usage, hookimpl
from sdk.llm import estimate_tokens, messages_text


class __PCLS__(LLMProvider):
    # the name a [plugins.chat.providers.<name>] table gives as its type
    type = "__NAME__"
    # settings that must be set for the provider to serve (503 PROVIDER_UNAVAILABLE else)
    required_settings = ()
    # True: the chat plugin passes the character's tools as flat dicts
    # {"name", "description", "parameters"} and runs the tool_call events it gets back
    supports_tools = False

    async def start(self) -> None:
        """Open clients and connections here (called when the chat plugin starts)."""

    async def close(self) -> None:
        """Close what start opened."""

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Yield ``delta`` events as text arrives, then ``usage`` and ``finish``.

        A failing upstream is a ``sdk.errors`` Problem (``BadGateway``,
        ``GatewayTimeout``, ``ServiceUnavailable``: the character's next provider is
        tried while nothing was streamed). When the user stops the reply, the task is
        cancelled at the await it waits on, or this generator is closed at its ``yield``:
        release what the call holds in ``finally`` and let the exception go on."""
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        prefix = str(self.settings.get("prefix") or "")
        words = f"{prefix} {last}".split()
        limit = max_tokens or len(words)
        sent = 0
        try:
            for word in words[:limit]:
                await asyncio.sleep(0)  # a real provider awaits its upstream here
                yield StreamEvent("delta", text=word if sent == 0 else " " + word)
                sent += 1
        finally:
            pass  # release per-call resources here (an HTTP response, a lock)
        prompt = estimate_tokens(messages_text(messages))
        yield StreamEvent("usage", usage=Usage(prompt, sent, estimated=True))
        yield StreamEvent("finish", finish_reason="length" if len(words) > limit else "stop")


class __CLS__(Plugin):
    name = "__NAME__"
    version = "0.1.0"
    description = "An LLM provider type for chat characters"

    @hookimpl
    def register_llm_providers(self) -> list[type[LLMProvider]]:
        return [__PCLS__]
'''

PROVIDER_TEST = '''"""The provider on its own, and chat characters speaking through it in a real
LlmMultiChat kernel (the ``llmmc`` fixture comes with the SDK)."""

import json

from llmmc___NAME__.plugin import __PCLS__

CONFIG = {
    "plugins": {
        "enabled": ["chat", "__NAME__"],
        "chat": {
            "default_provider": "mine",
            "providers": {
                "mine": {"type": "__NAME__", "model": "__NAME__-1", "prefix": "Heard"}
            },
            "characters": {"robot": {"name": "Robot", "provider": "mine"}},
        },
    }
}


async def test_stream_yields_words_then_usage_and_finish():
    provider = __PCLS__("mine", {"prefix": "Heard"})
    events = [e async for e in provider.stream([{"role": "user", "content": "hello there"}])]
    assert "".join(e.text for e in events if e.type == "delta") == "Heard hello there"
    assert [e.type for e in events[-2:]] == ["usage", "finish"]
    assert events[-1].finish_reason == "stop"


async def test_a_character_answers_over_rest(llmmc):
    client = await llmmc(CONFIG)
    r = await client.post(
        "/api/v1/chat", json={"user_input": "hello there"}, headers=client.auth_headers("ada")
    )
    assert r.status == 200
    body = await r.json()
    assert body["character"] == "robot" and body["response"] == "Heard hello there"


async def test_the_reply_streams_over_sse(llmmc):
    client = await llmmc(CONFIG)
    async with client.stream(
        "POST",
        "/api/v1/chat/stream",
        json={"user_input": "hello there"},
        headers=client.auth_headers("ada"),
    ) as resp:
        assert resp.status == 200
        text = (await resp.read()).decode()
    events = []
    for block in text.split("\\n\\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    assert "".join(d["delta"] for e, d in events if e == "chunk") == "Heard hello there"
    assert events[-1][0] == "done"


async def test_the_reply_streams_over_websocket(llmmc):
    client = await llmmc(CONFIG)
    async with client.ws_connect("/ws/chat", headers=client.auth_headers("ada")) as ws:
        await ws.send_json({"type": "chat", "message": "hello there", "request_id": "r1"})
        frames = []
        while not frames or frames[-1]["type"] not in ("complete", "error"):
            frames.append(await ws.receive_json(timeout=10))
    assert "".join(f["data"] for f in frames if f["type"] == "chunk") == "Heard hello there"
    assert frames[-1]["type"] == "complete"
'''

PROVIDER_README = """# llmmultichat-__DASH__

An LLM provider plugin for LlmMultiChat: the provider type `__NAME__`.

    pip install -e .
    pytest

Enable it in `plugins.toml` and give a character a provider of its type:

    [plugins]
    enabled = ["auth", "chat", "__NAME__"]

    [plugins.chat.providers.mine]
    type = "__NAME__"
    model = "__NAME__-1"

    [plugins.chat.characters.robot]
    name = "Robot"
    provider = "mine"
"""


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key.upper()}__", value)
    return template


def create_plugin(name: str, directory: str | Path = ".", kind: str = "routes") -> Path:
    """Write the package ``llmmultichat-NAME`` of a plugin of ``kind`` ("routes", "tool"
    or "provider") under ``directory``; returns its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,40}", name):
        raise ValueError(
            f"plugin name {name!r}: use lower-case letters, digits and underscores, starting with a letter"
        )
    if kind not in KINDS:
        raise ValueError(f"plugin kind {kind!r}: use one of {', '.join(KINDS)}")
    dash = name.replace("_", "-")
    root = Path(directory) / f"llmmultichat-{dash}"
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    pkg = root / f"llmmc_{name}"
    title = "".join(part.capitalize() for part in name.split("_"))
    values = {"name": name, "dash": dash, "cls": f"{title}Plugin", "pcls": f"{title}Provider"}
    if kind == "routes":
        plugin = ROUTES_PLUGIN.format(**values)
        test = ROUTES_TEST.format(**values)
        readme = ROUTES_README.format(**values)
    else:
        templates = {
            "tool": (TOOL_PLUGIN, TOOL_TEST, TOOL_README),
            "provider": (PROVIDER_PLUGIN, PROVIDER_TEST, PROVIDER_README),
        }[kind]
        plugin, test, readme = (_fill(t, values) for t in templates)
    (root / "tests").mkdir(parents=True)
    pkg.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(**values))
    (root / "README.md").write_text(readme)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(plugin)
    (root / "tests" / f"test_{name}.py").write_text(test)
    return root
