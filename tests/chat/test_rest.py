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
