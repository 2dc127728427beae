"""The memory_context hook: relevant memories of every tier, within the token budget."""

from __future__ import annotations

from typing import Any

from sdk import Identity

from .conftest import BASE
from .test_events import say


async def context(
    client: Any, user: str, session: str | None, query: str, max_tokens: int = 500
) -> list[dict[str, Any]]:
    results = await client.kernel.hooks.call(
        "memory_context",
        identity=Identity(user_id=user),
        session_id=session,
        query=query,
        max_tokens=max_tokens,
    )
    assert len(results) == 1
    return results[0]


async def test_context_tiers_budget_and_isolation(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {
                    "embedder": "hashing",
                    "summary_every_turns": 2,
                    "context_min_score": 0.1,
                    "context_top_k": 10,
                },
            }
        }
    )
    h = client.auth_headers("alice")
    # A previous session, with facts and a summary.
    await say(client, "alice", "old", "My name is Alice and I am allergic to peanuts.")
    await say(client, "alice", "old", "Noted, no peanuts for Alice.", role="assistant")
    doc = "Peanut allergy first aid: use the epinephrine auto-injector and call emergency services."
    await client.post(BASE, json={"content": doc, "tier": "knowledge"}, headers=h)
    # The current session.
    await say(client, "alice", "now", "Can you suggest a snack without peanuts?")
    await say(client, "alice", "now", "How about apple slices?", role="assistant")
    # Bob has a similar memory that must never show up for Alice.
    await say(client, "bob", "b", "I am allergic to peanuts too.")

    items = await context(client, "alice", "now", "Any peanut allergy advice for a snack?")
    tiers = {i["tier"] for i in items}
    contents = [i["content"] for i in items]
    assert (
        items[0]["tier"] == "mid_term" and items[0]["session_id"] == "now"
    )  # this session's summary
    assert "The user is allergic to peanuts." in contents  # long-term fact
    assert doc in contents  # knowledge
    assert tiers >= {"mid_term", "long_term", "knowledge"}
    for item in items:
        assert set(item) >= {"memory_id", "tier", "content", "score"}
        assert "too" not in item["content"]  # nothing of bob's
    # The current session's turns are left to the chat history.
    assert not any(i["tier"] == "short_term" and i["session_id"] == "now" for i in items)
    # The old session's turn may come back as short_term from another session.
    # Budget: the total estimated tokens never exceed max_tokens.
    for budget in (0, 5, 20, 40, 80):
        small = await context(client, "alice", "now", "peanut snack", max_tokens=budget)
        used = sum(len(i["content"]) // 4 + 1 + 6 for i in small)
        assert used <= budget
    assert await context(client, "alice", "now", "peanut", max_tokens=0) == []
    # Another user with no memories gets nothing.
    assert await context(client, "zed", None, "peanut") == []


async def test_context_follows_links_one_hop(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {"embedder": "hashing", "context_min_score": 0.3},
            }
        }
    )
    h = client.auth_headers("alice")
    r = await client.post(BASE, json={"content": "Bruno is the user's dog"}, headers=h)
    dog = await r.json()
    r = await client.post(BASE, json={"content": "Vet appointment on Friday at nine"}, headers=h)
    vet = await r.json()
    # An association note links the dog and the vet appointment: the appointment shares
    # no words with the question, so only the one-hop link can bring it in.
    await client.post(
        BASE,
        json={
            "content": "pet care plan",
            "tier": "associative",
            "metadata": {"related": [dog["memory_id"], vet["memory_id"]]},
        },
        headers=h,
    )
    items = await context(client, "alice", None, "tell me about Bruno the dog")
    by_id = {i["memory_id"]: i for i in items}
    assert dog["memory_id"] in by_id and by_id[dog["memory_id"]]["tier"] == "long_term"
    linked = {i["memory_id"]: i for i in items if i["tier"] == "associative"}
    assert vet["memory_id"] in linked
    assert linked[vet["memory_id"]]["via"] == dog["memory_id"]
    assert linked[vet["memory_id"]]["source_tier"] == "long_term"
    assert all(i["score"] < by_id[i["via"]]["score"] for i in linked.values())
