"""Shared helpers of the memory tests."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sdk import Plugin

BASE = "/api/v1/memory"


def memory_plugin(client: Any) -> Any:
    return client.kernel.records["memory"].instance


async def settle(client: Any) -> None:
    """Wait for the memory plugin's background work (event processing)."""
    await memory_plugin(client).idle()


class FakeLLMPlugin(Plugin):
    """Publishes the ``llm`` service the way the chat plugin does, backed by a FakeOpenAI
    server over real HTTP (for tests that must not depend on the chat plugin)."""

    name = "fakellm"
    config_schema = {"type": "object", "properties": {"base_url": {"type": "string"}}}

    async def initialize(self) -> None:
        self.context.services.provide("llm", self, plugin=self.name)

    async def complete(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                self.config["base_url"] + "/chat/completions",
                json={"model": "gpt-4o-mini", "messages": messages},
            ) as resp:
                body = await resp.json()
        return str(body["choices"][0]["message"]["content"])


@pytest.fixture
async def mem(llmmc: Any) -> Any:
    """A kernel with only the memory plugin, hashing embedder (fast, no model)."""
    return await llmmc(
        {"plugins": {"enabled": ["memory"], "memory": {"embedder": "hashing", "redis_url": "none"}}}
    )
