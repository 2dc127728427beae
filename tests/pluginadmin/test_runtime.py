"""Plugins at run time, through the admin API: enable, disable and configure while
serving; what a plugin contributes comes and goes; an open chat socket stays open; the
change is stored and applied over plugins.toml at the next start; history is kept."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from builtin_plugins.storage.testing import fresh_schema_url
from sdk import Event, Plugin, PluginEvent, Route, hookimpl
from tests.chat.helpers import frames_until, is_done
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import BIN, to_toml
from tests.translate.chat_setup import chat_table

ADMIN = {"admin": True}


def config(openai_url: str, meteo_url: str, enabled: list[str]) -> dict:
    return {
        "plugins": {
            "enabled": ["pluginadmin", "chat", *enabled],
            "chat": chat_table(openai_url),
            "weather": {"base_url": meteo_url, "geocoding_url": meteo_url},
        }
    }


def offered_tools(request: dict) -> list[str]:
    return sorted(t["function"]["name"] for t in request.get("tools") or [])


async def plugins_of(client, h) -> dict[str, dict]:
    r = await client.get("/api/v1/admin/plugins", headers=h)
    assert r.status == 200, await r.text()
    return {p["name"]: p for p in (await r.json())["plugins"]}


async def test_weather_off_and_on_while_a_chat_socket_stays_open(llmmc, database_url):
    async with FakeOpenAI() as fake, FakeOpenMeteo() as meteo:
        client = await llmmc(config(fake.url, meteo.url, ["weather"]), database_url=database_url)
        admin = client.auth_headers("root", admin=True)
        user = client.auth_headers("u1")
        listed = await plugins_of(client, admin)
        assert listed["weather"]["enabled"] and listed["weather"]["state"] == "RUNNING"
        # installed but not enabled: listed too, disabled
        assert listed["translate"]["enabled"] is False
        assert listed["translate"]["state"] == "DISABLED"
        execute = {"tool": "weather", "params": {"city": "Tokyo"}}

        async with client.ws_connect("/ws/chat", headers=user) as ws:
            fake.queue("first")
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "r1"})
            await frames_until(ws, is_done("r1"))
            assert "weather" in offered_tools(fake.requests[-1])

            r = await client.patch(
                "/api/v1/admin/plugins/weather", json={"enabled": False}, headers=admin
            )
            assert r.status == 200, await r.text()
            body = await r.json()
            assert body["enabled"] is False and body["state"] == "DISABLED"
            assert body["overridden"] == ["enabled"]
            # its routes answer like unknown ones, its tool is gone, OpenAPI forgets it
            r = await client.post("/api/v1/plugins/weather/execute", json=execute, headers=user)
            assert r.status == 404
            spec = await (await client.get("/openapi.json")).json()
            assert not any(
                "weather" in json.dumps(op)
                for op in spec["paths"].values()
                if "weather" in str(op.get("get", {}).get("tags", ""))
            )

            fake.queue("second")
            await ws.send_json({"type": "chat", "message": "again", "request_id": "r2"})
            frames = await frames_until(ws, is_done("r2"))
            assert frames[-1]["type"] == "complete"  # the same socket, still open
            assert "weather" not in offered_tools(fake.requests[-1])

            r = await client.patch(
                "/api/v1/admin/plugins/weather", json={"enabled": True}, headers=admin
            )
            assert r.status == 200 and (await r.json())["state"] == "RUNNING"
            fake.queue("third")
            await ws.send_json({"type": "chat", "message": "and again", "request_id": "r3"})
            await frames_until(ws, is_done("r3"))
            assert "weather" in offered_tools(fake.requests[-1])
            assert not ws.closed
        r = await client.post("/api/v1/plugins/weather/execute", json=execute, headers=user)
        assert r.status == 200, await r.text()

        # the history: state changes with the admin who made them, the tool run
        r = await client.get("/api/v1/admin/plugins/weather/history?limit=50", headers=admin)
        events = (await r.json())["events"]
        assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
        states = [e["detail"] for e in events if e["kind"] == "state"]
        assert states[:2] == ["RUNNING", "DISABLED"]
        assert any(e["kind"] == "state" and e["actor_id"] == "root" for e in events)
        tool = next(e for e in events if e["kind"] == "tool")
        assert tool["outcome"] == "ok" and tool["actor_id"] == "u1" and tool["duration_ms"] >= 0


async def test_configuration_is_checked_applied_stored_and_reapplied_at_start(llmmc, tmp_path):
    async with FakeOpenAI() as fake, FakeOpenMeteo() as meteo:
        cfg = config(fake.url, meteo.url, ["weather"])
        cfg["kernel"] = {"data_dir": str(tmp_path / "data")}
        client = await llmmc(cfg)
        admin = client.auth_headers("root", admin=True)
        before = client.plugin("weather")

        r = await client.patch(
            "/api/v1/admin/plugins/weather",
            json={"config": {"cache_seconds": "soon"}},
            headers=admin,
        )
        assert r.status == 422
        problem = await r.json()
        assert "cache_seconds" in problem["detail"]
        assert client.plugin("weather") is before  # nothing changed

        r = await client.patch(
            "/api/v1/admin/plugins/weather", json={"config": {"cache_seconds": 7}}, headers=admin
        )
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["config"]["cache_seconds"] == 7 and body["overridden"] == ["cache_seconds"]
        assert client.plugin("weather") is not before  # restarted on its new configuration
        assert client.plugin("weather").config["cache_seconds"] == 7
        r = await client.get("/api/v1/admin/plugins/weather/history", headers=admin)
        config_events = [e for e in (await r.json())["events"] if e["kind"] == "config"]
        assert config_events[0]["detail"] == "set cache_seconds"
        await client.close()

        # a new start on the same data: the stored change applies over plugins.toml
        again = await llmmc(cfg)
        assert again.plugin("weather").config["cache_seconds"] == 7
        listed = await plugins_of(again, again.auth_headers("root", admin=True))
        assert listed["weather"]["overridden"] == ["cache_seconds"]


async def test_conflicts_name_the_plugins(llmmc):
    client = await llmmc(
        {"plugins": {"enabled": ["pluginadmin", "weather"], "required": ["weather"]}}
    )
    admin = client.auth_headers("root", admin=True)
    r = await client.patch("/api/v1/admin/plugins/weather", json={"enabled": False}, headers=admin)
    assert r.status == 409 and (await r.json())["code"] == "PLUGIN_LOCKED"
    r = await client.patch("/api/v1/admin/plugins/storage", json={"enabled": False}, headers=admin)
    problem = await r.json()
    assert r.status == 409 and problem["code"] == "PLUGIN_LOCKED"
    # chat requires storage and auth-ish plugins: memory requires storage too; enabling one
    # whose requirement is off names it
    r = await client.patch(
        "/api/v1/admin/plugins/nosuchplugin", json={"enabled": True}, headers=admin
    )
    assert r.status == 404
    r = await client.patch("/api/v1/admin/plugins/weather", json={}, headers=admin)
    assert r.status == 422
    user = client.auth_headers("u1")
    r = await client.get("/api/v1/admin/plugins", headers=user)
    assert r.status == 403


LATECOMER = """
from sdk import Plugin, Route, hookimpl


class Latecomer(Plugin):
    name = "latecomer"
    version = "0.3.0"
    description = "installed after the server started"
    config_schema = {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}}}

    @hookimpl
    def register_routes(self):
        async def hello(req):
            return {"greeting": self.config["greeting"]}

        return [Route("GET", "/api/v1/latecomer", hello, auth="public")]
"""


async def test_rescan_finds_a_distribution_installed_after_start(llmmc, tmp_path, monkeypatch):
    client = await llmmc({"plugins": {"enabled": ["pluginadmin"]}})
    admin = client.auth_headers("root", admin=True)
    assert "latecomer" not in await plugins_of(client, admin)
    assert (await client.get("/api/v1/latecomer")).status == 404

    # "pip install" while serving: a package and its dist-info on the import path
    site = tmp_path / "site"
    (site / "llmmc_latecomer").mkdir(parents=True)
    (site / "llmmc_latecomer" / "__init__.py").write_text(LATECOMER)
    info = site / "llmmc_latecomer-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llmmc-latecomer\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(
        "[llmmultichat.plugins]\nlatecomer = llmmc_latecomer:Latecomer\n"
    )
    monkeypatch.syspath_prepend(str(site))

    r = await client.post("/api/v1/admin/plugins/rescan", headers=admin)
    assert r.status == 200
    found = {p["name"]: p for p in (await r.json())["plugins"]}["latecomer"]
    assert found["enabled"] is False and found["version"] == "0.3.0"
    assert found["distribution"] == "llmmc-latecomer"
    r = await client.patch(
        "/api/v1/admin/plugins/latecomer",
        json={"enabled": True, "config": {"greeting": "hello"}},
        headers=admin,
    )
    assert r.status == 200, await r.text()
    r = await client.get("/api/v1/latecomer")
    assert r.status == 200 and (await r.json()) == {"greeting": "hello"}
    spec = await (await client.get("/openapi.json")).json()
    assert "/api/v1/latecomer" in spec["paths"]
    r = await client.patch(
        "/api/v1/admin/plugins/latecomer", json={"enabled": False}, headers=admin
    )
    assert (await client.get("/api/v1/latecomer")).status == 404
    assert "/api/v1/latecomer" not in (await (await client.get("/openapi.json")).json())["paths"]


class Listener(Plugin):
    """A plugin with a hook and an event subscription, to see both come and go."""

    name = "listener"
    seen: list[str] = []

    async def start(self) -> None:
        self.context.bus.subscribe("demo.*", self.on_event)

    async def on_event(self, event: Event) -> None:
        Listener.seen.append(event.topic)

    @hookimpl
    def browser_home(self) -> str:
        return "/from-listener"


async def test_hooks_and_subscriptions_come_and_go(llmmc):
    Listener.seen = []
    client = await llmmc(
        {"plugins": {"enabled": ["pluginadmin", "listener"]}}, plugins={"listener": Listener}
    )
    admin = client.auth_headers("root", admin=True)
    html = {"Accept": "text/html"}
    bus = client.kernel.bus

    r = await client.get("/", headers=html, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/from-listener"
    await bus.publish("demo.one", {})
    assert Listener.seen == ["demo.one"]

    r = await client.patch("/api/v1/admin/plugins/listener", json={"enabled": False}, headers=admin)
    assert r.status == 200, await r.text()
    r = await client.get("/", headers=html, allow_redirects=False)
    assert r.status == 200  # no browser_home any more
    await bus.publish("demo.two", {})
    assert Listener.seen == ["demo.one"]

    await client.patch("/api/v1/admin/plugins/listener", json={"enabled": True}, headers=admin)
    await bus.publish("demo.three", {})
    assert Listener.seen == ["demo.one", "demo.three"]  # subscribed once, not twice
    r = await client.get("/", headers=html, allow_redirects=False)
    assert r.status == 302


async def test_the_command_line_stores_a_change_while_no_server_runs(llmmc, tmp_path):
    data = tmp_path / "data"
    cfg = {
        "kernel": {"data_dir": str(data)},
        "plugins": {"enabled": ["storage", "pluginadmin", "weather"]},
    }
    path = tmp_path / "plugins.toml"
    path.write_text(to_toml(cfg))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), "plugins", *args, "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = await asyncio.to_thread(cli, "disable", "weather")
    assert done.returncode == 0, done.stderr
    assert "weather: disabled (stored" in done.stdout
    refused = await asyncio.to_thread(cli, "disable", "storage")
    assert (
        refused.returncode == 1
        and "PLUGIN_LOCKED" not in refused.stderr
        and "cannot be disabled" in refused.stderr
    )
    unknown = await asyncio.to_thread(cli, "enable", "nosuch")
    assert unknown.returncode == 1 and "No plugin named 'nosuch'" in unknown.stderr

    client = await llmmc(cfg)
    assert (await client.get("/api/v1/plugins/weather")).status == 404
    listed = await plugins_of(client, client.auth_headers("root", admin=True))
    assert listed["weather"]["enabled"] is False and listed["weather"]["overridden"] == ["enabled"]


async def test_a_plugin_enabled_at_run_time_brings_its_commands(llmmc, tmp_path):
    cfg = {
        "kernel": {"data_dir": str(tmp_path / "data")},
        "plugins": {"enabled": ["storage", "pluginadmin"]},
    }
    path = tmp_path / "plugins.toml"
    path.write_text(to_toml(cfg))

    def users_list() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), "users", "list", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    client = await llmmc(cfg)
    before = await asyncio.to_thread(users_list)
    assert before.returncode == 2 and "invalid choice: 'users'" in before.stderr
    r = await client.patch(
        "/api/v1/admin/plugins/auth",
        json={"enabled": True},
        headers=client.auth_headers("root", admin=True),
    )
    assert r.status == 200, await r.text()
    after = await asyncio.to_thread(users_list)
    assert after.returncode == 0, after.stderr  # through the running server's socket
    r = await client.patch(
        "/api/v1/admin/plugins/auth",
        json={"enabled": False},
        headers=client.auth_headers("root", admin=True),
    )
    assert r.status == 200
    gone = await asyncio.to_thread(users_list)
    assert gone.returncode == 2


class Fussy(Plugin):
    """Starts only with a mood it likes (valid by its schema either way)."""

    name = "fussy"
    config_schema = {
        "type": "object",
        "properties": {"mood": {"type": "string", "default": "calm"}},
    }

    async def start(self) -> None:
        if self.config["mood"] != "calm":
            raise RuntimeError(f"cannot work in a {self.config['mood']} mood")


async def test_a_change_the_plugin_fails_on_is_undone_and_not_kept(llmmc):
    client = await llmmc(
        {"plugins": {"enabled": ["pluginadmin", "fussy"]}}, plugins={"fussy": Fussy}
    )
    admin = client.auth_headers("root", admin=True)
    before = client.plugin("fussy")
    r = await client.patch(
        "/api/v1/admin/plugins/fussy", json={"config": {"mood": "stormy"}}, headers=admin
    )
    assert r.status == 422, await r.text()
    problem = await r.json()
    assert problem["code"] == "PLUGIN_START_FAILED" and "stormy mood" in problem["detail"]
    listed = await plugins_of(client, admin)
    assert listed["fussy"]["state"] == "RUNNING" and listed["fussy"]["config"]["mood"] == "calm"
    assert listed["fussy"]["overridden"] == []
    assert client.plugin("fussy") is not before  # restarted twice, on the old config at the end
    assert await client.database.fetchval("SELECT count(*) FROM plugin_overrides") == 0


class Slow(Plugin):
    name = "slow"
    stopped_while_busy = False

    async def initialize(self) -> None:
        self.busy = 0

    async def stop(self) -> None:
        Slow.stopped_while_busy = self.busy > 0

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def slow(req: Any) -> Any:
            self.busy += 1
            try:
                await asyncio.sleep(0.6)
                return {"done": True}
            finally:
                self.busy -= 1

        return [Route("GET", "/api/v1/slow", slow, auth="public")]


async def test_requests_in_flight_finish_before_the_plugin_stops(llmmc):
    client = await llmmc({"plugins": {"enabled": ["pluginadmin", "slow"]}}, plugins={"slow": Slow})
    admin = client.auth_headers("root", admin=True)
    in_flight = asyncio.create_task(client.get("/api/v1/slow"))
    await asyncio.sleep(0.2)
    r = await client.patch("/api/v1/admin/plugins/slow", json={"enabled": False}, headers=admin)
    assert r.status == 200
    answered = await in_flight
    assert answered.status == 200 and (await answered.json()) == {"done": True}
    assert Slow.stopped_while_busy is False
    assert (await client.get("/api/v1/slow")).status == 404


async def test_request_wrapping_plugins_come_and_go(llmmc):
    """Middleware is part of the request path rebuilt on each change: compression and the
    metrics endpoint with its per-request counts."""
    client = await llmmc({"plugins": {"enabled": ["pluginadmin", "compression", "metrics"]}})
    admin = client.auth_headers("root", admin=True)
    gzip = {"Accept-Encoding": "gzip"}
    big = "/openapi.json"
    r = await client.get(big, headers=gzip)
    assert r.headers.get("Content-Encoding") == "gzip"
    await client.patch("/api/v1/admin/plugins/compression", json={"enabled": False}, headers=admin)
    r = await client.get(big, headers=gzip)
    assert r.status == 200 and "Content-Encoding" not in r.headers

    r = await client.get("/metrics")
    assert r.status == 200 and "llmmc_http_requests_total" in await r.text()
    await client.patch("/api/v1/admin/plugins/metrics", json={"enabled": False}, headers=admin)
    assert (await client.get("/metrics")).status == 404
    r = await client.patch("/api/v1/admin/plugins/metrics", json={"enabled": True}, headers=admin)
    assert r.status == 200, await r.text()
    await client.get("/ping")
    text = await (await client.get("/metrics")).text()
    assert 'route="/ping"' in text  # counted again by the new instance's middleware


class Tunable(Plugin):
    """Applies a new configuration itself: no restart."""

    name = "tunable"
    config_schema = {"type": "object", "properties": {"level": {"type": "integer", "default": 1}}}

    async def reconfigure(self, config: dict[str, Any]) -> bool:
        self.config = config
        return True


async def test_a_plugin_may_apply_a_new_configuration_itself(llmmc):
    client = await llmmc(
        {"plugins": {"enabled": ["pluginadmin", "tunable"]}}, plugins={"tunable": Tunable}
    )
    before = client.plugin("tunable")
    r = await client.patch(
        "/api/v1/admin/plugins/tunable",
        json={"config": {"level": 3}},
        headers=client.auth_headers("root", admin=True),
    )
    assert r.status == 200 and (await r.json())["config"]["level"] == 3
    assert client.plugin("tunable") is before and before.config["level"] == 3  # not restarted


async def test_an_instance_that_missed_the_event_catches_up_from_the_database(
    llmmc, postgres_database
):
    """Two servers on one PostgreSQL database but no shared bus (each its own in-process
    one): the second hears nothing and still follows within its poll interval."""
    url = fresh_schema_url(postgres_database)
    cfg = {"plugins": {"enabled": ["pluginadmin", "weather"], "pluginadmin": {"poll_seconds": 0.3}}}
    a = await llmmc(cfg, database_url=url)
    b = await llmmc(cfg, database_url=url)
    admin = a.auth_headers("root", admin=True)
    r = await a.patch("/api/v1/admin/plugins/weather", json={"enabled": False}, headers=admin)
    assert r.status == 200
    for _ in range(40):
        if (await b.get("/api/v1/plugins/weather")).status == 404:
            break
        await asyncio.sleep(0.05)
    assert (await b.get("/api/v1/plugins/weather")).status == 404
    listed = await plugins_of(b, admin)
    assert listed["weather"]["enabled"] is False and listed["weather"]["overridden"] == ["enabled"]


async def test_history_keeps_the_newest_entries_per_plugin(llmmc):
    client = await llmmc(
        {"plugins": {"enabled": ["pluginadmin"], "pluginadmin": {"keep_events": 100}}}
    )
    server = client.kernel
    for i in range(130):
        server.record(PluginEvent("weather", "tool", "ok", f"run {i}", at=1000.0 + i))
    server.record(PluginEvent("storage", "tool", "error", "other", "boom", at=2000.0))
    r = await client.get(
        "/api/v1/admin/plugins/weather/history?limit=500",
        headers=client.auth_headers("root", admin=True),
    )
    events = (await r.json())["events"]
    assert len(events) == 100
    assert events[0]["detail"] == "run 129" and events[-1]["detail"] == "run 30"
    r = await client.get(
        "/api/v1/admin/plugins/storage/history", headers=client.auth_headers("root", admin=True)
    )
    [other] = (await r.json())["events"]
    assert other["outcome"] == "error" and other["error"] == "boom"


async def test_the_last_authenticating_plugin_cannot_be_disabled(llmmc):
    client = await llmmc({"plugins": {"enabled": ["pluginadmin"]}})
    admin = client.auth_headers("root", admin=True)
    r = await client.patch("/api/v1/admin/plugins/testauth", json={"enabled": False}, headers=admin)
    problem = await r.json()
    assert (
        r.status == 409
        and problem["code"] == "PLUGIN_LOCKED"
        and problem["plugins"] == ["testauth"]
    )
    assert "authenticates" in problem["detail"]
