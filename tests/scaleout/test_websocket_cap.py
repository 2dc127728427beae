"""One user may hold ``[plugins.chat.websocket] max_per_user`` authenticated WebSockets on
an instance; one more gets an error frame and the close code 4429, and a socket closed
frees its place (a real ``serve`` process)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess

PASSWORD = "Corr3ct-horse"


async def token_of(server: ServerProcess) -> str:
    tag = uuid.uuid4().hex[:10]
    body = {"username": f"u_{tag}", "email": f"{tag}@example.com", "password": PASSWORD}
    status, data, _ = await server.request("POST", "/api/v1/auth/register", json=body)
    assert status == 201, data
    return str(data["access_token"])


async def test_a_user_holds_at_most_max_per_user_websockets(tmp_path: Path) -> None:
    async with FakeOpenAI(default_reply="Hi.") as fake:
        config: dict[str, Any] = {
            "kernel": {"log_level": "WARNING"},
            "plugins": {
                "enabled": ["auth", "chat"],
                "required": ["auth", "chat"],
                "auth": {"jwt_secret": "ws-cap-tests-" + "w" * 40, "bcrypt_rounds": 4},
                "chat": {
                    "default_provider": "fake",
                    "providers": {"fake": {"type": "openai", "base_url": fake.url, "model": "m"}},
                    "characters": {
                        "lumina": {"name": "Lumina", "provider": "fake", "persona": "Lumina."}
                    },
                    "websocket": {"max_per_user": 3},
                },
            },
        }
        with ServerProcess(config, tmp_path) as server:
            alice, bob = await token_of(server), await token_of(server)
            url = server.url.replace("http", "ws") + "/ws/chat"
            async with aiohttp.ClientSession() as http:
                held = [
                    await http.ws_connect(url, headers={"Authorization": f"Bearer {alice}"})
                    for _ in range(3)
                ]
                for ws in held:  # all three are served
                    await ws.send_json({"type": "ping"})
                    assert (await ws.receive_json(timeout=10))["type"] == "pong"
                # the fourth, authenticated by its upgrade's header: refused
                extra = await http.ws_connect(url, headers={"Authorization": f"Bearer {alice}"})
                frame = await extra.receive(timeout=10)
                error = json.loads(frame.data)
                assert error["code"] == "TOO_MANY_CONNECTIONS" and error["status"] == 429
                frame = await extra.receive(timeout=10)
                assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 4429, frame
                # ... and one authenticated by an auth message too
                late = await http.ws_connect(url)
                await late.send_json({"type": "auth", "token": alice})
                assert json.loads((await late.receive(timeout=10)).data)["status"] == 429
                assert (await late.receive(timeout=10)).data == 4429
                # other users are not affected
                other = await http.ws_connect(url, headers={"Authorization": f"Bearer {bob}"})
                await other.send_json({"type": "ping"})
                assert (await other.receive_json(timeout=10))["type"] == "pong"
                # a closed socket frees its place
                await held.pop().close()
                again = None
                for _ in range(50):
                    again = await http.ws_connect(url, headers={"Authorization": f"Bearer {alice}"})
                    await again.send_json({"type": "ping"})
                    frame = await again.receive(timeout=10)
                    if json.loads(frame.data).get("type") == "pong":
                        break
                    await again.close()
                else:
                    raise AssertionError("the closed socket's place was not freed")
                for ws in [*held, again, other]:
                    await ws.close()
