"""Property-based API testing of the assembled server: schemathesis reads /openapi.json
and throws generated requests at every route of every plugin enabled here. No answer may
be a server error, and every answer must match the schema its route declares. This test
grows with each plugin: enable it below."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import response_schema_conformance, status_code_conformance

from sdk.testing import auth_headers, start_kernel

ENABLED = ["ratelimit", "weather", "translate", "memory"]
CONFIG: dict[str, Any] = {
    "plugins": {
        "enabled": ENABLED,
        "ratelimit": {"default": "100000/minute"},
        "memory": {"embedder": "hashing", "auto_extract": False},
        # upstreams point at a closed port: every tool call is a clean 502/503, never a 500
        "weather": {"base_url": "http://127.0.0.1:9/v1", "geocoding_url": "http://127.0.0.1:9/v1"},
        "translate": {"base_url": "http://127.0.0.1:9"},
    }
}


class LiveServer:
    """The kernel on its own event loop in a thread, so schemathesis (synchronous) can call it."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = asyncio.run_coroutine_threadsafe(
            start_kernel(CONFIG, data_dir=data_dir), self.loop
        ).result(120)
        self.url = self.client.base_url

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("schemathesis"))
    yield server
    server.close()


def no_internal_error(ctx: Any, response: Any, case: Any) -> None:
    """A 500 is always a bug. (502/503/504 are the documented answers of tools whose
    upstream is down, as it is here, so schemathesis' own 5xx check does not fit.)"""
    if response.status_code == 500:
        raise AssertionError(f"500 on {case.method} {case.path}: {response.text[:500]}")


def test_api_never_fails_and_keeps_its_schemas(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    checks = [no_internal_error, response_schema_conformance, status_code_conformance]
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), **auth_headers("schemathesis-user")}
            response = case.call(base_url=live_server.url, timeout=30)
            case.validate_response(response, checks=checks)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}"[:2000])
        tested += 1
    assert tested >= 15, "the schema lists fewer operations than the enabled plugins declare"
    assert not failures, "\n\n".join(failures)
