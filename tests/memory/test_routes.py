"""Every memory endpoint: success and failure paths, per-user isolation, deletes."""

from __future__ import annotations

from typing import Any

from .conftest import BASE, memory_plugin


async def add(client: Any, user: str, content: str, **extra: Any) -> dict[str, Any]:
    r = await client.post(
        BASE, json={"content": content, **extra}, headers=client.auth_headers(user)
    )
    assert r.status == 201, await r.text()
    return await r.json()


async def test_create_get_delete(mem: Any) -> None:
    h = mem.auth_headers("alice")
    m = await add(
        mem, "alice", "Alice keeps her bike in the garage", importance=0.9, metadata={"k": 1}
    )
    assert m["tier"] == "long_term" and m["importance"] == 0.9 and m["metadata"] == {"k": 1}
    assert m["memory_id"].startswith("mem_") and m["created_at"].endswith("Z")
    r = await mem.get(f"{BASE}/{m['memory_id']}", headers=h)
    assert r.status == 200
    assert (await r.json())["content"] == "Alice keeps her bike in the garage"
    r = await mem.delete(f"{BASE}/{m['memory_id']}", headers=h)
    assert r.status == 204
    r = await mem.get(f"{BASE}/{m['memory_id']}", headers=h)
    assert r.status == 404
    assert (await r.json())["code"] == "MEMORY_NOT_FOUND"
    r = await mem.delete(f"{BASE}/{m['memory_id']}", headers=h)
    assert r.status == 404


async def test_bad_bodies(mem: Any) -> None:
    h = mem.auth_headers("alice")
    for body in (
        {},
        {"content": ""},
        {"content": "   "},
        {"content": "x", "tier": "forever"},
        {"content": "x", "importance": 2},
        {"content": "x", "unknown": 1},
        {"content": 5},
        {"content": "x", "metadata": []},
        {"content": "x", "tier": "short_term"},
        {"content": "x", "tier": "mid_term"},
    ):
        r = await mem.post(BASE, json=body, headers=h)
        assert r.status == 422, body
        assert r.headers["Content-Type"].startswith("application/problem+json")
    r = await mem.post(BASE, data="{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status == 400
    # Longer than max_content_chars outside the knowledge tier.
    r = await mem.post(BASE, json={"content": "a" * 10_001}, headers=h)
    assert r.status == 422
    r = await mem.post(BASE, json={"content": "x", "metadata": {"big": "y" * 20_000}}, headers=h)
    assert r.status == 422
    for body in (
        {},
        {"query": ""},
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": 1000},
        {"query": "x", "tiers": ["nope"]},
        {"query": "x", "min_score": 3},
    ):
        r = await mem.post(f"{BASE}/search", json=body, headers=h)
        assert r.status == 422, body


async def test_auth_required(mem: Any) -> None:
    for method, path in (
        ("POST", f"{BASE}/search"),
        ("POST", BASE),
        ("GET", f"{BASE}/stats"),
        ("GET", f"{BASE}/mem_x"),
        ("DELETE", f"{BASE}/mem_x"),
        ("GET", f"{BASE}/sessions/s1"),
        ("DELETE", f"{BASE}/sessions/s1/all"),
        ("POST", f"{BASE}/admin/flush"),
    ):
        r = await mem.request(method, path, json={})
        assert r.status == 401, (method, path)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    r = await mem.post(f"{BASE}/admin/flush", json={}, headers=mem.auth_headers("alice"))
    assert r.status == 403


async def test_search_filters_and_ranking(mem: Any) -> None:
    h = mem.auth_headers("alice")
    await add(mem, "alice", "The user loves hiking in the Alps", session_id="s1")
    await add(mem, "alice", "The user is allergic to peanuts", importance=0.9)
    await add(mem, "alice", "Hiking boots need waterproofing every season", tier="knowledge")
    r = await mem.post(
        f"{BASE}/search", json={"query": "hiking in the alps", "top_k": 2}, headers=h
    )
    results = (await r.json())["results"]
    assert r.status == 200 and len(results) == 2
    assert results[0]["content"] == "The user loves hiking in the Alps"
    assert results[0]["score"] >= results[1]["score"]
    for item in results:
        assert set(item) >= {
            "memory_id",
            "tier",
            "content",
            "score",
            "session_id",
            "created_at",
            "metadata",
            "related",
        }
    r = await mem.post(
        f"{BASE}/search", json={"query": "hiking", "tiers": ["knowledge"]}, headers=h
    )
    assert [x["tier"] for x in (await r.json())["results"]] == ["knowledge"]
    r = await mem.post(f"{BASE}/search", json={"query": "hiking", "session_id": "s1"}, headers=h)
    assert [x["session_id"] for x in (await r.json())["results"]] == ["s1"]
    r = await mem.post(
        f"{BASE}/search", json={"query": "hiking", "min_score": 0.99, "mode": "semantic"}, headers=h
    )
    assert (await r.json())["results"] == []
    # Hybrid: below min_score, what has the query's words stays; what has none goes.
    r = await mem.post(
        f"{BASE}/search", json={"query": "peanut hiking", "min_score": 0.99}, headers=h
    )
    found = (await r.json())["results"]
    assert sorted(x["content"] for x in found) == [
        "Hiking boots need waterproofing every season",
        "The user is allergic to peanuts",
        "The user loves hiking in the Alps",
    ]
    assert all(x["evidence"]["keyword"] > 0 for x in found)
    r = await mem.post(f"{BASE}/search", json={"query": "mountains", "min_score": 0.99}, headers=h)
    assert (await r.json())["results"] == []


async def test_knowledge_documents_are_chunked(mem: Any) -> None:
    h = mem.auth_headers("alice")
    paragraphs = [
        f"Section {i}. The reactor model {i} uses coolant type {chr(65 + i)} and runs at {300 + i} kelvin."
        for i in range(30)
    ]
    doc = await add(
        mem, "alice", "\n\n".join(paragraphs), tier="knowledge", metadata={"title": "Reactors"}
    )
    assert doc["metadata"]["chunks"] > 1
    r = await mem.post(
        f"{BASE}/search",
        json={"query": "coolant type F reactor model 5", "tiers": ["knowledge"]},
        headers=h,
    )
    results = (await r.json())["results"]
    assert results and results[0]["metadata"]["document_id"] == doc["memory_id"]
    assert "model 5 " in results[0]["content"]
    assert results[0]["metadata"]["title"] == "Reactors"
    r = await mem.get(f"{BASE}/stats", headers=h)
    stats = await r.json()
    assert stats["tiers"]["knowledge"] == 1 + doc["metadata"]["chunks"]
    # Deleting the document takes its chunks with it.
    r = await mem.delete(f"{BASE}/{doc['memory_id']}", headers=h)
    assert r.status == 204
    r = await mem.get(f"{BASE}/stats", headers=h)
    assert (await r.json())["tiers"]["knowledge"] == 0
    r = await mem.post(f"{BASE}/search", json={"query": "coolant"}, headers=h)
    assert (await r.json())["results"] == []


async def test_associative_links(mem: Any) -> None:
    h = mem.auth_headers("alice")
    a = await add(mem, "alice", "Marta is the user's sister")
    b = await add(mem, "alice", "Marta lives in Porto and teaches piano")
    assert a["memory_id"] in b["related"]  # same entity: Marta
    note = await add(
        mem,
        "alice",
        "Both memories are about family",
        tier="associative",
        metadata={"related": [a["memory_id"], b["memory_id"]]},
    )
    assert set(note["related"]) >= {a["memory_id"], b["memory_id"]}
    r = await mem.get(f"{BASE}/{a['memory_id']}", headers=h)
    assert set((await r.json())["related"]) >= {b["memory_id"], note["memory_id"]}
    # Links name only the caller's memories.
    bob = await add(mem, "bob", "Bob's note")
    r = await mem.post(
        BASE,
        json={"content": "x", "tier": "associative", "metadata": {"related": [bob["memory_id"]]}},
        headers=h,
    )
    assert r.status == 404
    r = await mem.post(
        BASE,
        json={"content": "x", "tier": "associative", "metadata": {"related": "nope"}},
        headers=h,
    )
    assert r.status == 422
    # Deleting a memory removes its links.
    r = await mem.delete(f"{BASE}/{b['memory_id']}", headers=h)
    r = await mem.get(f"{BASE}/{a['memory_id']}", headers=h)
    assert b["memory_id"] not in (await r.json())["related"]
    stats = await (await mem.get(f"{BASE}/stats", headers=h)).json()
    assert stats["links"] == 1 and stats["tiers"]["associative"] == 1


async def test_isolation_between_users_on_every_route(mem: Any) -> None:
    alice, bob = mem.auth_headers("alice"), mem.auth_headers("bob")
    secret = await add(mem, "alice", "Alice's bank PIN hint is her cat's birthday", session_id="sa")
    await add(mem, "alice", "Alice also likes cats", session_id="sa", tier="short_term")
    mid = secret["memory_id"]
    # Bob sees nothing of Alice.
    assert (await mem.get(f"{BASE}/{mid}", headers=bob)).status == 404
    assert (await mem.delete(f"{BASE}/{mid}", headers=bob)).status == 404
    r = await mem.post(
        f"{BASE}/search", json={"query": "Alice's bank PIN hint cat birthday"}, headers=bob
    )
    assert (await r.json())["results"] == []
    r = await mem.post(f"{BASE}/search", json={"query": "cat", "session_id": "sa"}, headers=bob)
    assert (await r.json())["results"] == []
    assert (await mem.get(f"{BASE}/sessions/sa", headers=bob)).status == 404
    r = await mem.delete(f"{BASE}/sessions/sa/all", headers=bob)
    assert r.status == 200 and (await r.json()) == {"deleted": 0}
    stats = await (await mem.get(f"{BASE}/stats", headers=bob)).json()
    assert stats["total"] == 0 and stats["links"] == 0
    # Bob's own memories never link to Alice's.
    b = await add(mem, "bob", "Alice's bank PIN hint is her cat's birthday")
    assert b["related"] == []
    # And Alice still has everything.
    assert (await mem.get(f"{BASE}/{mid}", headers=alice)).status == 200
    r = await mem.get(f"{BASE}/sessions/sa", headers=alice)
    assert r.status == 200 and len((await r.json())["memories"]) == 2
    # Same id space, other user: the 404 is the same as for an unknown id.
    r1 = await mem.get(f"{BASE}/{mid}", headers=bob)
    r2 = await mem.get(f"{BASE}/mem_00000000000000000000000000000000", headers=bob)
    assert (await r1.json())["detail"] == (await r2.json())["detail"]


async def test_sessions_view_and_delete(mem: Any) -> None:
    h = mem.auth_headers("alice")
    a = await add(mem, "alice", "Fact from session one about Lisbon", session_id="s1")
    b = await add(mem, "alice", "Lisbon trams are yellow", session_id="s1", tier="knowledge")
    keep = await add(mem, "alice", "Lisbon fact from another session", session_id="s2")
    r = await mem.get(f"{BASE}/sessions/s1", headers=h)
    body = await r.json()
    assert r.status == 200 and body["session_id"] == "s1"
    assert {m["memory_id"] for m in body["memories"]} == {a["memory_id"], b["memory_id"]}
    assert body["summary"] is None and body["recent_turns"] == []
    assert (await mem.get(f"{BASE}/sessions/nope", headers=h)).status == 404
    r = await mem.delete(f"{BASE}/sessions/s1/all", headers=h)
    assert (await r.json()) == {"deleted": 2}
    assert (await mem.get(f"{BASE}/sessions/s1", headers=h)).status == 404
    r = await mem.get(f"{BASE}/{keep['memory_id']}", headers=h)
    assert (await r.json())["related"] == []  # the link to the deleted memory went too
    r = await mem.delete(f"{BASE}/sessions/s1/all", headers=h)
    assert (await r.json()) == {"deleted": 0}


async def test_admin_flush(mem: Any) -> None:
    admin = mem.auth_headers("root", admin=True)
    await add(mem, "alice", "a1 about Rome")
    await add(mem, "alice", "a2 about Rome", tier="knowledge")
    await add(mem, "bob", "b1 about Rome")
    r = await mem.post(
        f"{BASE}/admin/flush", json={"user_id": "alice", "tier": "knowledge"}, headers=admin
    )
    assert r.status == 200 and (await r.json())["deleted"] == 1
    r = await mem.post(f"{BASE}/admin/flush", json={"older_than": "1d"}, headers=admin)
    assert (await r.json())["deleted"] == 0
    r = await mem.post(f"{BASE}/admin/flush", json={"older_than": "not a date"}, headers=admin)
    assert r.status == 422
    r = await mem.post(f"{BASE}/admin/flush", json={"tier": "bogus"}, headers=admin)
    assert r.status == 422
    r = await mem.post(
        f"{BASE}/admin/flush",
        json={"older_than": "2999-01-01T00:00:00Z", "user_id": "alice"},
        headers=admin,
    )
    assert (await r.json())["deleted"] == 1
    stats = await (await mem.get(f"{BASE}/stats", headers=mem.auth_headers("alice"))).json()
    assert stats["total"] == 0 and stats["links"] == 0
    stats = await (await mem.get(f"{BASE}/stats", headers=mem.auth_headers("bob"))).json()
    assert stats["total"] == 1
    r = await mem.post(f"{BASE}/admin/flush", json={}, headers=admin)
    assert (await r.json())["deleted"] == 1


async def test_user_deleted_event_erases_everything(mem: Any) -> None:
    await add(mem, "alice", "Alice's Rome memory", session_id="s1")
    await add(mem, "alice", "Alice's Rome knowledge " * 20, tier="knowledge")
    await add(mem, "bob", "Bob's Rome memory")
    await mem.kernel.bus.publish("user.deleted", {"user_id": "alice"})
    stats = await (await mem.get(f"{BASE}/stats", headers=mem.auth_headers("alice"))).json()
    assert stats["total"] == 0 and stats["links"] == 0 and stats["embedded"] == 0
    stats = await (await mem.get(f"{BASE}/stats", headers=mem.auth_headers("bob"))).json()
    assert stats["total"] == 1
    # A chat turn of the deleted user arriving late (a reply that finished after the
    # deletion) does not bring memories back.
    await mem.kernel.bus.publish(
        "chat.message.created",
        {
            "user_id": "alice",
            "session_id": "s1",
            "message_id": "late",
            "role": "user",
            "character": None,
            "content": "My name is Alice.",
        },
    )
    await memory_plugin(mem).idle()
    stats = await (await mem.get(f"{BASE}/stats", headers=mem.auth_headers("alice"))).json()
    assert stats["total"] == 0


async def test_session_deleted_event(mem: Any) -> None:
    h = mem.auth_headers("alice")
    await add(mem, "alice", "in the session", session_id="s9")
    await add(mem, "bob", "bob's own s9", session_id="s9")
    await mem.kernel.bus.publish("chat.session.deleted", {"user_id": "alice", "session_id": "s9"})
    assert (await mem.get(f"{BASE}/sessions/s9", headers=h)).status == 404
    assert (await mem.get(f"{BASE}/sessions/s9", headers=mem.auth_headers("bob"))).status == 200


async def test_stats_and_health(mem: Any) -> None:
    h = mem.auth_headers("alice")
    await add(mem, "alice", "one", session_id="s1")
    await add(mem, "alice", "two", tier="short_term", session_id="s2")
    stats = await (await mem.get(f"{BASE}/stats", headers=h)).json()
    assert stats["user_id"] == "alice" and stats["total"] == 2 and stats["sessions"] == 2
    assert stats["tiers"] == {
        "short_term": 1,
        "mid_term": 0,
        "long_term": 1,
        "associative": 0,
        "knowledge": 0,
    }
    assert stats["embedder"]["embedder"] == "hashing" and stats["embedded"] == 2
    health = await (await mem.get("/health")).json()
    assert health["plugins"]["memory"]["status"] == "ok"
    assert memory_plugin(mem).service is not None


async def test_local_falls_back_to_hashing_when_model_missing(llmmc: Any) -> None:
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory"],
                "memory": {"embedder": "local", "model_path": "/nonexistent/model"},
            }
        }
    )
    health = await (await client.get("/health")).json()
    assert health["plugins"]["memory"]["status"] == "degraded"
    assert "hashing" in health["plugins"]["memory"]["detail"]
    r = await client.post(BASE, json={"content": "still works"}, headers=client.auth_headers("u"))
    assert r.status == 201
    stats = await (await client.get(f"{BASE}/stats", headers=client.auth_headers("u"))).json()
    assert stats["embedder"]["embedder"] == "hashing" and stats["embedder"]["fallback"] is True


async def test_openai_embedder_without_settings_is_unavailable(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["memory"], "memory": {"embedder": "openai"}}})
    health = await (await client.get("/health")).json()
    assert health["plugins"]["memory"]["status"] == "unavailable"
    r = await client.post(BASE, json={"content": "x"}, headers=client.auth_headers("u"))
    assert r.status == 503
    body = await r.json()
    assert "plugins.memory.base_url" in body["detail"] and "plugins.memory.model" in body["detail"]


async def test_large_document_bulk_path(mem: Any) -> None:
    """A document of many chunks goes through the bulk insert path (columnar, one transaction)."""
    h = mem.auth_headers("alice")
    text = "\n\n".join(
        f"Chapter {i}: the lighthouse keeper number {i} logged {i * 7} ships and a storm called Storm{i}."
        for i in range(400)
    )
    doc = await add(mem, "alice", text, tier="knowledge", session_id="lib")
    chunks = doc["metadata"]["chunks"]
    assert chunks > 16
    r = await mem.post(
        f"{BASE}/search",
        json={"query": "storm called Storm123", "tiers": ["knowledge"], "top_k": 3},
        headers=h,
    )
    results = (await r.json())["results"]
    assert any("Storm123." in x["content"] for x in results)
    assert all(
        x["session_id"] == "lib" and x["metadata"]["document_id"] == doc["memory_id"]
        for x in results
    )
    stats = await (await mem.get(f"{BASE}/stats", headers=h)).json()
    assert stats["tiers"]["knowledge"] == chunks + 1 and stats["embedded"] == chunks
    assert (await mem.delete(f"{BASE}/sessions/lib/all", headers=h)).status == 200
    stats = await (await mem.get(f"{BASE}/stats", headers=h)).json()
    assert stats["total"] == 0 and stats["embedded"] == 0


async def test_browse_by_tier_newest_first(mem: Any) -> None:
    h = mem.auth_headers("alice")
    first = await add(mem, "alice", "Alice grows tomatoes")
    second = await add(mem, "alice", "Alice cycles to work")
    note = await add(mem, "alice", "tomatoes and cycling", tier="associative")
    doc = await add(mem, "alice", "A long document. " * 400, tier="knowledge")
    await add(mem, "bob", "Bob's secret fact")

    r = await mem.get(f"{BASE}?tier=long_term", headers=h)
    assert r.status == 200
    page = await r.json()
    assert [m["memory_id"] for m in page["memories"]] == [
        second["memory_id"],
        first["memory_id"],
    ]
    assert page["total"] == 2

    r = await mem.get(f"{BASE}?limit=2&offset=1", headers=h)
    page = await r.json()
    assert page["total"] == 4  # a document counts once, not once per chunk
    assert [m["memory_id"] for m in page["memories"]] == [note["memory_id"], second["memory_id"]]
    r = await mem.get(f"{BASE}?tier=knowledge", headers=h)
    assert [m["memory_id"] for m in (await r.json())["memories"]] == [doc["memory_id"]]

    r = await mem.get(BASE, headers=mem.auth_headers("carol"))
    assert await r.json() == {"memories": [], "total": 0}

    for query in (
        "tier=nope",
        "limit=0",
        "limit=201",
        "offset=-1",
        "limit=²",
        "limit=" + "9" * 2000,
    ):
        r = await mem.get(f"{BASE}?{query}", headers=h)
        assert r.status == 422, query
        assert (await r.json())["errors"][0]["path"] in ("/tier", "/limit", "/offset")
    r = await mem.get(BASE)
    assert r.status == 401
