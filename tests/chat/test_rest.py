"""REST chat against the real kernel and the fake OpenAI upstream."""

from __future__ import annotations

from tests.chat.helpers import chat_config
from tests.fakes.openai_server import FakeOpenAI


async def test_chat_creates_session_stores_history_and_publishes_usage(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        fake.queue("Hi, I am Lumina!", usage={"prompt_tokens": 30, "completion_tokens": 5})
        r = await client.post("/api/v1/chat", json={"user_input": "hello"}, headers=h)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["response"] == "Hi, I am Lumina!" and body["character"] == "lumina"
        assert body["replies"][0]["usage"] == {
            "prompt_tokens": 30,
            "completion_tokens": 5,
            "total_tokens": 35,
        }
        sid = body["session_id"]
        sent = fake.requests[-1]["messages"]
        assert sent[0]["role"] == "system" and "Lumina" in sent[0]["content"]
        assert sent[-1] == {"role": "user", "content": "hello"}

        r = await client.post(
            "/api/v1/chat", json={"user_input": "and again", "session_id": sid}, headers=h
        )
        assert r.status == 200
        # history reached the model
        contents = [m["content"] for m in fake.requests[-1]["messages"]]
        assert "hello" in contents and "Hi, I am Lumina!" in contents

        r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
        msgs = (await r.json())["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
        assert msgs[1]["content"] == "Hi, I am Lumina!" and msgs[1]["character"] == "lumina"

        r = await client.get("/api/v1/chat/sessions", headers=h)
        sessions = (await r.json())["sessions"]
        assert [s["session_id"] for s in sessions] == [sid] and sessions[0]["message_count"] == 4


async def test_characters_listing_and_unknown_character(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        r = await client.get("/api/v1/chat/characters", headers=h)
        chars = await r.json()
        assert [c["id"] for c in chars] == ["lumina", "claris", "nox"]
        assert {k: chars[0][k] for k in ("scope", "owner_id", "avatar_url")} == {
            "scope": "system",
            "owner_id": None,
            "avatar_url": None,
        }
        assert {
            k: chars[0][k] for k in ("id", "name", "description", "provider", "model", "aliases")
        } == {
            "id": "lumina",
            "name": "Lumina",
            "description": "",
            "provider": "fake",
            "model": "fake-model",
            "aliases": ["ルミナ", "るみな"],
        }
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi", "character": "zed"}, headers=h
        )
        assert r.status == 422 and (await r.json())["code"] == "UNKNOWN_CHARACTER"
        r = await client.post("/api/v1/chat", json={"user_input": ""}, headers=h)
        assert r.status == 422
        r = await client.post("/api/v1/chat", json={"session_id": "x"}, headers=h)
        assert r.status == 422
        r = await client.post(
            "/api/v1/chat", data="{nope", headers={**h, "Content-Type": "application/json"}
        )
        assert r.status == 400
        r = await client.post("/api/v1/chat", json={"user_input": "hi"})
        assert r.status == 401
        assert fake.requests == []


async def test_another_users_session_is_404_everywhere(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        alice, bob = client.auth_headers("alice"), client.auth_headers("bob")
        r = await client.post("/api/v1/chat", json={"user_input": "secret plans"}, headers=alice)
        sid = (await r.json())["session_id"]
        for method, path, body in [
            ("GET", f"/api/v1/chat/history/{sid}", None),
            ("GET", f"/api/v1/chat/sessions/{sid}", None),
            ("DELETE", f"/api/v1/chat/sessions/{sid}", None),
            ("PATCH", f"/api/v1/chat/sessions/{sid}", {"title": "mine now"}),
            ("POST", "/api/v1/chat", {"user_input": "hi", "session_id": sid}),
            ("POST", "/api/v1/chat/stream", {"user_input": "hi", "session_id": sid}),
        ]:
            r = await client.request(method, path, json=body, headers=bob)
            assert r.status == 404, (method, path, r.status)
            assert "secret" not in await r.text()
        r = await client.get("/api/v1/chat/sessions", headers=bob)
        assert (await r.json())["sessions"] == []
        async with client.ws_connect("/ws/chat", headers=bob) as ws:
            await ws.send_json(
                {"type": "chat", "message": "hi", "session_id": sid, "request_id": "r1"}
            )
            frame = await ws.receive_json(timeout=5)
            assert (
                frame["type"] == "error"
                and frame["code"] == "BAD_MESSAGE"
                and frame["status"] == 404
            )
        # alice still has everything
        r = await client.get(f"/api/v1/chat/sessions/{sid}", headers=alice)
        assert (await r.json())["title"] != "mine now"
        r = await client.get(f"/api/v1/chat/history/{sid}", headers=alice)
        assert len((await r.json())["messages"]) == 2
        assert len(fake.requests) == 1


async def test_delete_session_and_history_paging(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        r = await client.post("/api/v1/chat", json={"user_input": "one"}, headers=h)
        sid = (await r.json())["session_id"]
        for text in ("two", "three"):
            await client.post(
                "/api/v1/chat", json={"user_input": text, "session_id": sid}, headers=h
            )
        r = await client.get(f"/api/v1/chat/history/{sid}?limit=2", headers=h)
        page = (await r.json())["messages"]
        assert [m["content"] for m in page] == ["three", "Hello! You said: three"]
        r = await client.get(
            f"/api/v1/chat/history/{sid}?limit=2&before={page[0]['message_id']}", headers=h
        )
        assert [m["content"] for m in (await r.json())["messages"]] == [
            "two",
            "Hello! You said: two",
        ]
        r = await client.get(f"/api/v1/chat/history/{sid}?limit=0", headers=h)
        assert r.status == 422
        r = await client.get(f"/api/v1/chat/history/{sid}?before=nope", headers=h)
        assert r.status == 422
        r = await client.delete(f"/api/v1/chat/sessions/{sid}", headers=h)
        assert r.status == 204
        r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
        assert r.status == 404


async def test_upstream_500_429_and_timeout_become_502_and_504(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url, request_timeout_seconds=0.5))
        h = client.auth_headers("u1")
        fake.fail_next(500, times=2)  # max_retries=1: both attempts fail
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        assert r.status == 502 and (await r.json())["code"] == "UPSTREAM_ERROR"
        assert len(fake.requests) == 2
        fake.fail_next(429, times=2, headers={"Retry-After": "0"})
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        assert r.status == 502 and "429" in (await r.json())["detail"]
        fake.fail_next(500, times=1)  # one failure is retried away
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        assert r.status == 200
        fake.delay = 2
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        assert r.status == 504 and (await r.json())["code"] == "UPSTREAM_TIMEOUT"


async def test_missing_api_key_degrades_and_answers_503_naming_the_setting(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url)
        cfg["plugins"]["chat"]["providers"]["openai"] = {
            "type": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key": "",
            "model": "gpt-4o-mini",
        }
        cfg["plugins"]["chat"]["providers"]["claude"] = {
            "type": "anthropic",
            "api_key": "sk-ant-very-secret-value",
            "model": "claude-sonnet-4-5",
            "base_url": fake.base,
        }
        cfg["plugins"]["chat"]["characters"]["nox"]["provider"] = "openai"
        client = await llmmc(cfg)
        h = client.auth_headers("u1")
        r = await client.get("/health")
        health = await r.json()
        text = await r.text()
        assert r.status == 200
        assert health["plugins"]["chat"]["status"] == "degraded"
        assert health["plugins"]["chat"]["checks"]["providers"]["openai"]["status"] == "unavailable"
        assert "plugins.chat.providers.openai.api_key" in text
        assert "sk-ant-very-secret-value" not in text
        r = await client.get(
            "/api/v1/plugins/chat", headers=client.auth_headers("admin", admin=True)
        )
        assert "sk-ant-very-secret-value" not in await r.text()
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi", "character": "nox"}, headers=h
        )
        assert r.status == 503
        assert "plugins.chat.providers.openai.api_key" in (await r.json())["detail"]
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi", "character": "lumina"}, headers=h
        )
        assert r.status == 200


async def test_fallback_provider_answers_when_the_first_fails(llmmc):
    async with FakeOpenAI() as broken, FakeOpenAI(default_reply="backup here") as backup:
        cfg = chat_config(broken.url, max_retries=0)
        cfg["plugins"]["chat"]["providers"]["backup"] = {
            "type": "openai",
            "base_url": backup.url,
            "model": "b",
        }
        cfg["plugins"]["chat"]["characters"]["lumina"]["fallback"] = ["backup"]
        client = await llmmc(cfg)
        broken.fail_next(503)
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi"}, headers=client.auth_headers("u")
        )
        assert r.status == 200 and (await r.json())["response"] == "backup here"
        assert len(broken.requests) == 1 and len(backup.requests) == 1


async def test_rename_a_session(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        r = await client.post("/api/v1/chat", json={"user_input": "first"}, headers=h)
        sid = (await r.json())["session_id"]
        r = await client.post("/api/v1/chat", json={"user_input": "second"}, headers=h)
        other = (await r.json())["session_id"]
        r = await client.get("/api/v1/chat/sessions", headers=h)
        order = [s["session_id"] for s in (await r.json())["sessions"]]
        before = await (await client.get(f"/api/v1/chat/sessions/{sid}", headers=h)).json()

        r = await client.patch(
            f"/api/v1/chat/sessions/{sid}", json={"title": "  Trip\n to  京都 "}, headers=h
        )
        assert r.status == 200, await r.text()
        renamed = await r.json()
        assert renamed["title"] == "Trip to 京都"
        assert renamed["session_id"] == sid
        assert renamed["updated_at"] == before["updated_at"]
        assert renamed["message_count"] == before["message_count"] == 2
        r = await client.get(f"/api/v1/chat/sessions/{sid}", headers=h)
        assert (await r.json())["title"] == "Trip to 京都"
        r = await client.get("/api/v1/chat/sessions", headers=h)
        listed = (await r.json())["sessions"]
        assert [s["session_id"] for s in listed] == order  # renaming does not reorder
        assert next(s for s in listed if s["session_id"] == other)["title"] != "Trip to 京都"
        r = await client.patch(f"/api/v1/chat/sessions/{sid}", json={"title": "x" * 120}, headers=h)
        assert r.status == 200

        for body in (
            {"title": ""},
            {"title": " \n\t "},
            {"title": "x" * 121},
            {},
            {"title": 3},
            {"title": "ok", "extra": 1},
        ):
            r = await client.patch(f"/api/v1/chat/sessions/{sid}", json=body, headers=h)
            assert r.status == 422, body
            problem = await r.json()
            assert problem["errors"][0]["path"] in ("/title", "/", ""), problem
        r = await client.patch(
            f"/api/v1/chat/sessions/{sid}",
            data="{nope",
            headers={**h, "Content-Type": "application/json"},
        )
        assert r.status == 400
        r = await client.patch("/api/v1/chat/sessions/ses_nope", json={"title": "a"}, headers=h)
        assert r.status == 404 and (await r.json())["code"] == "SESSION_NOT_FOUND"
        r = await client.patch(f"/api/v1/chat/sessions/{sid}", json={"title": "a"})
        assert r.status == 401
        r = await client.get(f"/api/v1/chat/sessions/{sid}", headers=h)
        assert (await r.json())["title"] == "x" * 120
