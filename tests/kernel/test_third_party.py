"""Third parties are first-class: the dice example (its own distribution, in examples/)
is installed with pip, found through its entry point, configured from plugins.toml,
serves a route and contributes a tool, with no change to the kernel; the echo example adds
an LLM provider type a character speaks through, over REST, SSE and WebSocket, with no
change to chat. And the scaffold writes a plugin that installs, is discovered, and whose
own test passes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.chat.helpers import read_sse
from tests.serverproc import BIN, ROOT, ServerProcess

PIP = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]


def pip_install(path: Path) -> None:
    subprocess.run([*PIP, str(path)], check=True, timeout=300)


def pip_uninstall(dist: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", dist], check=False, timeout=120
    )


@pytest.fixture(scope="module")
def dice_installed() -> Any:
    pip_install(ROOT / "examples" / "llmmultichat-dice")
    yield
    pip_uninstall("llmmultichat-dice")


def test_dice_is_discovered_configured_and_serves(dice_installed: Any, tmp_path: Path) -> None:
    listing = subprocess.run(
        [str(BIN), "plugins", "--config", str(ROOT / "plugins.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in listing.stdout.splitlines() if x.startswith("dice "))
    assert "llmmultichat-dice 1.0.0" in line and "llmmc_dice.plugin:DicePlugin" in line

    config = {"plugins": {"enabled": ["dice"], "dice": {"max_dice": 2, "default_sides": 4}}}

    async def scenario(server: ServerProcess) -> None:
        status, body, _ = await server.request("GET", "/api/v1/dice/roll?count=2")
        assert status == 200 and body["sides"] == 4 and len(body["rolls"]) == 2
        status, body, _ = await server.request("GET", "/api/v1/dice/roll?count=3")
        assert status == 422  # max_dice from plugins.toml
        status, body, _ = await server.request("GET", "/api/v1/plugins/dice")
        assert body["distribution"] == "llmmultichat-dice"
        assert "config" not in body  # shown to administrators only
        assert [t["name"] for t in body["tools"]] == ["roll_dice"]
        status, doc, _ = await server.request("GET", "/openapi.json")
        assert (
            "/api/v1/dice/roll" in doc["paths"] and "/api/v1/plugins/dice/execute" in doc["paths"]
        )

    with ServerProcess(config, tmp_path) as server:
        asyncio.run(scenario(server))


async def test_dice_tool_runs_through_execute(dice_installed: Any, llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["dice"]}})
    r = await client.post(
        "/api/v1/plugins/dice/execute",
        json={"tool": "roll_dice", "params": {"count": 3, "sides": 8}},
        headers=client.auth_headers("u1"),
    )
    body = await r.json()
    assert r.status == 200 and len(body["result"]["rolls"]) == 3
    assert all(1 <= x <= 8 for x in body["result"]["rolls"])
    assert client.kernel.tools.get("roll_dice") is not None  # offered to characters too


@pytest.fixture(scope="module")
def echo_installed() -> Any:
    pip_install(ROOT / "examples" / "llmmultichat-echo")
    yield
    pip_uninstall("llmmultichat-echo")


def test_a_character_speaks_through_a_third_party_provider(
    echo_installed: Any, tmp_path: Path
) -> None:
    config = {
        "plugins": {
            "enabled": ["auth", "chat", "echo"],
            "auth": {"jwt_secret": "echo-test-secret-0123456789abcdef", "bcrypt_rounds": 4},
            "chat": {
                "default_provider": "parrot",
                "providers": {
                    "parrot": {
                        "type": "echo",
                        "prefix": "Polly heard: ",
                        "replies": {"cracker": "Polly wants a cracker, thank you"},
                    }
                },
                "characters": {"polly": {"name": "Polly", "provider": "parrot"}},
            },
        }
    }

    async def scenario(server: ServerProcess) -> None:
        status, body, _ = await server.request(
            "POST",
            "/api/v1/auth/register",
            json={"username": "ada", "email": "ada@example.com", "password": "parrot-talk-42"},
        )
        assert status == 201, body
        h = {"Authorization": f"Bearer {body['access_token']}"}
        status, body, _ = await server.request("GET", "/api/v1/chat/characters", headers=h)
        shown = ("id", "name", "description", "provider", "model", "aliases")
        assert [{k: c[k] for k in shown} for c in body] == [
            {
                "id": "polly",
                "name": "Polly",
                "description": "",
                "provider": "parrot",
                "model": "echo-1",
                "aliases": [],
            }
        ]
        # REST
        status, body, _ = await server.request(
            "POST", "/api/v1/chat", json={"user_input": "good morning"}, headers=h
        )
        assert status == 200, body
        assert body["character"] == "polly" and body["response"] == "Polly heard: good morning"
        session_id = body["session_id"]
        async with aiohttp.ClientSession() as http:
            # SSE: the rule's reply, streamed word by word
            async with http.post(
                server.url + "/api/v1/chat/stream",
                json={"user_input": "a CRACKER?", "session_id": session_id},
                headers=h,
            ) as resp:
                assert resp.status == 200
                events = await read_sse(resp)
            chunks = [data["delta"] for kind, data in events if kind == "chunk"]
            assert "".join(chunks) == "Polly wants a cracker, thank you" and len(chunks) > 2
            assert events[-1] == ("done", {"session_id": session_id})
            # WebSocket
            async with http.ws_connect(server.url + "/ws/chat", headers=h) as ws:
                await ws.send_json({"type": "chat", "message": "hi", "request_id": "r1"})
                frames = []
                while not frames or frames[-1]["type"] not in ("complete", "error"):
                    frames.append(json.loads((await ws.receive(timeout=30)).data))
            assert "".join(f["data"] for f in frames if f["type"] == "chunk") == "Polly heard: hi"
            assert frames[-1]["type"] == "complete" and frames[-1]["session_id"]
        status, body, _ = await server.request(
            "GET", f"/api/v1/chat/history/{session_id}", headers=h
        )
        assert [m["content"] for m in body["messages"]] == [
            "good morning",
            "Polly heard: good morning",
            "a CRACKER?",
            "Polly wants a cracker, thank you",
        ]
        status, body, _ = await server.request("GET", "/health")
        chat = body["plugins"]["chat"]
        assert chat["status"] == "ok", body
        assert chat["checks"]["providers"]["parrot"] == {
            "type": "echo",
            "status": "ok",
            "model": "echo-1",
        }

    with ServerProcess(config, tmp_path) as server:
        asyncio.run(scenario(server))


def test_scaffolded_plugin_installs_is_discovered_and_its_test_passes(tmp_path: Path) -> None:
    made = subprocess.run(
        [str(BIN), "plugin", "new", "shout", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    root = tmp_path / "llmmultichat-shout"
    assert (root / "pyproject.toml").exists()
    pip_install(root)
    try:
        listing = subprocess.run(
            [str(BIN), "plugins"], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
        )
        assert any(x.startswith("shout ") for x in listing.stdout.splitlines())
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(root),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 passed" in result.stdout
    finally:
        pip_uninstall("llmmultichat-shout")
    again = subprocess.run(
        [str(BIN), "plugin", "new", "shout", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = subprocess.run(
        [str(BIN), "plugin", "new", "Bad-Name", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
