"""``llmmultichat plugin new NAME``: a plugin package that installs, is discovered
through its entry point, and whose generated test passes."""

from __future__ import annotations

import re
from pathlib import Path

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

PLUGIN = '''"""The {name} plugin: a greeting route and an echo tool. Make it yours."""

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

TEST = '''"""Runs the plugin in a real LlmMultiChat kernel (the ``llmmc`` fixture comes with the SDK)."""


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

README = """# llmmultichat-{dash}

A plugin for LlmMultiChat.

    pip install -e .
    pytest

Enable it in `plugins.toml`:

    [plugins]
    enabled = ["auth", "{name}"]

    [plugins.{name}]
    greeting = "Hello"
"""


def create_plugin(name: str, directory: str | Path = ".") -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,40}", name):
        raise ValueError(
            f"plugin name {name!r}: use lower-case letters, digits and underscores, starting with a letter"
        )
    dash = name.replace("_", "-")
    root = Path(directory) / f"llmmultichat-{dash}"
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    cls = "".join(part.capitalize() for part in name.split("_")) + "Plugin"
    pkg = root / f"llmmc_{name}"
    (root / "tests").mkdir(parents=True)
    pkg.mkdir()
    values = {"name": name, "dash": dash, "cls": cls}
    (root / "pyproject.toml").write_text(PYPROJECT.format(**values))
    (root / "README.md").write_text(README.format(**values))
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(PLUGIN.format(**values))
    (root / "tests" / f"test_{name}.py").write_text(TEST.format(**values))
    return root
