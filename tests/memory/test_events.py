"""Chat turns arriving on the bus: short-term window, session summaries, fact extraction
(rules, and the LLM through the ``llm`` service with the fake upstream), and the
update-not-duplicate rule for facts."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.fakes.openai_server import FakeOpenAI

from .conftest import BASE, FakeLLMPlugin, settle

_ids = itertools.count(1)


async def say(client: Any, user: str, session: str, content: str, role: str = "user") -> None:
    await client.kernel.bus.publish(
        "chat.message.created",
        {
            "user_id": user,
            "session_id": session,
            "message_id": f"msg_{next(_ids)}",
            "role": role,
            "character": None if role == "user" else "lumina",
            "content": content,
        },
    )
    await settle(client)


async def facts(client: Any, user: str) -> list[dict[str, Any]]:
    r = await client.post(
        f"{BASE}/search",
        json={"query": "user", "tiers": ["long_term"], "top_k": 100, "min_score": -1},
        headers=client.auth_headers(user),
    )
    return (await r.json())["results"]


async def test_turns_and_rule_facts_update_not_duplicate(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {
                    "embedder": "hashing",
                    "short_term_turns": 4,
                    "summary_every_turns": 3,
                    "redis_url": "none",
                },
            }
        }
    )
    await say(client, "alice", "s1", "Hi! My name is Alice and I live in Lisbon.")
    await say(client, "alice", "s1", "Nice to meet you, Alice.", role="assistant")
    got = await facts(client, "alice")
    assert sorted(f["content"] for f in got) == [
        "The user lives in Lisbon.",
        "The user's name is Alice.",
    ]
    lisbon = next(f for f in got if "Lisbon" in f["content"])
    # Repeating a fact keeps it (never deletes it) and does not add another.
    await say(client, "alice", "s1", "As I said, I live in Lisbon.")
    got = await facts(client, "alice")
    assert len(got) == 2
    again = next(f for f in got if "Lisbon" in f["content"])
    assert again["memory_id"] == lisbon["memory_id"]
    assert again["metadata"]["confirmations"] == 1
    # A contradicting fact updates the old one in place.
    await say(client, "alice", "s1", "I moved to Berlin last month.")
    got = await facts(client, "alice")
    assert len(got) == 2
    moved = next(f for f in got if f["memory_id"] == lisbon["memory_id"])
    assert moved["content"] == "The user lives in Berlin."
    assert moved["metadata"]["previous"][0]["content"] == "The user lives in Lisbon."
    # Questions state no fact.
    await say(client, "alice", "s1", "Do I live in Paris?")
    assert len(await facts(client, "alice")) == 2
    # The recent turns are the newest 4 of the session; every turn is still kept.
    await say(client, "alice", "s1", "Tell me a story.")
    view = await (
        await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers("alice"))
    ).json()
    turns = view["recent_turns"]
    assert [t["content"] for t in turns] == [
        "As I said, I live in Lisbon.",
        "I moved to Berlin last month.",
        "Do I live in Paris?",
        "Tell me a story.",
    ]
    assert view["recent_turns_source"] == "store"
    # A summary of the session exists (extractive: no LLM running) and mentions it.
    assert view["summary"] is not None and view["summary"]["tier"] == "mid_term"
    assert view["summary"]["metadata"]["method"] == "extractive"
    stats = await (await client.get(f"{BASE}/stats", headers=client.auth_headers("alice"))).json()
    assert stats["tiers"]["short_term"] == 6 and stats["tiers"]["mid_term"] == 1
    # Other users are untouched and the same facts for bob are bob's own.
    assert await facts(client, "bob") == []


async def test_auto_extract_off(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {"embedder": "hashing", "auto_extract": False},
            }
        }
    )
    await say(client, "alice", "s1", "My name is Alice.")
    assert await facts(client, "alice") == []
    stats = await (await client.get(f"{BASE}/stats", headers=client.auth_headers("alice"))).json()
    assert stats["tiers"]["short_term"] == 1


def extraction_reply(body: dict[str, Any]) -> str:
    """The fake LLM: answers extraction prompts with facts keyed as the prompt asks,
    summary prompts with a fixed summary."""
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    if system.startswith("Summarize"):
        return "SUMMARY: the user talked about tea and their job."
    message = user.split("The user's latest message:\n", 1)[1]
    found = []
    if "green tea" in message:
        found.append({"key": "favorite_drink", "fact": "The user's favorite drink is green tea"})
    elif "coffee" in message:
        found.append({"key": "favorite_drink", "fact": "The user's favorite drink is coffee"})
    if "nurse" in message:
        found.append({"key": "occupation", "fact": "The user works as a nurse"})
    return "```json\n" + json.dumps({"facts": found}) + "\n```"


async def test_llm_extraction_with_fake_upstream(llmmc: Any) -> None:
    async with FakeOpenAI(default_reply=extraction_reply) as fake:
        client = await llmmc(
            {
                "plugins": {
                    "enabled": ["fakellm", "memory"],
                    "fakellm": {"base_url": fake.url},
                    "memory": {"embedder": "hashing", "summary_every_turns": 2},
                }
            },
            plugins={"fakellm": FakeLLMPlugin},
        )
        await say(client, "carol", "s1", "I'm a nurse and I really like coffee")
        got = await facts(client, "carol")
        assert sorted(f["content"] for f in got) == [
            "The user works as a nurse.",
            "The user's favorite drink is coffee.",
        ]
        assert all(f["metadata"]["source"] == "llm" for f in got)
        drink = next(f for f in got if "drink" in f["content"])
        # What the fake received: the extraction prompt with the message.
        prompt = fake.requests[0]["messages"]
        assert "I'm a nurse and I really like coffee" in prompt[-1]["content"]
        # The same fact again: no duplicate; the contradiction: updated in place.
        await say(client, "carol", "s1", "Still a nurse, and coffee is still my thing")
        assert len(await facts(client, "carol")) == 2
        await say(client, "carol", "s1", "These days I prefer green tea")
        got = await facts(client, "carol")
        assert len(got) == 2
        updated = next(f for f in got if f["memory_id"] == drink["memory_id"])
        assert updated["content"] == "The user's favorite drink is green tea."
        # The known facts were shown to the LLM so it could reuse their keys.
        assert "favorite_drink" in fake.requests[-1]["messages"][-1]["content"] or any(
            "favorite_drink" in r["messages"][-1]["content"] for r in fake.requests
        )
        # Summaries came from the LLM service.
        view = await (
            await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers("carol"))
        ).json()
        assert view["summary"]["content"].startswith("SUMMARY:")
        assert view["summary"]["metadata"]["method"] == "llm"


async def test_llm_garbage_falls_back_to_rules(llmmc: Any) -> None:
    async with FakeOpenAI(default_reply="I am not JSON at all") as fake:
        client = await llmmc(
            {
                "plugins": {
                    "enabled": ["fakellm", "memory"],
                    "fakellm": {"base_url": fake.url},
                    "memory": {"embedder": "hashing"},
                }
            },
            plugins={"fakellm": FakeLLMPlugin},
        )
        await say(client, "dan", "s1", "My name is Dan.")
        got = await facts(client, "dan")
        assert [f["content"] for f in got] == ["The user's name is Dan."]
        assert got[0]["metadata"]["source"] == "rules"
        fake.fail_next(500, times=5)
        await say(client, "dan", "s1", "I live in Oslo.")
        assert len(await facts(client, "dan")) == 2


async def test_event_for_deleted_session_and_malformed_events(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["memory"], "memory": {"embedder": "hashing"}}})
    # Malformed events are ignored, not crashes.
    await client.kernel.bus.publish("chat.message.created", {"user_id": "x"})
    await client.kernel.bus.publish("chat.message.created", {})
    await settle(client)
    await say(client, "erin", "s1", "My name is Erin.")
    await client.kernel.bus.publish("chat.session.deleted", {"user_id": "erin", "session_id": "s1"})
    stats = await (await client.get(f"{BASE}/stats", headers=client.auth_headers("erin"))).json()
    assert stats["total"] == 0 and stats["links"] == 0


async def test_turns_arriving_together_are_all_recorded_in_order(llmmc: Any) -> None:
    """A burst of turns (published without waiting, as a message and its reply are) is
    recorded in batches: every turn kept, the recent ones exactly the newest
    ``short_term_turns`` in order, another user's burst untouched."""
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {"embedder": "hashing", "short_term_turns": 5, "redis_url": "none"},
            }
        }
    )
    for i in range(9):
        for user in ("alice", "bob"):
            role = "user" if i % 2 == 0 else "assistant"
            await client.kernel.bus.publish(
                "chat.message.created",
                {
                    "user_id": user,
                    "session_id": "s1",
                    "message_id": f"burst_{user}_{i}",
                    "role": role,
                    "character": None if role == "user" else "lumina",
                    "content": f"{user} turn number {i}",
                },
            )
    await settle(client)
    for user in ("alice", "bob"):
        view = await (
            await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers(user))
        ).json()
        assert [t["content"] for t in view["recent_turns"]] == [
            f"{user} turn number {i}" for i in range(4, 9)
        ]
        stats = await (await client.get(f"{BASE}/stats", headers=client.auth_headers(user))).json()
        assert stats["tiers"]["short_term"] == 9
