"""Memory working with the real chat plugin (and, for deletions, the real auth plugin):
chat turns become memories, the LLM extracts facts through the chat plugin's ``llm``
service, and the memory_context output reaches the prompt the fake upstream receives."""

from __future__ import annotations

import json
from typing import Any

from sdk import Identity
from tests.chat.helpers import chat_config
from tests.fakes.openai_server import FakeOpenAI

from .conftest import BASE, memory_plugin, settle


def upstream(body: dict[str, Any]) -> str:
    """The fake LLM: fact extraction prompts get JSON facts, everything else a reply."""
    system = str(body["messages"][0].get("content") or "")
    last = str(body["messages"][-1].get("content") or "")
    if system.startswith("You extract durable facts"):
        message = last.split("The user's latest message:\n", 1)[1]
        facts = []
        if "Lisbon" in message:
            facts.append({"key": "location", "fact": "The user lives in Lisbon"})
        if "violin" in message:
            facts.append({"key": "hobby:violin", "fact": "The user plays the violin"})
        return json.dumps({"facts": facts})
    if system.startswith("Summarize"):
        return "The user introduced themself."
    return "Nice to hear that!"


def config(url: str, **memory: Any) -> dict[str, Any]:
    cfg = chat_config(url, enabled=("chat", "memory"))
    cfg["plugins"]["memory"] = {"embedder": "hashing", "context_min_score": 0.1, **memory}
    return cfg


async def test_chat_turns_feed_memory_and_context_reaches_the_prompt(llmmc: Any) -> None:
    async with FakeOpenAI(default_reply=upstream) as fake:
        client = await llmmc(config(fake.url, summary_every_turns=2))
        h = client.auth_headers("alice")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "Hi, I live in Lisbon and I play the violin."},
            headers=h,
        )
        assert r.status == 200, await r.text()
        first_session = (await r.json())["session_id"]
        await settle(client)
        # Both turns are short-term memories of that session; the facts came from the LLM.
        view = await (await client.get(f"{BASE}/sessions/{first_session}", headers=h)).json()
        assert [t["role"] for t in view["recent_turns"]] == ["user", "assistant"]
        # The session summary was written by the chat plugin's summarize_text hook.
        assert view["summary"]["content"] == "The user introduced themself."
        assert view["summary"]["metadata"]["method"] == "hook"
        r = await client.post(
            f"{BASE}/search",
            json={"query": "user", "tiers": ["long_term"], "top_k": 10, "min_score": -1},
            headers=h,
        )
        facts = {f["content"]: f for f in (await r.json())["results"]}
        assert set(facts) == {"The user lives in Lisbon.", "The user plays the violin."}
        assert all(f["metadata"]["source"] == "llm" for f in facts.values())
        # A new session: the question is answered with the memories in the prompt.
        fake.requests.clear()
        question = "Which city do I live in, Lisbon or Porto?"
        r = await client.post("/api/v1/chat", json={"user_input": question}, headers=h)
        assert r.status == 200
        second_session = (await r.json())["session_id"]
        chat_requests = [
            b
            for b in fake.requests
            if not str(b["messages"][0].get("content", "")).startswith(("You extract", "Summarize"))
        ]
        prompt = json.dumps(chat_requests[0]["messages"], ensure_ascii=False)
        assert "The user lives in Lisbon." in prompt
        # What the hook returns for that question is exactly what went in.
        hook = await client.kernel.hooks.call(
            "memory_context",
            identity=Identity(user_id="alice"),
            session_id=second_session,
            query=question,
            max_tokens=600,
        )
        items = [i for result in hook for i in result]
        assert items and all(i["content"] in prompt for i in items)
        # Another user's chat gets none of alice's memories.
        fake.requests.clear()
        await client.post(
            "/api/v1/chat", json={"user_input": question}, headers=client.auth_headers("bob")
        )
        await settle(client)
        bob_prompt = json.dumps(
            [
                b["messages"]
                for b in fake.requests
                if not str(b["messages"][0].get("content", "")).startswith("You extract")
            ]
        )
        assert "Lisbon." not in bob_prompt.replace(question, "")
        # Deleting the chat session deletes its memories and their links.
        r = await client.delete(f"/api/v1/chat/sessions/{first_session}", headers=h)
        assert r.status == 204
        await settle(client)
        assert (await client.get(f"{BASE}/sessions/{first_session}", headers=h)).status == 404
        r = await client.post(
            f"{BASE}/search", json={"query": "Lisbon violin", "tiers": ["long_term"]}, headers=h
        )
        assert (await r.json())["results"] == []


async def test_deleting_the_user_through_auth_erases_memories(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["auth", "memory"],
                "auth": {"bcrypt_rounds": 4, "jwt_secret": "x" * 40},
                "memory": {"embedder": "hashing"},
            }
        }
    )
    r = await client.post(
        "/api/v1/auth/register",
        json={
            "username": "gina",
            "email": "gina@example.com",
            "password": "correct horse battery staple 9",
        },
    )
    assert r.status == 201, await r.text()
    body = await r.json()
    token, user_id = body["access_token"], body["user"]["user_id"]
    h = {"Authorization": f"Bearer {token}"}
    r = await client.post(
        BASE, json={"content": "Gina's secret plan", "session_id": "s1"}, headers=h
    )
    assert r.status == 201
    r = await client.post(BASE, json={"content": "Gina's other plan"}, headers=h)
    assert (await client.get(f"{BASE}/stats", headers=h)).status == 200
    r = await client.delete(f"/api/v1/auth/users/{user_id}", headers=h)
    assert r.status == 204
    await settle(client)
    plugin = memory_plugin(client)
    stats = await plugin.store.stats(user_id, plugin.embedder.model_id)
    assert stats["total"] == 0 and stats["links"] == 0 and stats["embedded"] == 0
