"""What a client sees of the kernel's HTTP conventions: Problem Details for every error,
body limits and validation, X-Request-ID, authentication decided by hooks."""

from __future__ import annotations

from typing import Any

from sdk import Plugin, Request, Route, hookimpl

SCHEMA = {
    "type": "object",
    "required": ["name", "tags"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


class Things(Plugin):
    name = "things"

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def create(req: Request) -> dict[str, Any]:
            return {"created": req.body, "by": req.require_identity().user_id}

        async def admin_only(req: Request) -> dict[str, Any]:
            return {"ok": True}

        async def whoami(req: Request) -> dict[str, Any]:
            return {"user": req.identity.user_id if req.identity else None, "ip": req.client_ip}

        async def boom(req: Request) -> dict[str, Any]:
            raise RuntimeError("secret internals")

        return [
            Route("POST", "/api/v1/things", create, auth="user", request_schema=SCHEMA, status=201),
            Route(
                "POST",
                "/api/v1/things/small",
                create,
                auth="user",
                request_schema=SCHEMA,
                max_body_bytes=2048,
            ),
            Route("GET", "/api/v1/things/admin", admin_only, auth="admin"),
            Route("GET", "/api/v1/things/whoami", whoami, auth="public"),
            Route("GET", "/api/v1/things/boom", boom, auth="public"),
        ]


PLUGINS = {"things": Things}
CONFIG = {"kernel": {"max_body_bytes": 4096}, "plugins": {"enabled": ["things"]}}


def assert_problem(r: Any, body: dict[str, Any], status: int, code: str) -> None:
    assert r.status == status
    assert r.content_type == "application/problem+json"
    assert body["status"] == status and body["code"] == code
    assert {"type", "title", "detail"} <= set(body)
    assert r.headers.get("X-Request-ID")


async def test_valid_body_is_accepted(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    r = await client.post(
        "/api/v1/things", json={"name": "a", "tags": []}, headers=client.auth_headers("u1")
    )
    assert r.status == 201
    assert await r.json() == {"created": {"name": "a", "tags": []}, "by": "u1"}


async def test_body_errors_are_problem_details(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    h = client.auth_headers("u1")
    r = await client.post(
        "/api/v1/things", data=b'{"name": ', headers={**h, "Content-Type": "application/json"}
    )
    assert_problem(r, await r.json(), 400, "MALFORMED_JSON")
    r = await client.post(
        "/api/v1/things",
        data=b"name=a",
        headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(r, await r.json(), 415, "UNSUPPORTED_MEDIA_TYPE")
    r = await client.post(
        "/api/v1/things", json={"name": "far too long a name", "tags": [1], "x": 1}, headers=h
    )
    body = await r.json()
    assert_problem(r, body, 422, "VALIDATION_FAILED")
    paths = {e["path"] for e in body["errors"]}
    assert {"/name", "/tags/0", "/"} <= paths
    r = await client.post("/api/v1/things", headers=h)
    assert_problem(r, await r.json(), 422, "VALIDATION_FAILED")


async def test_body_limits(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    h = client.auth_headers("u1")
    big = {"name": "a", "tags": ["x" * 100] * 50}  # about 5 KB
    r = await client.post("/api/v1/things", json=big, headers=h)
    assert_problem(r, await r.json(), 413, "PAYLOAD_TOO_LARGE")
    medium = {
        "name": "a",
        "tags": ["x" * 100] * 25,
    }  # about 2.6 KB: fine for the kernel, not for this route
    assert (await client.post("/api/v1/things", json=medium, headers=h)).status == 201
    r = await client.post("/api/v1/things/small", json=medium, headers=h)
    assert_problem(r, await r.json(), 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> Any:  # no Content-Length: counted while reading
        for _ in range(10):
            yield b" " * 1000

    r = await client.post(
        "/api/v1/things", data=chunks(), headers={**h, "Content-Type": "application/json"}
    )
    assert_problem(r, await r.json(), 413, "PAYLOAD_TOO_LARGE")


async def test_authentication_and_roles(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    r = await client.post("/api/v1/things", json={"name": "a", "tags": []})
    assert_problem(r, await r.json(), 401, "AUTH_REQUIRED")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    r = await client.post(
        "/api/v1/things", json={"name": "a", "tags": []}, headers={"Authorization": "Bearer forged"}
    )
    assert_problem(r, await r.json(), 401, "INVALID_TOKEN")
    r = await client.get("/api/v1/things/admin", headers=client.auth_headers("u1"))
    assert_problem(r, await r.json(), 403, "ADMIN_REQUIRED")
    r = await client.get("/api/v1/things/admin", headers=client.auth_headers("boss", admin=True))
    assert r.status == 200
    # a public route serves a caller with a bad token, without an identity
    r = await client.get("/api/v1/things/whoami", headers={"Authorization": "Bearer forged"})
    assert r.status == 200 and (await r.json())["user"] is None


async def test_without_an_auth_plugin_user_routes_answer_401(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS, test_auth=False)
    r = await client.post(
        "/api/v1/things", json={"name": "a", "tags": []}, headers={"Authorization": "Bearer x"}
    )
    assert_problem(r, await r.json(), 401, "AUTH_REQUIRED")


async def test_request_id_is_echoed_or_generated(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    r = await client.get("/ping", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    r1, r2 = await client.get("/ping"), await client.get("/nowhere")
    assert (
        len(r1.headers["X-Request-ID"]) == 32
        and r1.headers["X-Request-ID"] != r2.headers["X-Request-ID"]
    )
    assert_problem(r2, await r2.json(), 404, "NOT_FOUND")
    r = await client.delete("/ping")
    assert_problem(r, await r.json(), 405, "METHOD_NOT_ALLOWED")


async def test_unexpected_errors_are_500_problems_without_internals(llmmc: Any) -> None:
    client = await llmmc(CONFIG, plugins=PLUGINS)
    r = await client.get("/api/v1/things/boom")
    body = await r.json()
    assert_problem(r, body, 500, "INTERNAL_ERROR")
    assert "secret internals" not in await r.text()


async def test_forwarded_for_is_believed_only_from_trusted_proxies(llmmc: Any) -> None:
    fwd = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}
    client = await llmmc(CONFIG, plugins=PLUGINS)
    r = await client.get("/api/v1/things/whoami", headers=fwd)
    assert (await r.json())["ip"] == "127.0.0.1"
    trusted = {**CONFIG, "kernel": {**CONFIG["kernel"], "trusted_proxies": ["127.0.0.0/8"]}}
    client = await llmmc(trusted, plugins=PLUGINS)
    r = await client.get("/api/v1/things/whoami", headers=fwd)
    assert (await r.json())["ip"] == "203.0.113.9"


async def test_tool_execute(llmmc: Any) -> None:
    from sdk import Tool

    class Calc(Plugin):
        name = "calc"

        @hookimpl
        def register_tools(self) -> list[Tool]:
            async def add(params: dict[str, Any], call: Any) -> dict[str, Any]:
                return {"sum": params["a"] + params["b"], "by": call.identity.user_id}

            schema = {
                "type": "object",
                "required": ["a", "b"],
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            }
            return [Tool("add", "Add two numbers", schema, add)]

    client = await llmmc({"plugins": {"enabled": ["calc"]}}, plugins={"calc": Calc})
    h = client.auth_headers("u9")
    r = await client.post(
        "/api/v1/plugins/calc/execute", json={"tool": "add", "params": {"a": 2, "b": 3}}, headers=h
    )
    assert r.status == 200 and await r.json() == {
        "plugin": "calc",
        "tool": "add",
        "result": {"sum": 5, "by": "u9"},
    }
    r = await client.post(
        "/api/v1/plugins/calc/execute", json={"tool": "add", "params": {"a": "2"}}, headers=h
    )
    body = await r.json()
    assert_problem(r, body, 422, "VALIDATION_FAILED")
    r = await client.post(
        "/api/v1/plugins/calc/execute", json={"tool": "mul", "params": {}}, headers=h
    )
    assert_problem(r, await r.json(), 404, "TOOL_NOT_FOUND")
    r = await client.post(
        "/api/v1/plugins/nope/execute", json={"tool": "add", "params": {}}, headers=h
    )
    assert_problem(r, await r.json(), 404, "PLUGIN_NOT_FOUND")
    r = await client.post(
        "/api/v1/plugins/calc/execute", json={"tool": "add", "params": {"a": 1, "b": 1}}
    )
    assert_problem(r, await r.json(), 401, "AUTH_REQUIRED")
    r = await client.get("/api/v1/plugins/calc")
    tools = (await r.json())["tools"]
    assert [t["name"] for t in tools] == ["add"]


async def test_plugin_config_is_shown_with_secrets_redacted(llmmc: Any) -> None:
    class Keyed(Plugin):
        name = "keyed"
        config_schema = {
            "type": "object",
            "properties": {
                "api_key": {"type": "string"},
                "endpoint_credential_blob": {"type": "string", "x-secret": True},
                "pin": {"type": "string", "x-secret": True},
                "base_url": {"type": "string"},
                "empty_key": {"type": "string", "default": ""},
            },
        }

    config = {
        "plugins": {
            "enabled": ["keyed"],
            "keyed": {"api_key": "sk-live-123", "pin": "4242", "base_url": "http://x"},
        }
    }
    client = await llmmc(config, plugins={"keyed": Keyed})
    r = await client.get("/api/v1/plugins/keyed", headers=client.auth_headers("root", admin=True))
    text = await r.text()
    assert "sk-live-123" not in text and "4242" not in text
    cfg = (await r.json())["config"]
    assert cfg == {"api_key": "***", "pin": "***", "base_url": "http://x", "empty_key": ""}


async def test_cors_only_for_configured_origins(llmmc: Any) -> None:
    config = {**CONFIG, "kernel": {**CONFIG["kernel"], "cors_origins": ["https://app.example"]}}
    client = await llmmc(config, plugins=PLUGINS)
    r = await client.request("OPTIONS", "/api/v1/things", headers={"Origin": "https://app.example"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = await client.get("/ping", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = await client.get("/ping", headers={"Origin": "https://app.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"


class Counter(Plugin):
    """A before_request hook like the rate limiter's: counts and adds headers."""

    name = "counter"

    async def initialize(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    @hookimpl
    def before_request(self, request: Request) -> dict[str, str]:
        who = request.identity.user_id if request.identity else None
        self.seen.append((request.route.key, who))
        return {"RateLimit-Remaining": str(100 - len(self.seen))}


async def test_before_request_counts_refused_requests_and_its_headers_reach_errors(
    llmmc: Any,
) -> None:
    client = await llmmc(
        {**CONFIG, "plugins": {"enabled": ["things", "counter"]}},
        plugins={**PLUGINS, "counter": Counter},
    )
    counter = client.kernel.records["counter"].instance
    bad_token = {"Authorization": "Bearer forged"}
    r = await client.post("/api/v1/things", json={"name": "a", "tags": []}, headers=bad_token)
    assert r.status == 401 and r.headers["RateLimit-Remaining"] == "99"
    r = await client.post("/api/v1/things", json={"name": 5}, headers=client.auth_headers("u1"))
    assert r.status == 422 and r.headers["RateLimit-Remaining"] == "98"
    r = await client.post(
        "/api/v1/things", json={"name": "a", "tags": []}, headers=client.auth_headers("u1")
    )
    assert r.status == 201 and r.headers["RateLimit-Remaining"] == "97"
    assert counter.seen == [
        ("POST /api/v1/things", None),
        ("POST /api/v1/things", "u1"),
        ("POST /api/v1/things", "u1"),
    ]
    await client.get("/ping")  # rate_limit=None: not asked
    assert len(counter.seen) == 3


QUERY = {
    "type": "object",
    "required": ["q"],
    "properties": {
        "q": {"type": "string", "minLength": 1},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
        "ratio": {"type": "number"},
        "exact": {"type": "boolean", "default": False},
        "tag": {"type": "array", "items": {"type": "integer"}},
    },
}


class Search(Plugin):
    name = "search"

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def search(req: Request) -> dict[str, Any]:
            return {"params": req.params}

        return [Route("GET", "/api/v1/search", search, auth="public", query_schema=QUERY)]


async def test_query_parameters_are_validated_typed_and_defaulted(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["search"]}}, plugins={"search": Search})
    r = await client.get("/api/v1/search?q=tea&ratio=0.5&tag=1&tag=2&other=x")
    assert r.status == 200
    assert (await r.json())["params"] == {
        "q": "tea",
        "limit": 10,
        "ratio": 0.5,
        "exact": False,
        "tag": [1, 2],
        "other": "x",  # undeclared parameters pass through as strings
    }
    r = await client.get("/api/v1/search?q=tea&limit=&exact=true")  # empty: the default
    assert (await r.json())["params"] == {"q": "tea", "limit": 10, "exact": True}
    for query, path in [
        ("q=tea&limit=0", "/limit"),
        ("q=tea&limit=51", "/limit"),
        ("q=tea&limit=ten", "/limit"),
        ("q=tea&limit=99999999999999999999999", "/limit"),
        ("q=tea&exact=yes", "/exact"),
        ("q=tea&tag=1&tag=x", "/tag/1"),
        ("q=", "/q"),
        ("limit=5", "/"),
    ]:
        r = await client.get(f"/api/v1/search?{query}")
        body = await r.json()
        assert r.status == 422, query
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert body["errors"][0]["path"] == path, (query, body)
    r = await client.get("/api/v1/search?q=tea&limit=0")
    assert (await r.json())["detail"].startswith("The query parameter limit is not valid")
