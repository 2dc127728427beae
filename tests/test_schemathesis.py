"""Property-based API testing of the assembled server: schemathesis reads /openapi.json
and throws generated requests at every route of every builtin plugin, authenticated as a
real user of the auth plugin. No answer may be a 500, and every answer must match the
status codes and schema its route declares. The chat plugin talks to a fake OpenAI
server so its success paths are exercised too; weather and translate point at a closed
port, so their tools answer with their documented 502/503."""

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

from sdk.testing import start_kernel
from tests.fakes.openai_server import FakeOpenAI

ENABLED = ["auth", "ratelimit", "chat", "memory", "weather", "translate"]


def config(openai_url: str) -> dict[str, Any]:
    return {
        "plugins": {
            "enabled": ENABLED,
            "auth": {"bcrypt_rounds": 4, "access_token_minutes": 120},
            "ratelimit": {"default": "100000/minute", "routes": {}},
            "chat": {
                "default_provider": "fake",
                "providers": {"fake": {"type": "openai", "base_url": openai_url, "model": "m"}},
                "max_retries": 0,
                "characters": {
                    "lumina": {"name": "Lumina", "provider": "fake", "persona": "Host."},
                    "nox": {
                        "name": "Nox",
                        "provider": "fake",
                        "persona": "Sceptic.",
                        "keywords": ["news"],
                    },
                },
            },
            "memory": {"embedder": "hashing", "auto_extract": False},
            "weather": {
                "base_url": "http://127.0.0.1:9/v1",
                "geocoding_url": "http://127.0.0.1:9/v1",
            },
            "translate": {"base_url": "http://127.0.0.1:9"},
        }
    }


class LiveServer:
    """The kernel (and the fake upstream) on their own event loop in a thread, so
    schemathesis, which is synchronous, can call them."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeOpenAI()
        self._run(self.fake.__aenter__())
        self.client = self._run(start_kernel(config(self.fake.url), data_dir=data_dir))
        self.url = self.client.base_url
        self.token = self._run(self._register())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    async def _register(self) -> str:
        r = await self.client.post(
            "/api/v1/auth/register",
            json={
                "username": "fuzzer",
                "email": "fuzzer@example.com",
                "password": "Fuzz-1234-pass",
            },
        )
        assert r.status == 201, await r.text()
        return str((await r.json())["access_token"])

    def close(self) -> None:
        self._run(self.client.close())
        self._run(self.fake.__aexit__(None, None, None))
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
    bearer = {"Authorization": f"Bearer {live_server.token}"}
    failures: list[str] = []
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (
            operation.method.upper() == "DELETE"
            and operation.path == "/api/v1/auth/users/{user_id}"
        ):
            continue  # generated ids never name the fuzzer; covered by the auth tests

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), **bearer}
            response = case.call(base_url=live_server.url, timeout=30)
            case.validate_response(response, checks=checks)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}"[:3000])
        tested.append(operation.label)
    paths = " ".join(tested)
    for prefix in (
        "/api/v1/auth",
        "/api/v1/chat",
        "/api/v1/memory",
        "/v1/chat/completions",
        "/api/v1/plugins",
    ):
        assert prefix in paths, f"no operation under {prefix} was tested"
    assert not failures, "\n\n".join(failures)
