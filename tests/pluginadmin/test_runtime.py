"""Plugins at run time, through the admin API: enable, disable and configure while
serving; what a plugin contributes comes and goes; an open chat socket stays open; the
change is stored and applied over plugins.toml at the next start; history is kept."""

from __future__ import annotations

import json

from tests.chat.helpers import frames_until, is_done
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.openai_server import FakeOpenAI
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
