"""The chat WebSocket as a hostile client (or a careless one) meets it: a socket lives
only as long as what authenticated it, on every instance; text that is not Unicode and
absurd nesting get BAD_MESSAGE and the socket keeps working; a writer that fails closes
its socket; the seed's clients (no ``type``) still chat."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

import aiohttp

from sdk import Identity, Plugin, errors, hookimpl
from tests.chat.helpers import chat_config, frames_until, is_done
from tests.fakes.openai_server import FakeOpenAI


async def chats(ws: Any, rid: str | None = None) -> bool:
    rid = rid or uuid.uuid4().hex[:8]
    await ws.send_json({"type": "chat", "message": "still there?", "request_id": rid})
    return (await frames_until(ws, is_done(rid)))[-1]["type"] == "complete"


async def closed_with(ws: Any, code: int = 4401, limit: float = 10) -> str:
    """Wait for the server's close frame; its reason."""
    async with asyncio.timeout(limit):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                continue  # the error frame explaining the close
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            assert msg.data == code, (msg.data, msg.extra)
            return str(msg.extra or "")


class ShortTokens(Plugin):
    """Access tokens that expire: ``short:<user>`` in 1.5 s, ``long:<user>`` in an hour."""

    name = "shorttokens"

    @hookimpl
    async def authenticate(self, request: Any) -> Identity | None:
        header = request.headers.get("Authorization", "")
        kind, _, user = header.removeprefix("Bearer ").partition(":")
        if kind not in ("short", "long") or not user:
            raise errors.InvalidCredentials("unknown token")
        exp = time.time() + (1.5 if kind == "short" else 3600)
        return Identity(user_id=user, scheme="jwt", claims={"sub": user, "exp": exp})


async def test_a_socket_ends_when_its_token_expires_unless_renewed(llmmc: Any) -> None:
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("shorttokens", "chat"))
        client = await llmmc(cfg, plugins={"shorttokens": ShortTokens}, test_auth=False)
        async with (
            client.ws_connect("/ws/chat", headers={"Authorization": "Bearer short:ann"}) as ws1,
            client.ws_connect("/ws/chat", headers={"Authorization": "Bearer short:bob"}) as ws2,
        ):
            assert await chats(ws1)
            await ws2.send_json({"type": "auth", "token": "long:bob"})  # renewed in time
            assert (await ws2.receive_json())["type"] == "auth_ok"
            assert "expired" in await closed_with(ws1)
            await asyncio.sleep(0.5)  # past the first token's expiry
            assert await chats(ws2)


async def test_a_closed_socket_is_not_kept_until_its_token_expires(llmmc: Any) -> None:
    """Each socket waits for its token's expiry on a timer; a socket that closes before
    must let go of it (it held the connection, its buffers and its request: a server
    kept every WebSocket of the last token lifetime, an hour here). Nor is a finished
    turn kept by the timers its run started (through LangGraph's context)."""
    from builtin_plugins.chat.graph import Turn
    from builtin_plugins.chat.websocket import Connection

    def connections() -> int:
        gc.collect()
        return sum(type(o) in (Connection, Turn) for o in gc.get_objects())

    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("shorttokens", "chat"))
        client = await llmmc(cfg, plugins={"shorttokens": ShortTokens}, test_auth=False)
        before = connections()
        for _ in range(5):
            async with client.ws_connect(
                "/ws/chat", headers={"Authorization": "Bearer long:ann"}
            ) as ws:
                assert await chats(ws)
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi"}, headers={"Authorization": "Bearer long:ann"}
        )
        assert r.status == 200, await r.text()
        for _ in range(200):  # the server's side of the close may lag a little
            if connections() <= before:
                break
            await asyncio.sleep(0.05)
        assert connections() <= before


async def test_bad_text_and_deep_nesting_get_bad_message_and_the_socket_lives(llmmc: Any) -> None:
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            for bad in (
                '{"type": "chat", "message": "a\\ud800b"}',
                '{"type": "chat", "message": "ok", "session_id": "\\udfff"}',
                '{"type": "chat", "message": "nul\\u0000"}',
                '{"type": "chat", "message": "x", "deep": ' + "[" * 5000 + "]" * 5000 + "}",
            ):
                await ws.send_str(bad)
                frame = await ws.receive_json(timeout=5)
                assert frame["type"] == "error" and frame["code"] == "BAD_MESSAGE", frame
            assert await chats(ws)
        r = await client.get("/api/v1/chat/sessions", headers=client.auth_headers("u1"))
        assert len((await r.json())["sessions"]) == 1  # only the good message was stored


async def test_an_upstream_reply_with_broken_text_is_repaired(llmmc: Any) -> None:
    """A reply holding a lone surrogate used to kill the socket's writer and leave the
    socket half-dead (open, silent), and to fail the chat store's commit."""
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        fake.queue("broken \ud800 reply")
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "r1"})
            frames = await frames_until(ws, is_done("r1"))
            text = "".join(f["data"] for f in frames if f["type"] == "chunk")
            assert frames[-1]["type"] == "complete" and text == "broken \ufffd reply"
            assert await chats(ws)
        session = frames[-1]["session_id"]
        r = await client.get(f"/api/v1/chat/history/{session}", headers=client.auth_headers("u1"))
        stored = [m["content"] for m in (await r.json())["messages"]]
        assert "broken \ufffd reply" in stored


async def test_a_socket_whose_writer_fails_is_closed(llmmc: Any) -> None:
    """The client vanishes mid-reply: the socket is closed and forgotten, while the reply
    is still finished and stored."""
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        hub = client.plugin("chat").websockets
        fake.delay = 0.3
        ws = await client.ws_connect("/ws/chat", headers=client.auth_headers("gone"))
        await ws.send_json({"type": "chat", "message": "hi", "request_id": "r1"})
        assert (await ws.receive_json(timeout=5))["type"] == "start"
        [conn] = hub.connections
        replies = list(conn.tasks.values())
        ws._response.connection.transport.abort()  # no close frame: the peer just vanishes
        await asyncio.wait_for(asyncio.gather(conn.writer, *replies, return_exceptions=True), 10)
        assert conn.closed and conn.ws.closed
        await ws.close()
        r = await client.get("/api/v1/chat/sessions", headers=client.auth_headers("gone"))
        assert (await r.json())["sessions"][0]["message_count"] == 2


async def test_seed_format_messages_are_chat(llmmc: Any) -> None:
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        async with client.ws_connect("/ws/chat") as ws:
            await ws.send_json({"message": "hello seed", "token": "test:seed"})
            frames = await frames_until(ws, lambda f: f["type"] in ("complete", "error"))
            assert frames[-1]["type"] == "complete", frames
            session = frames[-1]["session_id"]
            await ws.send_json({"message": "again", "session_id": session, "character": "nox"})
            frames = await frames_until(ws, lambda f: f["type"] in ("complete", "error"))
            assert frames[-1]["type"] == "complete" and frames[-1]["session_id"] == session
            assert frames[0]["character"] == "nox"


async def test_a_socket_ends_with_its_login_password_or_account(llmmc: Any) -> None:
    """Logout of one login, a password change and disabling each close the sockets they
    end with 4401 and a reason, at once; sockets the event does not concern chat on."""
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("auth", "chat"))
        cfg["plugins"]["auth"] = {"jwt_secret": "x" * 40, "bcrypt_rounds": 4}
        client = await llmmc(cfg)
        password = "correct horse battery 9"
        body = {"username": "lee", "email": "lee@example.com", "password": password}
        logins = [await (await client.post("/api/v1/auth/register", json=body)).json()]
        for _ in range(2):
            login = {"email": "lee@example.com", "password": password}
            logins.append(await (await client.post("/api/v1/auth/login", json=login)).json())
        a, b, c = ({"Authorization": f"Bearer {t['access_token']}"} for t in logins)
        async with (
            client.ws_connect("/ws/chat", headers=a) as ws_a,
            client.ws_connect("/ws/chat", headers=b) as ws_b,
            client.ws_connect("/ws/chat", headers=c) as ws_c,
        ):
            assert await chats(ws_a) and await chats(ws_b) and await chats(ws_c)
            r = await client.post(
                "/api/v1/auth/logout", json={"refresh_token": logins[0]["refresh_token"]}, headers=a
            )
            assert r.status == 204
            await closed_with(ws_a, limit=5)
            assert await chats(ws_b) and await chats(ws_c)  # other logins live on

            r = await client.post(
                "/api/v1/auth/change-password",
                json={"current_password": password, "new_password": password + "x"},
                headers=b,
            )
            assert r.status == 204
            assert "password" in await closed_with(ws_c, limit=5)
            assert await chats(ws_b)  # the login that changed the password stays

            accounts = client.kernel.records["auth"].instance.admin
            await accounts.update_user(None, logins[0]["user"]["user_id"], disabled=True)
            assert "disabled" in await closed_with(ws_b, limit=5)
