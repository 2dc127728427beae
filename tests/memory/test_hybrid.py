"""Hybrid retrieval (keyword and semantic evidence ranked together), every chat turn kept
findable, ``occurred_at`` and the batch route: through the HTTP API, on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from builtin_plugins.memory.keywords import fuse, query_terms, terms

from .conftest import BASE, memory_plugin, settle
from .test_context import context
from .test_events import say


async def search(client: Any, user: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    r = await client.post(
        f"{BASE}/search", json={"query": query, **extra}, headers=client.auth_headers(user)
    )
    assert r.status == 200, await r.text()
    return list((await r.json())["results"])


async def add(client: Any, user: str, content: str, **extra: Any) -> dict[str, Any]:
    r = await client.post(
        BASE, json={"content": content, **extra}, headers=client.auth_headers(user)
    )
    assert r.status == 201, await r.text()
    return dict(await r.json())


def test_terms() -> None:
    assert terms("Caroline's PAINTINGS were painted; she paints!") == [
        "caroline",
        "paint",
        "paint",
        "paint",
    ]
    # Japanese has no spaces: character bigrams; full-width letters become ASCII.
    assert terms("東京タワーに行きました") == [
        "東京",
        "京タ",
        "タワ",
        "ワー",
        "ーに",
        "に行",
        "行き",
        "きま",
        "まし",
        "した",
    ]
    assert terms("ＬＧＢＴＱ の会") == ["lgbtq", "の会"]
    assert query_terms("the the dog dog") == ["dog"]


def test_fuse_ranks_both_lists_and_ties_share_a_rank() -> None:
    fused = fuse([[("a", 0.9), ("b", 0.5), ("c", 0.5)], [("c", 3.0), ("d", 1.0)]])
    assert max(fused, key=lambda k: fused[k]) == "c"  # found by both
    assert fused["b"] == pytest.approx(fused["c"] - 0.5)  # b and c tie in the first list
    assert fuse([[("x", 1.0)], [("x", 2.0)]]) == {"x": 1.0}


async def test_modes_keyword_evidence_and_japanese(memory_kernel: Any) -> None:
    client = await memory_kernel()
    texts = [
        "Order XQ7731 ships on Friday from the Rotterdam warehouse",
        "The user enjoys long walks along the river",
        "東京タワーに行きました。夜景がきれいでした。",
        "大阪で美味しい寿司を食べました。",
        "Shipping orders usually takes a week",
    ]
    ids = [(await add(client, "alice", t))["memory_id"] for t in texts]
    await add(client, "bob", "Order XQ7731 belongs to bob")
    for mode in ("hybrid", "keyword"):
        found = await search(client, "alice", "where is xq7731?", mode=mode, top_k=3)
        assert found[0]["memory_id"] == ids[0], mode
        assert found[0]["evidence"]["keyword"] > 0
    keyword = await search(client, "alice", "xq7731", mode="keyword")
    assert [x["memory_id"] for x in keyword] == [ids[0]]  # only what has the word; bob's never
    assert (await search(client, "alice", "東京タワー", mode="keyword"))[0]["memory_id"] == ids[2]
    assert (await search(client, "alice", "寿司", mode="keyword"))[0]["memory_id"] == ids[3]
    assert (await search(client, "alice", "東京の夜景"))[0]["memory_id"] == ids[2]
    semantic = await search(client, "alice", "walks by the river", mode="semantic")
    assert semantic[0]["memory_id"] == ids[1] and "evidence" not in semantic[0]
    assert -1 <= semantic[0]["score"] <= 1
    hybrid = await search(client, "alice", "walks by the river")
    assert hybrid[0]["memory_id"] == ids[1]
    assert set(hybrid[0]["evidence"]) == {"semantic", "keyword", "neighbour"}
    r = await client.post(
        f"{BASE}/search",
        json={"query": "x", "mode": "fuzzy"},
        headers=client.auth_headers("alice"),
    )
    assert r.status == 422
    # Deleting a memory takes its words out of the index.
    r = await client.delete(f"{BASE}/{ids[0]}", headers=client.auth_headers("alice"))
    assert r.status == 204
    assert await search(client, "alice", "xq7731", mode="keyword") == []


async def test_every_chat_turn_stays_findable(memory_kernel: Any) -> None:
    client = await memory_kernel(short_term_turns=4, summary_every_turns=3, auto_extract=False)
    for i in range(30):
        await say(client, "alice", "s1", f"turn {i}: my word of the day is zebra{i}x")
    await say(client, "alice", "s2", "another session about zebra0x")
    stats = await (await client.get(f"{BASE}/stats", headers=client.auth_headers("alice"))).json()
    assert stats["tiers"]["short_term"] == 31 and stats["tiers"]["mid_term"] >= 1
    for i in (0, 7, 29):
        found = await search(client, "alice", f"zebra{i}x", session_id="s1", mode="keyword")
        assert f"turn {i}:" in found[0]["content"]
    view = await (
        await client.get(f"{BASE}/sessions/s1", headers=client.auth_headers("alice"))
    ).json()
    assert [t["content"][:8] for t in view["recent_turns"]] == [
        "turn 26:",
        "turn 27:",
        "turn 28:",
        "turn 29:",
    ]
    # The chat's context finds an old turn of this very session, not the recent ones
    # (the chat history carries those).
    items = await context(client, "alice", "s1", "what was zebra3x about?")
    contents = [x["content"] for x in items]
    assert any(c.startswith("turn 3:") for c in contents)
    assert not any(c.startswith(("turn 26:", "turn 29:")) for c in contents)
    # A session's turns go with the session.
    await client.kernel.bus.publish(
        "chat.session.deleted", {"user_id": "alice", "session_id": "s1"}
    )
    await settle(client)
    left = await search(client, "alice", "zebra0x", mode="keyword")
    assert [x["session_id"] for x in left] == ["s2"]


async def test_occurred_at(memory_kernel: Any) -> None:
    client = await memory_kernel()
    old = await add(client, "alice", "We moved to Lisbon", occurred_at="2023-05-08T13:56:00+02:00")
    assert old["occurred_at"] == "2023-05-08T11:56:00Z"
    day = await add(client, "alice", "We moved to Porto", occurred_at="2023-06-01")
    assert day["occurred_at"] == "2023-06-01T00:00:00Z"
    now = await add(client, "alice", "We moved to Faro")
    assert now["occurred_at"] == now["created_at"]
    r = await client.get(f"{BASE}/{old['memory_id']}", headers=client.auth_headers("alice"))
    assert (await r.json())["occurred_at"] == "2023-05-08T11:56:00Z"
    # Ranking's recency counts from occurred_at: of equal matches, the latest event first.
    found = await search(client, "alice", "we moved", mode="semantic", top_k=3)
    assert found[0]["content"] == "We moved to Faro"
    assert found[0]["occurred_at"] == now["occurred_at"]
    for bad in ("yesterday", "2023-13-01", "x" * 20):
        r = await client.post(
            BASE,
            json={"content": "x", "occurred_at": bad},
            headers=client.auth_headers("alice"),
        )
        assert r.status == 422, bad
        assert (await r.json())["errors"][0]["path"] == "/occurred_at"


async def test_batch(memory_kernel: Any) -> None:
    client = await memory_kernel()
    h = client.auth_headers("alice")
    items = [
        {"content": f"batch memory number {i} about topic{i}", "occurred_at": "2024-01-02"}
        for i in range(20)
    ]
    items[3] = {"content": "a turn of a session", "tier": "short_term", "session_id": "s9"}
    r = await client.post(f"{BASE}/batch", json={"items": items}, headers=h)
    assert r.status == 201, await r.text()
    ids = (await r.json())["memory_ids"]
    assert len(ids) == 20 and len(set(ids)) == 20
    for i in (0, 3, 19):
        got = await (await client.get(f"{BASE}/{ids[i]}", headers=h)).json()
        assert got["content"] == items[i]["content"]
    assert (await search(client, "alice", "topic7", mode="keyword"))[0]["memory_id"] == ids[7]
    # Links (same entity here) follow in the background.
    r = await client.post(
        f"{BASE}/batch",
        json={"items": [{"content": "Marta plays chess"}, {"content": "Marta moved to Lyon"}]},
        headers=h,
    )
    first, second = (await r.json())["memory_ids"]
    await settle(client)
    got = await (await client.get(f"{BASE}/{second}", headers=h)).json()
    assert first in got["related"]
    got = await (await client.get(f"{BASE}/{ids[0]}", headers=h)).json()
    assert got["occurred_at"] == "2024-01-02T00:00:00Z"
    # With a document among them, the items are still stored, in order.
    mixed = [{"content": "Chapter one. " * 200, "tier": "knowledge"}, {"content": "a plain note"}]
    r = await client.post(f"{BASE}/batch", json={"items": mixed}, headers=h)
    assert r.status == 201
    doc_id, note_id = (await r.json())["memory_ids"]
    assert (await (await client.get(f"{BASE}/{doc_id}", headers=h)).json())["tier"] == "knowledge"
    assert (await (await client.get(f"{BASE}/{note_id}", headers=h)).json())["tier"] == "long_term"
    # Bad batches: nothing of them is stored.
    before = (await (await client.get(f"{BASE}/stats", headers=h)).json())["total"]
    for body in (
        {"items": []},
        {"items": [{"content": "x"}] * 501},
        {"items": [{"content": "ok"}, {"content": "x", "tier": "forever"}]},
        {"items": [{"content": "ok"}, {"content": "x", "tier": "short_term"}]},
        {"items": [{"content": "ok"}, {"content": "x", "occurred_at": "soon"}]},
        {"items": "no"},
    ):
        r = await client.post(f"{BASE}/batch", json=body, headers=h)
        assert r.status == 422, body
    r = await client.post(
        f"{BASE}/batch",
        json={"items": [{"content": "ok"}, {"content": "x", "occurred_at": "soon"}]},
        headers=h,
    )
    assert (await r.json())["errors"][0]["path"] == "/items/1/occurred_at"
    after = (await (await client.get(f"{BASE}/stats", headers=h)).json())["total"]
    assert after == before
    assert memory_plugin(client).service is not None


async def test_keyword_postings_and_sql_agree(llmmc: Any) -> None:
    """DuckDB's in-process postings (keyindex.py) give the SQL path's BM25 answers, after
    deletes too (document frequencies count live memories only)."""
    words = ["apple", "river", "piano", "garden", "bicycle", "lantern", "東京", "寿司"]
    contents = [
        " ".join(words[(i * k) % len(words)] for k in range(1, 2 + i % 5)) + f" note{i}"
        for i in range(40)
    ]
    answers = {}
    for mb in (0, 16):
        client = await llmmc(
            {
                "plugins": {
                    "enabled": ["memory"],
                    "memory": {"embedder": "hashing", "redis_url": "none", "keyword_index_mb": mb},
                }
            }
        )
        h = client.auth_headers("u")
        ids = [
            (await add(client, "u", c, session_id=f"s{i % 3}"))["memory_id"]
            for i, c in enumerate(contents)
        ]
        got = []
        for query in ("apple river", "piano lantern garden", "東京の寿司", "note7 bicycle"):
            for extra in ({}, {"session_id": "s1"}, {"tiers": ["knowledge"]}):
                found = await search(client, "u", query, mode="keyword", top_k=50, **extra)
                scores = [x["score"] for x in found]
                assert scores == sorted(scores, reverse=True)
                # (equal scores are ordered by memory id, which differ between the runs)
                got.append(sorted((x["content"], round(x["score"], 5)) for x in found))
            if query == "東京の寿司":  # delete some, then ask again
                for memory_id in ids[::4]:
                    await client.delete(f"{BASE}/{memory_id}", headers=h)
        answers[mb] = got
        store = memory_plugin(client).store
        assert (store.keywords is not None) == (mb > 0)
    assert answers[0] == answers[16]
    assert any(answers[0])


async def test_turns_next_to_a_hit_come_with_it(memory_kernel: Any) -> None:
    """A chat turn's neighbours in its session share its context: the question before an
    answer that matches is found with it (hybrid mode)."""
    client = await memory_kernel()
    h = client.auth_headers("alice")
    s1 = ["What did you bring back from the trip?", "Hand-painted teacups, six of them.", "Nice"]
    s2 = [f"filler turn {i} about the weather, books and {w}" for i, w in enumerate("abcdefghij")]
    s2.append("Teacups are fragile")
    items = [{"content": c, "tier": "short_term", "session_id": "s1"} for c in s1]
    items += [{"content": c, "tier": "short_term", "session_id": "s2"} for c in s2]
    r = await client.post(f"{BASE}/batch", json={"items": items}, headers=h)
    assert r.status == 201
    found = await search(client, "alice", "painted teacups", top_k=14)
    by_content = {x["content"]: x for x in found}
    assert found[0]["content"] == s1[1]
    for lent in (s1[0], s1[2]):
        assert by_content[lent]["evidence"]["neighbour"] > 0
    # The question comes right behind its answer, before the turns that merely resemble.
    assert s1[0] in [x["content"] for x in found[:4]]
    semantic = await search(client, "alice", "painted teacups", top_k=14, mode="semantic")
    assert "evidence" not in semantic[0]


async def test_memories_stored_before_the_keyword_index_are_found_by_their_words(
    llmmc: Any, tmp_path: Any
) -> None:
    """Migration 3 indexes the words of the memories already stored."""
    import duckdb

    data_dir = tmp_path / "old"
    data_dir.mkdir()
    con = duckdb.connect(str(data_dir / "llmmultichat.duckdb"))
    con.execute(
        """CREATE TABLE memory_items (memory_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
        tier VARCHAR NOT NULL, session_id VARCHAR, content VARCHAR NOT NULL,
        metadata VARCHAR NOT NULL DEFAULT '{}', importance DOUBLE NOT NULL DEFAULT 0.5,
        fact_key VARCHAR, parent_id VARCHAR, source_message_id VARCHAR,
        searchable BOOLEAN NOT NULL DEFAULT TRUE, created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL)"""
    )
    con.execute(
        "INSERT INTO memory_items (memory_id, user_id, tier, content, created_at, updated_at) "
        "VALUES ('mem_old', 'u_old', 'long_term', 'The user keeps honeybees in Kyoto', "
        "now(), now())"
    )
    con.close()
    client = await llmmc(
        {
            "kernel": {"data_dir": str(data_dir)},
            "plugins": {"enabled": ["memory"], "memory": {"embedder": "hashing"}},
        }
    )
    found = await search(client, "u_old", "honeybees", mode="keyword")
    assert [x["memory_id"] for x in found] == ["mem_old"]
    assert found[0]["occurred_at"] == found[0]["created_at"]
