"""Property-based API testing of the assembled server: schemathesis reads /openapi.json
and throws generated requests at every route of every builtin plugin, authenticated as a
real user of the auth plugin. No answer may be a 500, and every answer must match the
status codes and schema its route declares. The chat plugin talks to a fake OpenAI
server so its success paths are exercised too; weather and translate point at a closed
port, so their tools answer with their documented 502/503.

Three passes: every operation alone; stateful sequences following the links schemathesis
infers (a created memory or session is then read, listed, deleted), each scenario as a
fresh user; and hostile bodies for every operation that takes one (a schema-valid body
with a lone surrogate, absurd nesting or an out-of-range number planted somewhere in it),
which must be refused with 400/422 and never reach a plugin."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import response_schema_conformance, status_code_conformance

from kernel.testing import start_kernel
from tests.fakes.openai_server import FakeOpenAI

ENABLED = ["auth", "ratelimit", "chat", "memory", "weather", "translate", "pluginadmin"]


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
        self.token = self.register("fuzzer")

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def register(self, username: str) -> str:
        """A new user's access token."""
        r = requests.post(
            self.url + "/api/v1/auth/register",
            json={
                "username": username,
                "email": f"{username}@example.com",
                "password": "Fuzz-1234-pass",
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["access_token"])

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


def test_stateful_sequences_never_fail(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    checks = [no_internal_error, status_code_conformance]

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # a fresh user per scenario: a sequence may log out or delete its own account
            token = live_server.register("st_" + uuid.uuid4().hex[:12])
            self.headers = {"Authorization": f"Bearer {token}"}

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": self.headers, "timeout": 30}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=checks)

    Scenario.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )


# What a hostile client plants in an otherwise valid body. Raw number texts are put in
# after encoding (Python would write them as Infinity or refuse them).
_RAW = "\x00raw:"
_RAW_IN_JSON = re.compile(r'"\\u0000raw:([^"]*)"')
_BYTES = "\x01bytes:"
RAW_BYTES = [
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xff\xfe",
]
HOSTILE = st.one_of(
    st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\udc00\ud800", "ok \ud83d", "a\x00b"]),
    st.integers(min_value=65, max_value=5000).map(lambda n: _RAW + "[" * n + "]" * n),
    st.sampled_from(
        [_RAW + "1e400", _RAW + "-1e999", _RAW + "9" * 30, _RAW + str(2**63), _RAW + "NaN"]
    ),
    st.text(max_size=3).map(lambda t: {"\udc80" + t: 1}),
    # raw bytes inside a string, put in after encoding: a lone surrogate's UTF-8 bytes, an
    # overlong "/", a 3-byte overlong, past U+10FFFF, a bare continuation byte, not UTF-8
    st.integers(min_value=0, max_value=5).map(lambda i: f"{_BYTES}{i}"),
)


def _slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value a hostile value can go (the root included)."""
    found = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _slots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _slots(v, (*path, i))
    return found


def _plant(value: Any, path: tuple[Any, ...], hostile: Any) -> Any:
    if not path:
        return hostile
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _plant(value[head], rest, hostile)}
    copy = list(value)
    copy[head] = _plant(copy[head], rest, hostile)
    return copy


def _encode(body: Any) -> bytes:
    text = json.dumps(body)  # ensure_ascii: lone surrogates become \\udxxx escapes
    raw = _RAW_IN_JSON.sub(lambda m: m.group(1), text).encode()
    for i, bad in enumerate(RAW_BYTES):
        raw = raw.replace(b"\\u0001bytes:%d" % i, b"x" + bad)
    return raw


def _hostile_run(operation: Any, live_server: LiveServer, allowed: set[int]) -> Any:
    @given(case=operation.as_strategy(), hostile=HOSTILE, data=st.data())
    @settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def run(case: Any, hostile: Any, data: Any) -> None:
        body = case.body if isinstance(case.body, (dict, list)) else {}
        where = data.draw(st.sampled_from(_slots(body)))
        raw = _encode(_plant(body, where, hostile))
        response = requests.request(
            case.method,
            live_server.url + case.formatted_path,
            data=raw,
            headers={
                "Authorization": f"Bearer {live_server.token}",
                "Content-Type": "application/json",
            },
            timeout=30,
        )
        assert response.status_code in allowed, (
            f"{response.status_code} for {raw[:200]!r}: {response.text[:300]}"
        )

    return run


def test_hostile_bodies_are_refused_on_every_route(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.body:
            continue
        # admin routes refuse the (non-admin) fuzzer before reading the body
        allowed = {400, 422} | ({403} if "403" in operation.definition.raw["responses"] else set())
        run = _hostile_run(operation, live_server, allowed)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}"[:2000])
        tested += 1
    assert tested >= 10, "too few operations take a body: is the OpenAPI document complete?"
    assert not failures, "\n\n".join(failures)
