"""The OpenAI-compatible door, token quotas fed by real usage, and the real auth plugin
(API keys on /v1, account deletion erasing chats)."""

from __future__ import annotations

import json

from tests.chat.helpers import chat_config, read_sse
from tests.fakes.openai_server import FakeOpenAI


async def test_v1_models_and_completions_plain_and_streaming(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url, request_timeout_seconds=0.5, max_retries=1))
        h = client.auth_headers("u1")
        r = await client.get("/v1/models", headers=h)
        ids = [m["id"] for m in (await r.json())["data"]]
        assert ids == ["character:lumina", "character:claris", "character:nox"]

        fake.queue("Bonjour!", usage={"prompt_tokens": 12, "completion_tokens": 2})
        body = {
            "model": "character:claris",
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Salut"},
                {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
            ],
        }
        r = await client.post("/v1/chat/completions", json=body, headers=h)
        out = await r.json()
        assert r.status == 200, out
        assert out["object"] == "chat.completion" and out["model"] == "character:claris"
        assert out["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour!"}
        assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
        sent = fake.requests[-1]["messages"]
        assert "You are Claris" in sent[0]["content"] and "Answer in French." in sent[0]["content"]
        assert sent[1:] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "How are you?"},
        ]

        fake.queue("Un deux trois", usage={"prompt_tokens": 5, "completion_tokens": 3})
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
            headers=h,
        ) as resp:
            assert resp.status == 200
            frames = [
                line.decode()[6:].strip()
                async for line in resp.content
                if line.startswith(b"data: ")
            ]
        assert frames[-1] == "[DONE]"
        chunks = [json.loads(f) for f in frames[:-1]]
        assert (
            "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            == "Un deux trois"
        )
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "total_tokens": 8,
        }

        fake.fail_next(500, times=2)
        r = await client.post("/v1/chat/completions", json=body, headers=h)
        assert r.status == 502 and (await r.json())["error"]["code"] == "UPSTREAM_ERROR"
        fake.delay = 2  # slower than request_timeout_seconds
        async with client.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=h
        ) as resp:
            frames = [
                line.decode()[6:].strip()
                async for line in resp.content
                if line.startswith(b"data: ")
            ]
        assert (
            frames[-1] == "[DONE]" and json.loads(frames[-2])["error"]["code"] == "UPSTREAM_TIMEOUT"
        )
        fake.delay = 0

        r = await client.post("/v1/chat/completions", json={**body, "model": "gpt-4"}, headers=h)
        assert r.status == 404
        r = await client.post(
            "/v1/chat/completions", json={"model": "character:nox", "messages": []}, headers=h
        )
        assert r.status == 422
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status == 401
        # nothing of this went into chat sessions
        r = await client.get("/api/v1/chat/sessions", headers=h)
        assert (await r.json())["sessions"] == []


async def test_quota_exceeded_after_real_usage_events(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("ratelimit", "chat"))
        cfg["plugins"]["ratelimit"] = {"quotas": {"tokens_per_day": {"user": 100, "admin": 0}}}
        client = await llmmc(cfg)
        h = client.auth_headers("u1")
        fake.queue("a", usage={"prompt_tokens": 40, "completion_tokens": 20})
        r = await client.post("/api/v1/chat", json={"user_input": "hi"}, headers=h)
        assert r.status == 200
        # streamed usage counts too
        fake.queue("b", usage={"prompt_tokens": 30, "completion_tokens": 20})
        async with client.stream(
            "POST", "/api/v1/chat/stream", json={"user_input": "hi"}, headers=h
        ) as resp:
            assert (await read_sse(resp))[-1][0] == "done"
        for path in ("/api/v1/chat", "/api/v1/chat/stream"):
            r = await client.post(path, json={"user_input": "more"}, headers=h)
            assert r.status == 429 and (await r.json())["code"] == "QUOTA_EXCEEDED"
            assert r.headers.get("Retry-After")
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "character:lumina", "messages": [{"role": "user", "content": "x"}]},
            headers=h,
        )
        assert r.status == 429
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json({"type": "chat", "message": "more", "request_id": "q"})
            frame = await ws.receive_json(timeout=5)
            assert frame["type"] == "error" and frame["code"] == "RATE_LIMITED"
        # another user is unaffected; admins are unlimited
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi"}, headers=client.auth_headers("u2")
        )
        assert r.status == 200
        assert len(fake.requests) == 3


async def test_real_auth_api_key_on_v1_and_deleting_the_user_erases_chats(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("auth", "chat"))
        cfg["plugins"]["auth"] = {"jwt_secret": "x" * 40, "bcrypt_rounds": 4}
        client = await llmmc(cfg)
        r = await client.post(
            "/api/v1/auth/register",
            json={
                "username": "kim",
                "email": "kim@example.com",
                "password": "correct horse battery 9",
            },
        )
        assert r.status == 201, await r.text()
        reg = await r.json()
        h = {"Authorization": f"Bearer {reg['access_token']}"}
        user_id = reg["user"]["user_id"]
        r = await client.post("/api/v1/chat", json={"user_input": "remember me"}, headers=h)
        assert r.status == 200
        r = await client.post("/api/v1/auth/api-keys", json={"name": "sdk"}, headers=h)
        key = (await r.json())["key"]
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "character:nox", "messages": [{"role": "user", "content": "yo"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status == 200
        async with client.ws_connect("/ws/chat") as ws:
            await ws.send_json({"type": "auth", "token": reg["access_token"]})
            assert (await ws.receive_json(timeout=5))["user_id"] == user_id
        chat = client.kernel.records["chat"].instance
        assert len(await chat.service.store.list_sessions(user_id)) == 1
        r = await client.delete(f"/api/v1/auth/users/{user_id}", headers=h)
        assert r.status == 204
        for _ in range(100):
            if not await chat.service.store.list_sessions(user_id):
                break
            import asyncio

            await asyncio.sleep(0.02)
        assert await chat.service.store.list_sessions(user_id) == []
        rows = await chat.service.store.db.fetchall(
            "SELECT count(*) FROM chat_messages WHERE user_id = ?", [user_id]
        )
        assert rows[0][0] == 0
