"""WebSocket /ws/chat: the three ways to authenticate, multiplexing, cancel, ping/pong,
bad messages, size limit, rate limiting, upstream errors and shutdown."""

from __future__ import annotations

import asyncio

import aiohttp

from kernel.testing import start_kernel
from tests.chat.helpers import chat_config, frames_until, is_done
from tests.fakes.openai_server import FakeOpenAI


async def test_three_ways_to_authenticate_and_bad_tokens(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        # 1. header on the upgrade
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "a"})
            frames = await frames_until(ws, is_done("a"))
            assert frames[0] == {
                "type": "start",
                "request_id": "a",
                "session_id": frames[-1]["session_id"],
                "character": "lumina",
            }
            assert (
                "".join(f["data"] for f in frames if f["type"] == "chunk") == "Hello! You said: hi"
            )
            assert frames[-1]["type"] == "complete" and frames[-1]["message_id"].startswith("msg_")
        # 2. an auth message first
        async with client.ws_connect("/ws/chat") as ws:
            await ws.send_json({"type": "auth", "token": "test:u2"})
            assert await ws.receive_json() == {"type": "auth_ok", "user_id": "u2"}
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "b"})
            assert (await frames_until(ws, is_done("b")))[-1]["type"] == "complete"
        # 3. a token field in the chat message
        async with client.ws_connect("/ws/chat") as ws:
            await ws.send_json(
                {"type": "chat", "message": "hi", "request_id": "c", "token": "test:u3"}
            )
            assert (await frames_until(ws, is_done("c")))[-1]["type"] == "complete"
        r = await client.get("/api/v1/chat/sessions", headers=client.auth_headers("u3"))
        assert len((await r.json())["sessions"]) == 1
        # no credentials: AUTH_REQUIRED, then the socket closes
        async with client.ws_connect("/ws/chat") as ws:
            await ws.send_json({"type": "chat", "message": "hi"})
            frame = await ws.receive_json()
            assert frame["type"] == "error" and frame["code"] == "AUTH_REQUIRED"
            msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # a bad token: INVALID_TOKEN, then closed
        async with client.ws_connect("/ws/chat") as ws:
            await ws.send_json({"type": "auth", "token": "garbage"})
            frame = await ws.receive_json()
            assert frame["code"] == "INVALID_TOKEN"
            assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # a bad header token is reported; the client may still authenticate by message
        async with client.ws_connect("/ws/chat", headers={"Authorization": "Bearer nope"}) as ws:
            assert (await ws.receive_json())["code"] == "INVALID_TOKEN"
            await ws.send_json({"type": "auth", "token": "test:u4"})
            assert (await ws.receive_json())["type"] == "auth_ok"


async def test_bad_messages_get_error_frames_and_the_socket_stays_open(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, websocket={"max_message_bytes": 1024})
        client = await llmmc(cfg)
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            for bad in [
                "not json",
                "[1,2]",
                '{"type": 5}',
                '{"type": "dance"}',
                '{"type": "chat"}',
                '{"type": "chat", "message": "hi", "session_id": 3}',
                '{"type": "cancel", "request_id": "nothing"}',
                '{"type": "chat", "message": "' + "x" * 2000 + '"}',
            ]:
                await ws.send_str(bad)
                frame = await ws.receive_json(timeout=5)
                assert frame["type"] == "error" and frame["code"] == "BAD_MESSAGE", (bad, frame)
            await ws.send_json(
                {"type": "chat", "message": "hi", "character": "nobody", "request_id": "q"}
            )
            assert (await ws.receive_json(timeout=5))["code"] == "BAD_MESSAGE"
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json(timeout=5) == {"type": "pong"}
            await ws.send_json({"type": "chat", "message": "still here", "request_id": "ok"})
            assert (await frames_until(ws, is_done("ok")))[-1]["type"] == "complete"


async def test_multiplexed_requests_and_cancel(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            fake.queue(" ".join(f"slow{i}" for i in range(40)), chunk_delay=0.05)
            fake.queue("quick answer")
            await ws.send_json({"type": "chat", "message": "long one", "request_id": "slow"})
            first = await ws.receive_json(timeout=5)
            assert first["request_id"] == "slow"
            await ws.send_json(
                {"type": "chat", "message": "short one", "request_id": "fast", "character": "nox"}
            )
            frames = await frames_until(ws, is_done("fast"))
            assert frames[-1]["type"] == "complete"
            fast_text = "".join(
                f["data"] for f in frames if f["type"] == "chunk" and f["request_id"] == "fast"
            )
            assert fast_text == "quick answer"
            # the fast request finished while the slow one was still in flight
            assert not any(f["request_id"] == "slow" and f["type"] == "complete" for f in frames)
            streamed = [
                f["data"] for f in frames if f["type"] == "chunk" and f["request_id"] == "slow"
            ]
            while not streamed:
                frame = await ws.receive_json(timeout=5)
                if frame["type"] == "chunk":
                    streamed.append(frame["data"])
            await ws.send_json({"type": "cancel", "request_id": "slow"})
            frames = await frames_until(ws, is_done("slow"))
            streamed += [f["data"] for f in frames if f["type"] == "chunk"]
            assert frames[-1]["type"] == "complete" and frames[-1]["cancelled"] is True
            sid = first["session_id"]
            r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
            # the user's message and what was streamed of the stopped reply are kept
            msgs = (await r.json())["messages"]
            assert [(m["role"], m["status"]) for m in msgs] == [
                ("user", "complete"),
                ("assistant", "stopped"),
            ]
            assert msgs[0]["content"] == "long one"
            assert msgs[1]["content"] == "".join(streamed) and "slow0" in streamed[0]
            assert msgs[1]["message_id"] == frames[-1]["message_id"]
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=5))["type"] == "pong"


async def test_a_cancel_sent_while_chunks_pour_in_is_never_lost(llmmc):
    """A reply streaming as fast as the upstream can send, cancelled again and again: each
    cancel ends its reply (wait_for(queue.put) on Python 3.11 swallowed a cancel that
    arrived just as a chunk's put finished, and the reply ran to its end)."""
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            lost = 0
            for i in range(25):
                fake.queue(" ".join(f"w{n}" for n in range(3000)), chunk_delay=0)
                await ws.send_json({"type": "chat", "message": "go", "request_id": f"r{i}"})
                while (await ws.receive_json(timeout=10))["type"] != "chunk":
                    pass
                await ws.send_json({"type": "cancel", "request_id": f"r{i}"})
                frames = await frames_until(ws, is_done(f"r{i}"))
                if not frames[-1].get("cancelled"):
                    lost += 1
            assert lost == 0, f"{lost} of 25 cancels were lost"


async def test_upstream_error_and_rate_limit_frames(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("ratelimit", "chat"))
        cfg["plugins"]["ratelimit"] = {"routes": {"POST /api/v1/chat": "2/minute"}}
        client = await llmmc(cfg)
        async with client.ws_connect("/ws/chat", headers=client.auth_headers("u1")) as ws:
            fake.fail_next(500, times=2)
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "1"})
            frames = await frames_until(ws, is_done("1"))
            assert frames[-1]["type"] == "error" and frames[-1]["code"] == "UPSTREAM_ERROR"
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "2"})
            assert (await frames_until(ws, is_done("2")))[-1]["type"] == "complete"
            await ws.send_json({"type": "chat", "message": "hi", "request_id": "3"})
            frame = (await frames_until(ws, is_done("3")))[-1]
            assert frame["code"] == "RATE_LIMITED" and frame["retry_after"] >= 1
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=5))["type"] == "pong"
        assert len(fake.requests) == 3


async def test_sockets_are_closed_cleanly_on_shutdown(tmp_path):
    async with FakeOpenAI() as fake:
        client = await start_kernel(chat_config(fake.url), data_dir=tmp_path)
        try:
            ws = await client.ws_connect("/ws/chat", headers=client.auth_headers("u1"))
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=5))["type"] == "pong"
            closing = asyncio.create_task(client.runner.cleanup())
            msg = await ws.receive(timeout=10)
            assert (
                msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
            )
            await ws.close()
            await asyncio.wait_for(closing, 10)
        finally:
            await client.session.close()


class _StuckSocket:
    """An aiohttp WebSocketResponse stand-in whose peer never reads: send_str never returns."""

    def __init__(self):
        self.closed = False
        self.sent = 0
        self.close_code = None

    async def send_str(self, data):
        self.sent += 1
        await asyncio.Event().wait()

    async def close(self, code, message=b""):
        self.closed = True
        self.close_code = code


async def test_a_slow_reader_is_disconnected_with_bounded_memory():
    from builtin_plugins.chat.websocket import CLOSE_SLOW, Connection

    class Count:
        value = 0

        def inc(self, amount=1):
            self.value += amount

    class Hub:
        service = None
        send_timeout = 0.2
        sent = Count()  # the messages-sent metric's child
        received = Count()
        settings = {
            "send_queue": 4,
            "max_message_bytes": 1024,
            "max_in_flight": 2,
            "auth_timeout_seconds": 5,
        }

    ws = _StuckSocket()
    conn = Connection(Hub(), req=None, ws=ws)
    for i in range(50):  # a reply streaming 50 chunks to a reader that takes none
        await conn.send({"type": "chunk", "data": f"token {i}"})
        assert conn.queue.qsize() <= 4
    assert conn.closed and ws.closed and ws.close_code == CLOSE_SLOW
    assert ws.sent == 1  # the writer got stuck on the first frame; nothing more piled up
    assert Hub.sent.value == conn.messages_sent
