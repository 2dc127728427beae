"""DELETE /api/v1/chat/messages/{message_id} on both engines: a user message goes with its
replies (alternatives too), a reply goes alone (its next alternative is shown), another
user's message is 404."""

from __future__ import annotations

from typing import Any

from tests.chat.helpers import chat, chat_config, history
from tests.fakes.openai_server import FakeOpenAI


async def count(client: Any, sid: str, h: dict[str, str]) -> int:
    r = await client.get(f"/api/v1/chat/sessions/{sid}", headers=h)
    return (await r.json())["message_count"]


async def test_deleting_a_reply_shows_its_next_alternative(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("first answer")
        sid = (await chat(client, h, user_input="hi"))["session_id"]
        fake.queue("later answer")
        await chat(client, h, user_input="and then?", session_id=sid)
        original = (await history(client, sid, h))[1]["message_id"]
        fake.queue("second answer")
        r = await client.post(f"/api/v1/chat/messages/{original}/regenerate", json={}, headers=h)
        second = (await r.json())["replies"][0]["message_id"]
        fake.queue("third answer")
        r = await client.post(f"/api/v1/chat/messages/{second}/regenerate", json={}, headers=h)
        third = (await r.json())["replies"][0]["message_id"]
        # show the second, then delete it: the next one (the third) is shown
        r = await client.post(f"/api/v1/chat/messages/{second}/select", headers=h)
        assert r.status == 200
        r = await client.delete(f"/api/v1/chat/messages/{second}", headers=h)
        assert r.status == 204, await r.text()
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs] == ["hi", "third answer", "and then?", "later answer"]
        assert msgs[1]["alternatives"] == [original, third]
        # delete the last of a group: the previous one is shown
        r = await client.delete(f"/api/v1/chat/messages/{third}", headers=h)
        assert r.status == 204
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs][:2] == ["hi", "first answer"]
        assert msgs[1]["alternatives"] == [original]
        # a hidden alternative's deletion changes nothing shown; the last reply alone:
        # its user message stays, unanswered
        r = await client.delete(f"/api/v1/chat/messages/{original}", headers=h)
        assert r.status == 204
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs] == ["hi", "and then?", "later answer"]
        assert await count(client, sid, h) == 3
        # gone: 404 a second time
        r = await client.delete(f"/api/v1/chat/messages/{original}", headers=h)
        assert r.status == 404
        # the next prompt does not see what was deleted
        fake.queue("ok")
        await chat(client, h, user_input="next", session_id=sid)
        sent = str(fake.requests[-1]["messages"])
        assert "first answer" not in sent and "second answer" not in sent


async def test_deleting_a_user_message_takes_its_replies(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("answer one")
        sid = (await chat(client, h, user_input="one"))["session_id"]
        fake.queue("answer two")
        await chat(client, h, user_input="two", session_id=sid)
        msgs = await history(client, sid, h)
        fake.queue("answer two again")
        r = await client.post(
            f"/api/v1/chat/messages/{msgs[3]['message_id']}/regenerate", json={}, headers=h
        )
        assert r.status == 200
        r = await client.delete(f"/api/v1/chat/messages/{msgs[2]['message_id']}", headers=h)
        assert r.status == 204, await r.text()
        after = await history(client, sid, h)
        assert [m["content"] for m in after] == ["one", "answer one"]
        assert await count(client, sid, h) == 2
        # neither the reply nor its alternative remains
        for m in msgs[2:]:
            r = await client.post(f"/api/v1/chat/messages/{m['message_id']}/select", headers=h)
            assert r.status == 404


async def test_another_users_message_cannot_be_deleted(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        body = await chat(client, h, user_input="mine")
        sid = body["session_id"]
        msgs = await history(client, sid, h)
        for m in msgs:
            r = await client.delete(
                f"/api/v1/chat/messages/{m['message_id']}", headers=client.auth_headers("u2")
            )
            assert r.status == 404
        r = await client.delete("/api/v1/chat/messages/msg_nope", headers=h)
        assert r.status == 404
        assert len(await history(client, sid, h)) == 2
