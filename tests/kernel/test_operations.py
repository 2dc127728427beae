"""Operations through HTTP: /metrics (kernel and plugin metrics, the allow list),
/livez and /readyz, the access log, request ids reaching upstreams, and compression."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import brotli
import pytest
from aiohttp import web

from builtin_plugins.storage.testing import fresh_schema_url
from sdk import Health, Plugin, Request, Route, hookimpl
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.prometheus import Samples, parse, scrape, value
from tests.serverproc import ServerProcess, unique_prefix, wait_for

THING = "/api/v1/things/{thing_id}"


class ThingsPlugin(Plugin):
    """A route with a path parameter, a metric of its own, and an SSE stream that waits
    for the test between its two events."""

    name = "things"

    async def initialize(self) -> None:
        self.made = self.context.metrics.counter("made", "Things made", labels=("kind",))
        self.size = self.context.metrics.gauge("size", "Things held")
        self.held = 0
        self.context.metrics.on_collect(lambda: self.size.set(self.held))
        self.release = asyncio.Event()
        self.impaired = ""

    async def health(self) -> Health:
        return Health("degraded", self.impaired) if self.impaired else Health()

    @hookimpl
    def register_routes(self) -> list[Route]:
        return [
            Route("GET", THING, self.get_thing, auth="user", rate_limit=None),
            Route("GET", "/api/v1/big", self.big, auth="public", rate_limit=None),
            Route("GET", "/api/v1/stream", self.stream, auth="public", rate_limit=None),
        ]

    async def get_thing(self, req: Request) -> Any:
        self.made.labels(kind="plain").inc()
        self.held += 1
        return {"thing_id": req.match_info["thing_id"]}

    async def big(self, req: Request) -> Any:
        return {"items": [f"item number {i}" for i in range(500)]}

    async def stream(self, req: Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req.raw)
        await resp.write(b"data: " + b"x" * 2000 + b"\n\n")
        await self.release.wait()
        await resp.write(b"data: last\n\n")
        await resp.write_eof()
        return resp


OPS = ["accesslog", "metrics", "compression"]


def config(metrics: dict[str, Any] | None = None, **kernel: Any) -> dict[str, Any]:
    plugins: dict[str, Any] = {"enabled": [*OPS, "things"]}
    if metrics is not None:
        plugins["metrics"] = metrics
    return {"kernel": kernel, "plugins": plugins}


def access_lines(client: Any, path: Path) -> list[dict[str, Any]]:
    """The access log's lines so far (the plugin writes JSON lines to ``path``)."""
    client.plugin("accesslog").flush()
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_metrics_follow_the_requests_made(llmmc: Any) -> None:
    client = await llmmc(config(), plugins={"things": ThingsPlugin})
    before = await scrape(client)
    assert value(before, "llmmc_plugin_state", plugin="things", state="RUNNING") == 1
    assert value(before, "llmmc_plugin_state", plugin="things", state="ERROR") == 0
    assert value(before, "llmmc_ready") == 1

    user = client.auth_headers("u1")
    for thing in ("a", "b", "c"):
        assert (await client.get(f"/api/v1/things/{thing}", headers=user)).status == 200
    assert (await client.get("/api/v1/things/a")).status == 401
    assert (await client.get("/no/such/path")).status == 404
    assert (await client.request("PROPFIND", "/api/v1/things/a")).status == 405

    after = await scrape(client)
    route = {"route": THING, "method": "GET"}
    assert value(after, "llmmc_http_requests_total", **route, status="200") == 3
    assert value(after, "llmmc_http_requests_total", **route, status="401") == 1
    # Paths never become labels: what matched no route is counted under one name, and
    # an invented method under OTHER.
    assert (
        value(after, "llmmc_http_requests_total", route="(unmatched)", method="GET", status="404")
        == 1
    )
    assert (
        value(after, "llmmc_http_requests_total", route="(unmatched)", method="OTHER", status="405")
        == 1
    )
    assert value(after, "llmmc_http_request_duration_seconds_count", **route) == 4
    assert value(after, "llmmc_http_request_duration_seconds_bucket", **route, le="+Inf") == 4
    assert value(after, "llmmc_http_requests_in_flight") == 1  # the scrape itself
    # The plugin's own metrics, prefixed with its name; the gauge set just before the scrape.
    assert value(after, "llmmc_things_made_total", kind="plain") == 3
    assert value(after, "llmmc_things_size") == 3
    assert value(after, "llmmc_build_info", version="0.1.0") == 1


async def test_metrics_only_for_allowed_addresses(llmmc: Any) -> None:
    client = await llmmc(
        config(metrics={"allow": ["10.0.0.0/8"]}), plugins={"things": ThingsPlugin}
    )
    r = await client.get("/metrics")
    assert r.status == 403
    assert (await r.json())["code"] == "METRICS_FORBIDDEN"
    # X-Forwarded-For is not believed from a peer that is not a trusted proxy.
    r = await client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    assert r.status == 403

    # the table's old place, [kernel.metrics], still works
    legacy = config(trusted_proxies=["127.0.0.1/32"])
    legacy["kernel"]["metrics"] = {"allow": ["10.0.0.0/8"]}
    proxied = await llmmc(legacy, plugins={"things": ThingsPlugin})
    assert (await proxied.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})).status == 200
    assert (await proxied.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"})).status == 403


async def test_livez_and_readyz(llmmc: Any) -> None:
    client = await llmmc(config(), plugins={"things": ThingsPlugin})
    r = await client.get("/livez")
    assert r.status == 200 and (await r.json())["status"] == "alive"
    r = await client.get("/readyz")
    assert r.status == 200 and await r.json() == {"status": "ready", "reasons": []}


def test_sigterm_turns_readiness_off_then_drains(
    tmp_path: Path, samples_env: dict[str, str]
) -> None:
    """A real ``serve``: after SIGTERM, /readyz says 503 at once while requests are still
    served for drain_delay_seconds; the request in flight finishes; the process exits 0.
    Its JSON log has one access line per request, with the client's request id."""
    server = ServerProcess(
        {
            "kernel": {"log_format": "json", "drain_delay_seconds": 2},
            "plugins": {"enabled": ["accesslog", "echoer"]},
        },
        tmp_path,
        env=samples_env,
    ).start()

    async def scenario() -> tuple[int, Any]:
        assert (await server.request("GET", "/readyz"))[:2] == (
            200,
            {"status": "ready", "reasons": []},
        )
        slow = asyncio.create_task(
            server.request(
                "GET", "/api/v1/echoer/slow?seconds=2.5", headers={"X-Request-ID": "slow-1"}
            )
        )
        await asyncio.sleep(0.3)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)

        async def not_ready() -> Any:
            status, body, _ = await server.request("GET", "/readyz")
            return body if status == 503 else None

        body = await wait_for(not_ready, timeout=1.5)
        assert body and body["reasons"] == ["draining: the server is shutting down"]
        assert (await server.request("GET", "/livez"))[0] == 200
        status, answer, _ = await slow
        return status, answer

    try:
        assert asyncio.run(scenario()) == (200, {"slept": True})
        assert server.wait(30) == 0
    finally:
        server.stop()
    lines = [json.loads(x) for x in server.output().splitlines() if x.startswith("{")]
    assert any(x["message"].startswith("SIGTERM: not ready") for x in lines)
    access = [x for x in lines if x["logger"] == "llmmultichat.access"]
    slow_line = next(x for x in access if x["request_id"] == "slow-1")
    assert slow_line["route"] == "/api/v1/echoer/slow" and slow_line["status"] == 200
    assert slow_line["method"] == "GET" and slow_line["client_ip"] == "127.0.0.1"
    assert slow_line["duration_ms"] >= 2500 and slow_line["user_id"] is None
    assert slow_line["time"].endswith("+00:00") and slow_line["level"] == "INFO"
    readyz = [x["status"] for x in access if x["route"] == "/readyz"]
    assert readyz[0] == 200 and 503 in readyz


def slow_start_config(marker: Path, **kernel: Any) -> dict[str, Any]:
    """The sample ``slowstart`` plugin (required) starts once ``marker`` exists."""
    return {
        "kernel": kernel,
        "plugins": {
            "enabled": ["metrics", "echoer", "slowstart"],
            "required": ["slowstart"],
            "slowstart": {"wait_for": str(marker)},
        },
    }


async def answers_while_starting(server: ServerProcess, answers: int = 1) -> None:
    """While a plugin's start() waits: the port answers, /livez 200, /readyz 503
    "starting", any other route 503 Problem Details with Retry-After (``answers`` times
    each: under --workers another worker may answer each time)."""

    async def slowstart_is_starting() -> bool:
        try:
            status, body, _ = await server.request("GET", "/readyz")
        except OSError:  # the port is not open yet
            return False
        return status == 503 and body["reasons"] == ["starting: plugin 'slowstart' is starting"]

    assert await wait_for(slowstart_is_starting, timeout=60), server.output()
    for _ in range(answers):
        assert (await server.request("GET", "/livez"))[:2] == (200, {"status": "alive"})
        status, body, _ = await server.request("GET", "/readyz")
        assert status == 503 and body["status"] == "not ready", body
        assert body["reasons"] and all(r.startswith("starting: ") for r in body["reasons"])
        for path in ("/api/v1/echoer/events", "/metrics", "/no/such/route"):
            status, body, headers = await server.request(
                "GET", path, headers={"X-Request-ID": "early-1"}
            )
            assert status == 503 and body["code"] == "STARTING", (path, body)
            assert headers["Content-Type"].startswith("application/problem+json")
            assert int(headers["Retry-After"]) >= 1
            assert headers["X-Request-ID"] == "early-1"
            assert headers["X-Content-Type-Options"] == "nosniff"


def test_readiness_while_plugins_start(tmp_path: Path, samples_env: dict[str, str]) -> None:
    """A real ``serve`` opens its port before its plugins start: a load balancer sees
    a live process that is not ready yet, clients a 503 to retry, until every plugin
    runs."""
    marker = tmp_path / "model-loaded"
    server = ServerProcess(
        slow_start_config(marker, log_format="json"), tmp_path, env=samples_env
    ).start(wait=False)

    async def scenario() -> None:
        await answers_while_starting(server)
        marker.touch()

        async def ready() -> Any:
            status, body, _ = await server.request("GET", "/readyz")
            return status == 200 and body == {"status": "ready", "reasons": []}

        assert await wait_for(ready, timeout=30), server.output()
        assert (await server.request("GET", "/api/v1/echoer/events"))[:2] == (
            200,
            {"events": []},
        )

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    lines = [json.loads(x) for x in server.output().splitlines() if x.startswith("{")]
    early = [x for x in lines if x.get("route") == "(starting)"]
    assert early and all(x["logger"] == "llmmultichat.access" for x in early)
    assert {x["status"] for x in early} == {200, 503}


@pytest.mark.redis
@pytest.mark.postgres
def test_workers_start_behind_the_gate_and_drain_on_sigterm(
    tmp_path: Path, samples_env: dict[str, str], postgres_database: str
) -> None:
    """``serve --workers 2`` through its life: while the plugins start every worker
    answers as a single process does; then both are ready; SIGTERM turns both workers'
    readiness off at once while they still serve for drain_delay_seconds, and the
    request in flight finishes before the process exits 0."""
    marker = tmp_path / "model-loaded"
    prefix = unique_prefix()
    kernel = {
        "drain_delay_seconds": 6,
        "bus": {
            "backend": "redis",
            "redis_url": "redis://127.0.0.1:6379/0",
            "channel_prefix": prefix,
        },
    }
    cfg = slow_start_config(marker, **kernel)
    cfg["plugins"]["enabled"].insert(0, "storage")
    cfg["plugins"]["storage"] = {"url": fresh_schema_url(postgres_database), "pool_size": 2}
    server = ServerProcess(cfg, tmp_path, env=samples_env, args=("--workers", "2")).start(
        wait=False
    )

    async def metrics() -> Samples:
        status, text, _ = await server.request("GET", "/metrics")
        assert status == 200, text
        return parse(text)

    async def scenario() -> tuple[int, Any]:
        await answers_while_starting(server, answers=6)
        marker.touch()
        await asyncio.to_thread(server.wait_ready, 60)  # both workers ready
        assert value(await metrics(), "llmmc_ready") == 2

        slow = asyncio.create_task(
            server.request("GET", "/api/v1/echoer/slow?seconds=8", headers={"X-Request-ID": "s1"})
        )

        async def slow_in_flight() -> bool:  # it, and this scrape
            return value(await metrics(), "llmmc_http_requests_in_flight") == 2

        assert await wait_for(slow_in_flight, timeout=10)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)  # to the arbiter, which tells every worker

        async def no_worker_ready() -> bool:
            return value(await metrics(), "llmmc_ready") == 0

        assert await wait_for(no_worker_ready, timeout=5), server.output()
        for _ in range(6):  # whichever worker answers: not ready, still serving
            status, body, _ = await server.request("GET", "/readyz")
            assert (status, body["reasons"]) == (503, ["draining: the server is shutting down"])
            assert (await server.request("GET", "/api/v1/echoer/events"))[0] == 200
        status, answer, _ = await slow
        return status, answer

    try:
        assert asyncio.run(scenario()) == (200, {"slept": True})
        assert server.wait(30) == 0, server.output()
    finally:
        server.stop()
    assert server.output().count("SIGTERM: not ready any more") == 2


async def test_health_says_what_is_impaired(llmmc: Any) -> None:
    client = await llmmc(config(), plugins={"things": ThingsPlugin})
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 200 and body["status"] == "healthy" and body["problems"] == []
    client.plugin("things").impaired = "the thing store is read-only"
    body = await (await client.get("/health")).json()
    assert body["status"] == "degraded"
    assert body["problems"] == ["things: the thing store is read-only"]


async def test_access_log_line_per_request(llmmc: Any, tmp_path: Path) -> None:
    cfg = config(log_format="json")
    cfg["plugins"]["accesslog"] = {"path": str(tmp_path / "access.log")}
    client = await llmmc(cfg, plugins={"things": ThingsPlugin})
    headers = {**client.auth_headers("alice"), "X-Request-ID": "trace-abc-1"}
    await client.get("/api/v1/things/x1", headers=headers)
    await client.get("/api/v1/things/x2", headers={"X-Forwarded-For": "203.0.113.9"})
    lines = access_lines(client, tmp_path / "access.log")
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == "trace-abc-1"
    assert first["logger"] == "llmmultichat.access" and first["level"] == "INFO"
    assert first["method"] == "GET" and first["route"] == THING
    assert first["path"] == "/api/v1/things/x1"
    assert first["status"] == 200 and first["user_id"] == "alice"
    assert first["client_ip"] == "127.0.0.1" and first["duration_ms"] >= 0
    assert first["bytes"] > 0
    assert second["status"] == 401 and second["user_id"] is None
    assert second["client_ip"] == "127.0.0.1"  # no trusted proxy: the header is ignored
    # the generated id is the one the client got back
    assert second["request_id"] and len(second["request_id"]) == 32


async def test_request_id_reaches_the_upstream_and_tool_metrics(llmmc: Any) -> None:
    async with FakeOpenMeteo() as fake:
        client = await llmmc(
            {
                "plugins": {
                    "enabled": ["metrics", "weather"],
                    "weather": {"base_url": fake.url, "geocoding_url": fake.url},
                }
            }
        )
        call = {"tool": "weather", "params": {"city": "Berlin"}}
        headers = {**client.auth_headers("u1"), "X-Request-ID": "req-weather-42"}
        for _ in range(2):
            r = await client.post("/api/v1/plugins/weather/execute", json=call, headers=headers)
            assert r.status == 200
        assert fake.count("/v1/forecast") == 1  # the second came from the cache
        assert fake.last("/v1/search").headers["X-Request-ID"] == "req-weather-42"
        assert fake.last("/v1/forecast").headers["X-Request-ID"] == "req-weather-42"
        samples = await scrape(client)
    assert value(samples, "llmmc_weather_cache_lookups_total", result="miss") == 1
    assert value(samples, "llmmc_weather_cache_lookups_total", result="hit") == 1
    latency = "llmmc_weather_upstream_request_duration_seconds_count"
    assert value(samples, latency, service="Open-Meteo forecast", outcome="ok") == 1
    assert value(samples, latency, service="Open-Meteo geocoding", outcome="ok") == 1


async def test_rate_limit_refusals_are_counted(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["metrics", "ratelimit", "things"],
                "ratelimit": {"routes": {f"GET {THING}": "2/minute"}},
            }
        },
        plugins={"things": LimitedThings},
    )
    user = client.auth_headers("u1")
    statuses = [(await client.get("/api/v1/things/a", headers=user)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    samples = await scrape(client)
    refused = "llmmc_ratelimit_refusals_total"
    assert value(samples, refused, route=f"GET {THING}", reason="rate_limited") == 1
    assert value(samples, "llmmc_http_requests_total", route=THING, method="GET", status="429") == 1


class LimitedThings(ThingsPlugin):
    @hookimpl
    def register_routes(self) -> list[Route]:
        return [Route("GET", THING, self.get_thing, auth="user")]


async def test_memory_metrics(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["metrics", "memory"],
                "memory": {"embedder": "hashing", "redis_url": "none", "index_min_vectors": 1},
            }
        }
    )
    user = client.auth_headers("u1")
    r = await client.post(
        "/api/v1/memory", json={"content": "I keep bees", "tier": "long_term"}, headers=user
    )
    assert r.status == 201
    r = await client.post("/api/v1/memory/search", json={"query": "bees"}, headers=user)
    assert r.status == 200
    samples = await scrape(client)
    assert value(samples, "llmmc_memory_search_duration_seconds_count", phase="embed") == 1
    assert value(samples, "llmmc_memory_search_duration_seconds_count", phase="scan") == 1
    assert value(samples, "llmmc_memory_index_vectors") == 1
    assert value(samples, "llmmc_memory_index_users") == 1
    assert value(samples, "llmmc_memory_index_bytes") > 0


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("gzip;q=0, br;q=0", None),
        ("identity", None),
        ("*", "br"),
    ],
)
async def test_compression_follows_accept_encoding(
    llmmc: Any, accept: str, coding: str | None
) -> None:
    client = await llmmc(config(), plugins={"things": ThingsPlugin})
    async with client.session.get(
        client.url("/api/v1/big"), headers={"Accept-Encoding": accept}, auto_decompress=False
    ) as r:
        raw = await r.read()
        assert r.status == 200
        assert r.headers.get("Content-Encoding") == coding
        assert "Accept-Encoding" in r.headers["Vary"]
        assert r.headers["X-Request-ID"]
    plain = {"gzip": gzip.decompress, "br": brotli.decompress, None: bytes}[coding](raw)
    assert json.loads(plain)["items"][499] == "item number 499"
    if coding:
        assert len(raw) < len(plain) / 4


async def test_small_answers_and_streams_are_not_compressed(llmmc: Any) -> None:
    client = await llmmc(config(), plugins={"things": ThingsPlugin})
    enc = {"Accept-Encoding": "gzip, br"}
    async with client.session.get(client.url("/ping"), headers=enc, auto_decompress=False) as r:
        assert "Content-Encoding" not in r.headers
        assert json.loads(await r.read()) == {"pong": True}
    # The first event arrives while the handler still waits to send the second: nothing
    # holds it back in a compressor.
    plugin = client.plugin("things")
    async with client.session.get(client.url("/api/v1/stream"), headers=enc) as r:
        assert "Content-Encoding" not in r.headers
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)
        assert first.startswith(b"data: xxx")
        plugin.release.set()
        assert await r.content.read() == b"data: last\n\n"
    # static files stream through gzip
    async with client.session.get(
        client.url("/redoc/static/redoc.standalone.js"), headers=enc, auto_decompress=False
    ) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert b"redoc" in gzip.decompress(await r.read())[:4096].lower()


WORKERS_SCRIPT = """
import os
from builtin_plugins.metrics.prometheus import MetricsHub, ServerMetrics
from builtin_plugins.workers.arbiter import _child_exit, _metrics_directory
import prometheus_client  # imported before the switch, as in a real parent

directory = _metrics_directory()
assert directory is not None
pids = []
for n in range(2):
    pid = os.fork()
    if pid == 0:
        worker = ServerMetrics(MetricsHub(), "0.1.0")
        worker.begin()
        worker.end("/x", "GET", 200, 0.01)
        worker.begin()  # still in flight when the worker dies
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
# a third worker starting: it has created its file but not sized it yet
(directory / "counter_4000000.db").touch()
hub = MetricsHub()
ServerMetrics(hub, "0.1.0")
print(hub.render("")[0].decode())
print("----")
class Worker:
    def __init__(self, pid):
        self.pid = pid
for pid in pids:
    _child_exit(None, Worker(pid))
print(hub.render("")[0].decode())
import shutil
shutil.rmtree(directory)
print("left:", directory.exists())
"""


def test_worker_processes_are_summed_in_one_exposition() -> None:
    """What serve --workers relies on: the parent switches to multiprocess mode before
    forking, any process's scrape sums every worker (even while another worker is
    creating its files), and an exited worker's live gauges go away while its counters
    stay."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", WORKERS_SCRIPT], capture_output=True, text=True, env=env, check=True
    ).stdout
    running, _, exited = out.partition("----")
    first, after = parse(running), parse(exited.split("left:")[0])
    requests = {"method": "GET", "route": "/x", "status": "200"}
    assert value(first, "llmmc_http_requests_total", **requests) == 2
    assert value(first, "llmmc_http_requests_in_flight") == 2
    assert value(after, "llmmc_http_requests_total", **requests) == 2
    assert value(after, "llmmc_http_requests_in_flight") == 0
    assert out.strip().endswith("left: False")


DEV_PLUGIN = """
from sdk import Plugin, Route, hookimpl


class DevPlugin(Plugin):
    name = "devplug"

    @hookimpl
    def register_routes(self):
        async def version(req):
            return {"answer": ANSWER}

        return [Route("GET", "/api/v1/devplug", version, auth="public")]


ANSWER = "%s"
"""


def test_serve_reload_restarts_on_a_plugin_change(tmp_path: Path) -> None:
    """A plugin under development, installed with an entry point: editing its source
    restarts the server, which then serves the new code."""
    site = tmp_path / "site"
    (site / "devplug").mkdir(parents=True)
    source = site / "devplug" / "__init__.py"
    source.write_text(DEV_PLUGIN % "first")
    dist = site / "devplug-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: devplug\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[llmmultichat.plugins]\ndevplug = devplug:DevPlugin\n")
    server = ServerProcess(
        {"plugins": {"enabled": ["devplug"]}}, tmp_path, env={"PYTHONPATH": str(site)}
    )
    server_args = ["serve", "--reload", "--config", str(server.config_path)]

    async def answer() -> Any:
        try:
            status, body, _ = await server.request("GET", "/api/v1/devplug")
        except OSError:
            return None
        return body["answer"] if status == 200 else None

    async def scenario() -> None:
        assert await wait_for(answer, timeout=30) == "first"
        source.write_text(DEV_PLUGIN % "second")
        assert await wait_for(lambda: _is(answer, "second"), timeout=30)

    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "llmmultichat"), *server_args],
        stdout=server.log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=server.env,
        cwd=str(tmp_path),
    )
    try:
        asyncio.run(scenario())
    finally:
        proc.terminate()
        code = proc.wait(20)
    output = server.output()
    assert "__init__.py changed; restarting" in output, output
    assert code == 0
    # the server child went with the watcher: nothing listens any more
    assert asyncio.run(answer()) is None


async def _is(fetch: Any, expected: str) -> bool:
    return bool(await fetch() == expected)
