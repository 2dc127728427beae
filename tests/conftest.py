"""Shared by every test folder. The ``llmmc`` fixture comes from ``sdk.testing``."""

from __future__ import annotations

import pytest

from tests.serverproc import redis_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if redis_available():
        return
    skip = pytest.mark.skip(reason="Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)
