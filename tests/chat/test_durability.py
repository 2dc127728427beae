"""What the chat store promises on both engines: a reply the client was told about is
committed (even if the process is killed -9 right after), and one request's failing
write never takes other requests' writes down with it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from builtin_plugins.chat.store import MIGRATIONS, ChatStore, Message, new_id
from builtin_plugins.storage.engines import open_database
from builtin_plugins.storage.migrations import migrate
from tests.chat.helpers import chat_config, read_sse
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess

PASSWORD = "Corr3ct-horse"


@pytest.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[ChatStore]:
    db = open_database({"url": database_url, "pool_size": 4}, tmp_path, "chat.duckdb")
    await db.open()
    await migrate(db, [("chat", MIGRATIONS)])
    chat_store = ChatStore(db)
    chat_store.start()
    try:
        yield chat_store
    finally:
        await chat_store.stop()
        await db.close()


def message(session_id: str, content: str, message_id: str | None = None) -> Message:
    return Message(message_id or new_id("msg"), session_id, "user", content)


async def test_a_failing_write_never_discards_other_requests_writes(store: ChatStore) -> None:
    session = await store.create_session("u1", "concurrent")
    sid = session["session_id"]
    await store.add_messages("u1", [message(sid, "first", "msg_taken")])
    other = (await store.create_session("u2", "other"))["session_id"]

    async def good(i: int) -> None:
        await store.add_messages(
            "u1" if i % 2 else "u2", [message(sid if i % 2 else other, f"good {i}")]
        )

    async def bad(i: int) -> None:
        # a message id that is already stored: the primary key refuses this write only
        with pytest.raises(Exception, match=r"(?i)constraint|duplicate"):
            await store.add_messages("u1", [message(sid, f"bad {i}", "msg_taken")])

    batches_before = store.batches
    await asyncio.gather(*(good(i) for i in range(20)), *(bad(i) for i in range(3)))
    assert store.batches - batches_before < 23  # the writes were grouped into few commits
    mine = [m.content for m in await store.history("u1", sid, limit=100)]
    theirs = [m.content for m in await store.history("u2", other, limit=100)]
    assert sorted(mine) == sorted(["first"] + [f"good {i}" for i in range(1, 20, 2)])
    assert sorted(theirs) == sorted(f"good {i}" for i in range(0, 20, 2))
    assert store.write_errors == 3
    # the session counters moved for the good writes only
    assert (await store.get_session("u1", sid))["message_count"] == 11
    assert (await store.get_session("u2", other))["message_count"] == 10


def server_config(fake_url: str, database_url: str, data_dir: Path) -> dict[str, Any]:
    config = chat_config(
        fake_url,
        enabled=("auth", "chat"),
        extra_plugins={"auth": {"jwt_secret": "durability-" + "d" * 40, "bcrypt_rounds": 4}},
    )
    config["kernel"] = {"data_dir": str(data_dir), "database": {"url": database_url}}
    return config


async def start(server: ServerProcess) -> ServerProcess:
    return await asyncio.to_thread(server.start)


def kill(server: ServerProcess) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


async def test_an_acknowledged_reply_survives_kill_9(database_url: str, tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        server = ServerProcess(server_config(fake.url, database_url, tmp_path / "data"), tmp_path)
        await start(server)
        try:
            async with aiohttp.ClientSession() as http:
                body = {"username": "kim", "email": "kim@example.com", "password": PASSWORD}
                async with http.post(server.url + "/api/v1/auth/register", json=body) as r:
                    assert r.status == 201
                    headers = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
                # REST: the response is the acknowledgement; kill -9 the moment it arrives
                async with http.post(
                    server.url + "/api/v1/chat", json={"user_input": "hello"}, headers=headers
                ) as r:
                    assert r.status == 200
                    rest = await r.json()
                kill(server)
                await start(server)
                sid = rest["session_id"]
                # SSE: `done` is the acknowledgement
                async with http.post(
                    server.url + "/api/v1/chat/stream",
                    json={"user_input": "again", "session_id": sid},
                    headers=headers,
                ) as r:
                    events = await read_sse(r)
                    assert events[-1][0] == "done"
                    kill(server)
                await start(server)
                async with http.get(
                    f"{server.url}/api/v1/chat/history/{sid}", headers=headers
                ) as r:
                    history = (await r.json())["messages"]
            ends = [data["message_id"] for kind, data in events if kind == "end"]
            assert [m["content"] for m in history if m["role"] == "user"] == ["hello", "again"]
            stored = {m["message_id"] for m in history}
            assert {reply["message_id"] for reply in rest["replies"]} <= stored
            assert ends and set(ends) <= stored
        finally:
            server.stop()


async def test_messages_stored_before_migration_2_read_as_complete_replies(
    database_url: str, tmp_path: Path
) -> None:
    """A database written before replies had a status and alternatives: after the
    migration its messages read in order, as complete, and can be regenerated."""
    db = open_database({"url": database_url, "pool_size": 2}, tmp_path, "old.duckdb")
    await db.open()
    try:
        await migrate(db, [("chat", MIGRATIONS[:1])])
        ts = [datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC) for i in range(3)]
        await db.execute(
            "INSERT INTO chat_sessions (session_id, user_id, title, created_at, updated_at,"
            " message_count) VALUES ('ses_old', 'u1', 'old', $1, $1, 2)",
            [ts[0]],
        )
        for i, (mid, role, content) in enumerate(
            [("msg_q", "user", "question"), ("msg_a", "assistant", "answer")]
        ):
            await db.execute(
                "INSERT INTO chat_messages (message_id, session_id, user_id, seq, role,"
                " character, content, created_at) VALUES ($1, 'ses_old', 'u1', $2, $3, $4, $5, $6)",
                [mid, 100 + i, role, "lumina" if role == "assistant" else None, content, ts[i]],
            )
        await migrate(db, [("chat", MIGRATIONS)])
        chat_store = ChatStore(db)
        msgs = await chat_store.history("u1", "ses_old")
        assert [(m.content, m.status, m.pos) for m in msgs] == [
            ("question", "complete", 100),
            ("answer", "complete", 101),
        ]
        assert msgs[1].public()["alternatives"] == ["msg_a"]
        new = Message(new_id("msg"), "ses_old", "assistant", "better", character="lumina")
        new.pos, new.alt_group = msgs[1].pos, "msg_a"
        await chat_store.add_alternative("u1", "ses_old", "msg_a", [new])
        msgs = await chat_store.history("u1", "ses_old")
        assert [m.content for m in msgs] == ["question", "better"]
        assert msgs[1].alternatives == ["msg_a", new.message_id]
    finally:
        await db.close()


async def test_a_crash_mid_reply_keeps_the_users_message_and_a_resend_answers_it_once(
    database_url: str, tmp_path: Path
) -> None:
    """kill -9 while a reply streams: the user's message was stored when the turn was
    accepted; a resend with the same client_message_id is 409 while the turn could still
    be running, then answers the stored message, once."""
    async with FakeOpenAI() as fake:
        config = server_config(fake.url, database_url, tmp_path / "data")
        config["plugins"]["chat"].update(request_timeout_seconds=8, max_tool_rounds=0)
        server = ServerProcess(config, tmp_path)
        await start(server)
        try:
            async with aiohttp.ClientSession() as http:
                body = {"username": "kim", "email": "kim@example.com", "password": PASSWORD}
                async with http.post(server.url + "/api/v1/auth/register", json=body) as r:
                    headers = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
                fake.queue(" ".join(f"w{i}" for i in range(50)), chunk_delay=0.1)
                turn = {"user_input": "remember me", "client_message_id": "crash-1"}
                async with http.post(
                    server.url + "/api/v1/chat/stream", json=turn, headers=headers
                ) as r:
                    async for line in r.content:
                        if line.startswith(b"event: chunk"):
                            break
                    kill(server)
                await start(server)
                async with http.get(server.url + "/api/v1/chat/sessions", headers=headers) as r:
                    sid = (await r.json())["sessions"][0]["session_id"]
                async with http.get(
                    f"{server.url}/api/v1/chat/history/{sid}", headers=headers
                ) as r:
                    assert [m["content"] for m in (await r.json())["messages"]] == ["remember me"]
                async with http.post(server.url + "/api/v1/chat", json=turn, headers=headers) as r:
                    assert r.status == 409 and (await r.json())["code"] == "TURN_IN_PROGRESS"
                await asyncio.sleep(13.5)  # the turn is taken for lost (timeout 8 s + 5 s)
                fake.queue("Remembered.")
                answers = await asyncio.gather(
                    *(
                        http.post(server.url + "/api/v1/chat", json=turn, headers=headers)
                        for _ in range(3)
                    )
                )
                statuses = sorted(a.status for a in answers)
                bodies = [await a.json() for a in answers]
                for a in answers:
                    a.release()
                async with http.get(
                    f"{server.url}/api/v1/chat/history/{sid}", headers=headers
                ) as r:
                    history = (await r.json())["messages"]
            assert statuses[0] == 200 and set(statuses) <= {200, 409}
            answered = [b for b in bodies if b.get("response") == "Remembered."]
            assert len(answered) == 1 and answered[0]["session_id"] == sid
            assert [m["content"] for m in history] == ["remember me", "Remembered."]
            assert len(fake.requests) == 2  # the killed reply and the one answer
        finally:
            server.stop()
