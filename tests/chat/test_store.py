"""The write-behind store: group commits, reads that see every earlier write, counts."""

from __future__ import annotations

import asyncio

from tests.chat.helpers import chat_config
from tests.fakes.openai_server import FakeOpenAI


async def test_concurrent_turns_are_all_stored_and_counted(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        users = [f"user{i}" for i in range(6)]

        async def talk(user: str) -> str:
            h = client.auth_headers(user)
            r = await client.post(
                "/api/v1/chat", json={"user_input": f"first from {user}"}, headers=h
            )
            sid = (await r.json())["session_id"]
            for n in range(4):
                r = await client.post(
                    "/api/v1/chat", json={"user_input": f"msg {n}", "session_id": sid}, headers=h
                )
                assert r.status == 200
            return sid

        sids = await asyncio.gather(*(talk(u) for u in users))
        chat = client.kernel.records["chat"].instance
        for user, sid in zip(users, sids, strict=True):
            r = await client.get("/api/v1/chat/sessions", headers=client.auth_headers(user))
            (session,) = (await r.json())["sessions"]
            assert session["session_id"] == sid and session["message_count"] == 10
            assert (
                session["title"] == f"first from {user}" and session["last_character"] == "lumina"
            )
            r = await client.get(
                f"/api/v1/chat/history/{sid}?limit=500", headers=client.auth_headers(user)
            )
            msgs = (await r.json())["messages"]
            assert [m["content"] for m in msgs[::2]] == [f"first from {user}"] + [
                f"msg {n}" for n in range(4)
            ]
        assert chat.service.store.write_errors == 0
        rows = await chat.service.store.db.fetchall("SELECT count(*) FROM chat_messages")
        assert rows[0][0] == 60
