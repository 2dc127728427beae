"""The user's persona (GET/PUT /api/v1/chat/persona) on both engines: kept per user, and
told to the characters in their system prompt (another user's never)."""

from __future__ import annotations

import json

from tests.chat.helpers import chat_config
from tests.fakes.openai_server import FakeOpenAI


async def test_persona_is_kept_per_user_and_reaches_the_model(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h, other = client.auth_headers("u1"), client.auth_headers("u2")
        r = await client.get("/api/v1/chat/persona", headers=h)
        assert r.status == 200 and await r.json() == {"name": "", "description": ""}
        r = await client.put(
            "/api/v1/chat/persona",
            json={"name": "  Aiko  ", "description": "A botanist who loves rainy days."},
            headers=h,
        )
        assert r.status == 200, await r.text()
        assert await r.json() == {
            "name": "Aiko",
            "description": "A botanist who loves rainy days.",
        }
        # a field left out stays
        r = await client.put("/api/v1/chat/persona", json={"name": "Aiko T."}, headers=h)
        assert (await r.json())["description"] == "A botanist who loves rainy days."
        r = await client.get("/api/v1/chat/persona", headers=h)
        assert (await r.json())["name"] == "Aiko T."
        # another user's persona is their own
        r = await client.get("/api/v1/chat/persona", headers=other)
        assert await r.json() == {"name": "", "description": ""}
        await client.put("/api/v1/chat/persona", json={"name": "Bruno"}, headers=other)

        fake.queue("hello Aiko")
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        assert r.status == 200, await r.text()
        system = fake.requests[-1]["messages"][0]
        assert system["role"] == "system"
        assert (
            "The user is called Aiko T. About them: A botanist who loves rainy days."
            in system["content"]
        )
        assert "Bruno" not in json.dumps(fake.requests[-1]["messages"])

        fake.queue("hello")
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=other)
        sent = json.dumps(fake.requests[-1]["messages"])
        assert "The user is called Bruno." in sent and "Aiko" not in sent

        # cleared: nothing is said about the user
        r = await client.put(
            "/api/v1/chat/persona", json={"name": "", "description": ""}, headers=h
        )
        assert r.status == 200
        fake.queue("hello again")
        await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        sent = json.dumps(fake.requests[-1]["messages"])
        assert "Aiko" not in sent and "The user is called" not in sent


async def test_persona_limits(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        for body in (
            {"name": "x" * 61},
            {"description": "x" * 1001},
            {"nickname": "x"},
        ):
            r = await client.put("/api/v1/chat/persona", json=body, headers=h)
            assert r.status == 422, body
        r = await client.put(
            "/api/v1/chat/persona", json={"name": "x" * 60, "description": "y" * 1000}, headers=h
        )
        assert r.status == 200
        r = await client.get("/api/v1/chat/persona")
        assert r.status == 401
