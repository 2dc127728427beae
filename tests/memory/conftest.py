"""Shared helpers of the memory tests."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from builtin_plugins.storage.testing import fresh_schema_url
from sdk import Plugin

BASE = "/api/v1/memory"


def memory_plugin(client: Any) -> Any:
    return client.plugin("memory")


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


@pytest.fixture(params=["sql", "index", "pg-scan", "pg-index"])
async def mem(llmmc: Any, request: Any) -> Any:
    """A kernel with only the memory plugin, hashing embedder (fast, no model); every
    test using it runs four times, which must all give the same answers: on DuckDB
    searching with SQL (vectors and keywords) and through the in-process indexes
    (index_min_vectors = 1, keyword postings), and on PostgreSQL scanning the vectors read
    from it and through the index loaded from it (keywords in SQL on both)."""
    config: dict[str, Any] = {"embedder": "hashing", "redis_url": "none"}
    if request.param.endswith("index"):
        config["index_min_vectors"] = 1
    else:
        config["index_max_mb"] = 0
        config["keyword_index_mb"] = 0  # (DuckDB: BM25 in SQL too)
    url = ""
    if request.param.startswith("pg"):
        url = fresh_schema_url(request.getfixturevalue("postgres_database"))
    return await llmmc({"plugins": {"enabled": ["memory"], "memory": config}}, database_url=url)


@pytest.fixture(params=["duckdb", "pg"])
def memory_kernel(llmmc: Any, request: Any) -> Any:
    """``await memory_kernel(**memory_config)``: a kernel with only the memory plugin
    (hashing embedder, no Redis, plus the given settings) on DuckDB, then on PostgreSQL."""

    async def make(**config: Any) -> Any:
        url = ""
        if request.param == "pg":
            url = fresh_schema_url(request.getfixturevalue("postgres_database"))
        settings = {"embedder": "hashing", "redis_url": "none", **config}
        return await llmmc(
            {"plugins": {"enabled": ["memory"], "memory": settings}}, database_url=url
        )

    return make
