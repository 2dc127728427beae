"""The kernel's edge as a hostile client meets it: text that is not Unicode, absurd
nesting and numbers, slow and over-long requests, security headers, and what the plugin
registry shows to whom. Raw sockets where an HTTP client library would refuse to send
what an attacker can."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from yarl import URL

from sdk import Plugin, Request, Route, hookimpl

SEEN: list[Any] = []


class Recorder(Plugin):
    """Keeps everything its routes are given, so a test can see what reached a plugin."""

    name = "recorder"
    config_schema = {
        "type": "object",
        "properties": {"upstream_url": {"type": "string", "default": "http://10.0.0.7:9000"}},
    }

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def record(req: Request) -> dict[str, Any]:
            SEEN.append(req.body)
            return {"got": req.body}

        async def look(req: Request) -> dict[str, Any]:
            seen = {
                "key": req.match_info["key"],
                "query": dict(req.query),
                "agent": req.headers.get("User-Agent", ""),
            }
            SEEN.append(seen)
            return seen

        return [
            Route("POST", "/api/v1/rec", record, auth="public"),
            Route("GET", "/api/v1/rec/{key}", look, auth="public"),
        ]


PLUGINS = {"recorder": Recorder}
CONFIG: dict[str, Any] = {"plugins": {"enabled": ["recorder"]}}


async def post_raw_json(client: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    r = await client.post("/api/v1/rec", data=body, headers={"Content-Type": "application/json"})
    return r.status, await r.json()


async def exchange(client: Any, data: bytes, *, wait: float = 10) -> bytes:
    """Send raw bytes; everything the server answers until it closes the connection."""
    url = URL(client.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def split_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def is_text(value: Any) -> bool:
    """Every string in a JSON value can be encoded as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def test_lone_surrogates_never_reach_a_plugin(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    SEEN.clear()
    for body, where in (
        (b'{"text": "a\\ud800b"}', "/text"),
        (b'{"list": ["ok", "\\udfff"]}', "/list/1"),
        (b'{"\\udc00": 1}', "/?"),
        (b'"\\ud834"', "/"),
        (b'{"low first": "\\udc00\\ud800"}', "/low first"),
        (b'{"nul": "a\\u0000b"}', "/nul"),  # PostgreSQL cannot store it
    ):
        status, problem = await post_raw_json(client, body)
        assert status == 422 and problem["code"] == "VALIDATION_FAILED", body
        assert problem["errors"][0]["path"] == where
    assert SEEN == []
    # a proper pair, escaped or not, is ordinary text
    status, answer = await post_raw_json(client, b'{"t": "\\ud83d\\ude00 \xf0\x9f\x98\x80"}')
    assert status == 200 and answer == {"got": {"t": "\U0001f600 \U0001f600"}}

    # headers: the HTTP parser decodes their bytes with surrogateescape
    raw = await exchange(
        client,
        b"GET /api/v1/rec/k HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xfe\r\n"
        b"Connection: close\r\n\r\n",
    )
    status, _, body = split_answer(raw)
    assert status == 422 and json.loads(body)["code"] == "VALIDATION_FAILED"
    # query strings and path parameters: broken UTF-8 arrives as U+FFFD, never a surrogate
    r = await client.session.get(
        URL(client.url("/api/v1/rec/%ED%A0%80?q=%ED%A0%80&r=%FF"), encoded=True)
    )
    assert r.status in (200, 422)
    for path in ("/api/v1/rec/k?q=a%00b", "/api/v1/rec/a%00b"):
        r = await client.session.get(URL(client.url(path), encoded=True))
        assert r.status == 422, path
    assert all(is_text(seen) and "\x00" not in json.dumps(seen) for seen in SEEN)


async def test_deep_nesting_and_huge_numbers_are_refused(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    SEEN.clear()
    status, _ = await post_raw_json(client, b"[" * 64 + b"]" * 64)
    assert status == 200  # 64 levels is the limit, not past it
    for body in (
        b"[" * 65 + b"]" * 65,
        b'{"a":' * 65 + b"1" + b"}" * 65,
        b"[" * 100_000 + b"]" * 100_000,  # was a RecursionError (500)
    ):
        status, problem = await post_raw_json(client, body)
        assert status == 400 and problem["code"] == "JSON_TOO_DEEP"
    for body in (b'{"n": 1e999}', b'{"n": 99999999999999999999}', b'{"n": NaN}', b"[Infinity]"):
        status, problem = await post_raw_json(client, body)
        assert status == 400 and problem["code"] == "MALFORMED_JSON", body
    big = b'{"n": ' + b"9" * 5000 + b"}"  # past Python's int-parsing limit
    status, problem = await post_raw_json(client, big)
    assert status == 400 and problem["code"] == "MALFORMED_JSON"
    assert len(SEEN) == 1


async def test_a_stalled_body_is_answered_408_and_closed(llmmc: Any) -> None:
    config = {**CONFIG, "kernel": {"read_timeout_seconds": 0.5}}
    client = await llmmc(config, plugins=PLUGINS)
    raw = await exchange(
        client,
        b"POST /api/v1/rec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"a": ',
    )
    status, headers, body = split_answer(raw)  # and the server closed the connection
    assert status == 408 and json.loads(body)["code"] == "REQUEST_TIMEOUT"
    assert headers["content-type"].startswith("application/problem+json")


async def test_stalled_headers_are_cut_off(llmmc: Any) -> None:
    config = {**CONFIG, "kernel": {"read_timeout_seconds": 0.5}}
    client = await llmmc(config, plugins=PLUGINS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    raw = await exchange(client, b"GET /api/v1/rec/k HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    assert raw == b"" and loop.time() - started < 5  # closed, nothing served
    raw = await exchange(client, b"")  # a connection that never says anything
    assert raw == b""


async def test_over_long_headers_get_431_problem_without_an_echo(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    raw = await exchange(
        client, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Long: " + b"SECRET" * 2000 + b"\r\n\r\n"
    )
    status, headers, body = split_answer(raw)
    assert status == 431
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["code"] == "HEADERS_TOO_LARGE"
    assert b"SECRET" not in raw
    assert headers["x-content-type-options"] == "nosniff" and "aiohttp" not in headers["server"]
    raw = await exchange(client, b"GET /p\x01ng?secret=SECRET HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = split_answer(raw)
    assert status == 400 and json.loads(body)["code"] == "BAD_HTTP_REQUEST"
    assert b"SECRET" not in raw


async def test_headers_are_limited_in_total_and_the_connection_closes(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    line = b"X-Fill-%d: " + b"a" * 8000 + b"\r\n"
    some = b"".join(line % i for i in range(7))  # 56 KB: within the 64 KB default
    raw = await exchange(
        client, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + some + b"\r\n"
    )
    assert split_answer(raw)[0] == 200
    many = b"".join(line % i for i in range(100))  # each line allowed, 800 KB in all
    raw = await exchange(client, b"GET /ping HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    status, headers, body = split_answer(raw)
    assert status == 431 and json.loads(body)["code"] == "HEADERS_TOO_LARGE"
    assert headers["connection"].lower() == "close"


async def test_repeated_headers_are_answered_never_500(llmmc: Any) -> None:
    """Headers sent twice: two differing Content-Lengths (a smuggling attempt) are refused
    by the parser; two Content-Types, two Authorization lines and two request ids get an
    answer of their own, never a 500."""
    client = await llmmc(CONFIG, plugins=PLUGINS)
    body = b'{"user_input": "hi"}'
    smuggle = (
        b"POST /api/v1/rec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20\r\nContent-Length: 5\r\nConnection: close\r\n\r\n" + body
    )
    status, _, answer = split_answer(await exchange(client, smuggle))
    assert status == 400 and json.loads(answer)["code"] == "BAD_HTTP_REQUEST"
    for extra in (
        b"Content-Type: application/json\r\nContent-Type: text/plain\r\n",
        b"Content-Type: application/json\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        b"Content-Type: application/json\r\nX-Request-ID: one\r\nX-Request-ID: two\r\n",
    ):
        request = (
            b"POST /api/v1/rec HTTP/1.1\r\nHost: x\r\n"
            + extra
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body
        )
        status, headers, answer = split_answer(await exchange(client, request))
        assert status < 500 and headers["content-type"].startswith("application/"), (extra, answer)
        assert status != 404, answer  # the route was reached, not missed


async def test_every_answer_carries_the_security_headers(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    for path in ("/ping", "/no/such/route", "/openapi.json", "/redoc/static/redoc.standalone.js"):
        r = await client.get(path)
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Server"] == "LlmMultiChat"
        assert "Strict-Transport-Security" not in r.headers  # not unless asked for
    for page in ("/docs", "/redoc"):
        r = await client.get(page)
        csp = r.headers["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        )
        html = await r.text()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
        assert "onload=" not in html and "javascript:" not in html
    hsts = await llmmc({**CONFIG, "kernel": {"hsts": True}}, plugins=PLUGINS)
    r = await hsts.get("/ping")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_plugin_configuration_is_shown_to_admins_only(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    for headers in ({}, client.auth_headers("someone")):
        r = await client.get("/api/v1/plugins/recorder", headers=headers)
        body = await r.json()
        assert r.status == 200 and body["state"] == "RUNNING" and "config" not in body
        assert "10.0.0.7" not in await r.text()
        listing = await (await client.get("/api/v1/plugins", headers=headers)).text()
        assert "10.0.0.7" not in listing
    r = await client.get("/api/v1/plugins/recorder", headers=client.auth_headers("a", admin=True))
    assert (await r.json())["config"] == {"upstream_url": "http://10.0.0.7:9000"}


FLAT_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object"}},
}


def _flat_error(problem: Any) -> dict[str, Any]:
    return {"error": {"message": problem.detail, "code": problem.code}}


class Shaped(Plugin):
    """A door whose clients expect ``{"error": {...}}`` instead of Problem Details."""

    name = "shaped"

    @hookimpl
    def register_routes(self) -> list[Route]:
        from sdk import errors

        shape = errors.ErrorShape(_flat_error, FLAT_ERROR_SCHEMA)

        async def echo(req: Request) -> Any:
            if req.body["n"] == 0:
                raise errors.NotFound("nothing here", code="NOTHING")
            if req.body["n"] < 0:
                raise RuntimeError("secret internals")
            return {"n": req.body["n"]}

        schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
        return [Route("POST", "/v9/echo", echo, request_schema=schema, error_shape=shape)]


async def test_a_route_may_answer_errors_in_its_clients_shape(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["shaped"]}}, plugins={"shaped": Shaped})
    h = client.auth_headers("u1")
    cases = [
        ({}, {"n": 1}, 401, "AUTH_REQUIRED"),  # the kernel's own refusal
        (h, {"x": 1}, 422, "VALIDATION_FAILED"),
        (h, {"n": "\ud800"}, 422, "VALIDATION_FAILED"),
        (h, {"n": 0}, 404, "NOTHING"),
        (h, {"n": -1}, 500, "INTERNAL_ERROR"),
    ]
    for headers, body, status, code in cases:
        r = await client.post("/v9/echo", json=body, headers=headers)
        answer = await r.json()
        assert r.status == status and r.content_type == "application/json", answer
        assert answer["error"]["code"] == code and "secret" not in answer["error"]["message"]
        assert r.headers.get("X-Request-ID")
    r = await client.post("/v9/echo", json={"n": 1})
    assert r.headers["WWW-Authenticate"] == "Bearer"  # headers are kept
    ok = await client.post("/v9/echo", json={"n": 2}, headers=h)
    assert ok.status == 200 and await ok.json() == {"n": 2}
    doc = await (await client.get("/openapi.json")).json()
    documented = doc["paths"]["/v9/echo"]["post"]["responses"]["422"]["content"]
    assert documented == {"application/json": {"schema": FLAT_ERROR_SCHEMA}}


async def test_raw_surrogate_and_overlong_bytes_are_refused_like_the_escaped_form(
    llmmc: Any,
) -> None:
    """A body carrying the UTF-8 bytes of a lone surrogate (Python decodes them into one
    without any escape to see) or an overlong form is 422, and nothing reaches the plugin."""
    client = await llmmc(CONFIG, plugins=PLUGINS)
    before = len(SEEN)
    for body in (
        b'{"user_input": "x\xed\xa0\x80"}',  # a lone surrogate, raw
        b'{"user_input": "\xc0\xaf"}',  # an overlong "/"
        b'{"user_input": "\xff"}',  # not UTF-8 at all
    ):
        status, problem = await post_raw_json(client, body)
        assert status == 422, (body, problem)
        assert problem["code"] == "VALIDATION_FAILED"
    status, problem = await post_raw_json(client, b'{"user_input": "x\\ud800"}')
    assert status == 422  # the escaped form, as before
    assert len(SEEN) == before
    status, echoed = await post_raw_json(client, '{"t": "日本語 ok"}'.encode())
    assert status == 200 and echoed["got"] == {"t": "日本語 ok"}


async def test_a_second_forwarded_for_line_cannot_forge_the_client(llmmc: Any) -> None:
    """Behind a trusted proxy, every X-Forwarded-For line counts: a client's own line
    naming an allowed address, followed by the proxy's line with its real address, is
    the real address (here: not allowed to read /metrics)."""
    client = await llmmc(
        {
            "kernel": {"trusted_proxies": ["127.0.0.1/32"]},
            "plugins": {"enabled": ["metrics"], "metrics": {"allow": ["10.0.0.0/8"]}},
        }
    )
    forged = [("X-Forwarded-For", "10.1.2.3"), ("X-Forwarded-For", "203.0.113.5")]
    r = await client.get("/metrics", headers=forged)
    assert r.status == 403
    r = await client.get("/metrics", headers=[("X-Forwarded-For", "10.1.2.3")])
    assert r.status == 200


async def test_health_names_the_unreachable_redis_to_administrators_only(llmmc: Any) -> None:
    """While the bus's Redis is away, everyone reads that it is; only an administrator
    reads the bus's error (which can name a host and port)."""
    from tests.serverproc import ThrowawayRedis

    redis = ThrowawayRedis()
    redis.start()
    try:
        client = await llmmc({"kernel": {"bus": {"backend": "redis", "redis_url": redis.url}}})
        redis.stop()
        port = str(redis.port)
        for _ in range(100):  # the listener notices within a moment
            body = await (await client.get("/health", headers=client.auth_headers("a"))).json()
            if body["bus"]["status"] != "ok":
                break
            await asyncio.sleep(0.1)
        assert body["status"] == "degraded"
        assert any("Redis unreachable" in p for p in body["problems"])
        assert port not in json.dumps(body) and "error" not in body["bus"]
        admin = client.auth_headers("root", admin=True)
        seen = await (await client.get("/health", headers=admin)).json()
        assert seen["bus"]["error"]
    finally:
        redis.stop()
