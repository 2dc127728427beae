"""Messages as data, through HTTP and the WebSocket, on both engines: status of stopped
and failed replies, regenerate with alternatives, select, edit-and-resend, continue,
export, client_message_id, and usage counted for every generation."""

from __future__ import annotations

import asyncio
import json

from tests.chat.helpers import chat, chat_config, frames_until, history, is_done, read_sse
from tests.fakes.openai_server import FakeOpenAI


async def test_a_failed_reply_keeps_its_text_and_the_users_message(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        first = await chat(client, h, user_input="hello")
        sid = first["session_id"]
        # the upstream breaks off after three deltas (no retry once text has streamed)
        fake.queue("one two three four five six seven", error_after=3)
        async with client.stream(
            "POST",
            "/api/v1/chat/stream",
            json={"user_input": "go on", "session_id": sid},
            headers=h,
        ) as resp:
            events = await read_sse(resp)
        assert events[-1][0] == "error" and events[-1][1]["session_id"] == sid
        streamed = "".join(d["delta"] for kind, d in events if kind == "chunk")
        assert streamed
        msgs = await history(client, sid, h)
        assert [(m["role"], m["status"]) for m in msgs] == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "failed"),
        ]
        assert msgs[2]["content"] == "go on" and msgs[3]["content"] == streamed
        assert msgs[3]["reply_to"] == msgs[2]["message_id"]
        # an upstream down before any text: the user's message stays, the reply is failed
        fake.fail_next(500, times=2)  # the first try and its one retry
        r = await client.post(
            "/api/v1/chat", json={"user_input": "anyone?", "session_id": sid}, headers=h
        )
        assert r.status == 502
        problem = await r.json()
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs[-2:]] == ["anyone?", ""]
        assert msgs[-1]["status"] == "failed"
        # the error says where the turn's messages are
        assert problem["session_id"] == sid
        assert problem["user_message_id"] == msgs[-2]["message_id"]
        assert problem["message_id"] == msgs[-1]["message_id"]
        # a failed reply can be regenerated
        fake.queue("Here I am.")
        r = await client.post(
            f"/api/v1/chat/messages/{msgs[-1]['message_id']}/regenerate", json={}, headers=h
        )
        assert r.status == 200, await r.text()
        assert (await r.json())["response"] == "Here I am."
        assert (await history(client, sid, h))[-1]["content"] == "Here I am."


async def test_a_stopped_reply_over_the_websocket_is_kept(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue(" ".join(f"w{i}" for i in range(200)), chunk_delay=0.03)
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json({"type": "chat", "message": "talk", "request_id": "a"})
            streamed: list[str] = []
            sid = None
            while len(streamed) < 3:
                frame = await ws.receive_json(timeout=5)
                sid = frame.get("session_id") or sid
                if frame["type"] == "chunk":
                    streamed.append(frame["data"])
            await ws.send_json({"type": "cancel", "request_id": "a"})
            frames = await frames_until(ws, is_done("a"))
            streamed += [f["data"] for f in frames if f["type"] == "chunk"]
            assert frames[-1]["cancelled"] is True
            assert frames[-1]["replies"][0]["status"] == "stopped"
        msgs = await history(client, sid, h)
        assert [(m["content"], m["status"]) for m in msgs] == [
            ("talk", "complete"),
            ("".join(streamed), "stopped"),
        ]


async def test_regenerate_keeps_alternatives_and_select_shows_one(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("first answer")
        sid = (await chat(client, h, user_input="hi"))["session_id"]
        fake.queue("later answer")
        await chat(client, h, user_input="and then?", session_id=sid)
        msgs = await history(client, sid, h)
        original = msgs[1]["message_id"]
        assert msgs[1]["alternatives"] == [original] and msgs[0]["alternatives"] == []

        fake.queue("second answer")
        r = await client.post(f"/api/v1/chat/messages/{original}/regenerate", json={}, headers=h)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["session_id"] == sid and body["response"] == "second answer"
        assert body["character"] == "lumina"
        second = body["replies"][0]["message_id"]
        # the model was asked the same user message, without the later turns
        sent = fake.requests[-1]["messages"]
        assert sent[-1] == {"role": "user", "content": "hi"}
        assert "later answer" not in json.dumps(sent)

        # regenerate by another character, from the shown alternative
        fake.queue("third answer, by Claris")
        r = await client.post(
            f"/api/v1/chat/messages/{second}/regenerate", json={"character": "クラリス"}, headers=h
        )
        third = (await r.json())["replies"][0]
        assert third["character"] == "claris"

        msgs = await history(client, sid, h)
        # the new reply took the place of the first; the later turn is still after it
        assert [m["content"] for m in msgs] == [
            "hi",
            "third answer, by Claris",
            "and then?",
            "later answer",
        ]
        assert msgs[1]["alternatives"] == [original, second, third["message_id"]]
        r = await client.get(f"/api/v1/chat/sessions/{sid}", headers=h)
        assert (await r.json())["message_count"] == 4

        r = await client.post(f"/api/v1/chat/messages/{original}/select", headers=h)
        assert r.status == 200, await r.text()
        shown = await r.json()
        assert shown["content"] == "first answer" and len(shown["alternatives"]) == 3
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs][:2] == ["hi", "first answer"]
        # the next turn's prompt sees the shown alternative only
        fake.queue("ok")
        await chat(client, h, user_input="next", session_id=sid)
        prompt = json.dumps(fake.requests[-1]["messages"], ensure_ascii=False)
        assert "first answer" in prompt and "second answer" not in prompt

        # a user message is not a reply; unknown ids are 404
        r = await client.post(
            f"/api/v1/chat/messages/{msgs[0]['message_id']}/regenerate", json={}, headers=h
        )
        assert r.status == 422 and (await r.json())["code"] == "NOT_A_REPLY"
        r = await client.post("/api/v1/chat/messages/msg_nope/regenerate", json={}, headers=h)
        assert r.status == 404


async def test_another_users_messages_are_404_everywhere(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        other = client.auth_headers("u2")
        body = await chat(client, h, user_input="mine")
        sid = body["session_id"]
        reply = body["replies"][0]["message_id"]
        user_msg = (await history(client, sid, h))[0]["message_id"]
        requests_before = len(fake.requests)
        for method, path, payload in [
            ("POST", f"/api/v1/chat/messages/{reply}/regenerate", {}),
            ("POST", f"/api/v1/chat/messages/{reply}/select", None),
            ("PATCH", f"/api/v1/chat/messages/{user_msg}", {"content": "stolen"}),
            ("POST", f"/api/v1/chat/sessions/{sid}/continue", {}),
            ("GET", f"/api/v1/chat/sessions/{sid}/export", None),
            ("GET", f"/api/v1/chat/sessions/{sid}/export?format=markdown", None),
        ]:
            r = await client.request(method, path, json=payload, headers=other)
            assert r.status == 404, (method, path, r.status)
        async with client.ws_connect("/ws/chat", headers=other) as ws:
            await ws.send_json({"type": "regenerate", "message_id": reply, "request_id": "x"})
            frame = (await frames_until(ws, is_done("x")))[-1]
            assert frame["type"] == "error" and frame["status"] == 404
        assert len(fake.requests) == requests_before
        msgs = await history(client, sid, h)
        assert msgs[0]["content"] == "mine" and len(msgs) == 2


async def test_edit_and_resend_drops_what_came_after(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("A1")
        sid = (await chat(client, h, user_input="question one"))["session_id"]
        fake.queue("A2")
        await chat(client, h, user_input="question two", session_id=sid)
        fake.queue("A3")
        await chat(client, h, user_input="question three", session_id=sid)
        msgs = await history(client, sid, h)
        second_question = msgs[2]["message_id"]

        fake.queue("A2 again")
        r = await client.patch(
            f"/api/v1/chat/messages/{second_question}",
            json={"content": "question two, better"},
            headers=h,
        )
        assert r.status == 200, await r.text()
        assert (await r.json())["response"] == "A2 again"
        sent = json.dumps(fake.requests[-1]["messages"])
        assert "question two, better" in sent and "question three" not in sent
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs] == [
            "question one",
            "A1",
            "question two, better",
            "A2 again",
        ]
        assert msgs[2]["message_id"] == second_question
        r = await client.get(f"/api/v1/chat/sessions/{sid}", headers=h)
        assert (await r.json())["message_count"] == 4
        # only the caller's own user messages can be edited
        r = await client.patch(
            f"/api/v1/chat/messages/{msgs[1]['message_id']}", json={"content": "x"}, headers=h
        )
        assert r.status == 422 and (await r.json())["code"] == "NOT_A_USER_MESSAGE"
        r = await client.patch(
            f"/api/v1/chat/messages/{second_question}", json={"content": "   "}, headers=h
        )
        assert r.status == 422


async def test_continue_grows_the_last_reply(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("Once upon a time", usage={"prompt_tokens": 10, "completion_tokens": 4})
        body = await chat(client, h, user_input="tell me a story")
        sid, reply_id = body["session_id"], body["replies"][0]["message_id"]
        fake.queue(" there was a fox.", usage={"prompt_tokens": 14, "completion_tokens": 5})
        r = await client.post(f"/api/v1/chat/sessions/{sid}/continue", json={}, headers=h)
        assert r.status == 200, await r.text()
        grown = (await r.json())["replies"][0]
        assert grown["message_id"] == reply_id
        assert grown["content"] == "Once upon a time there was a fox."
        assert grown["usage"]["total_tokens"] == 19  # this generation's
        sent = fake.requests[-1]["messages"]
        assert sent[-2] == {"role": "assistant", "content": "Once upon a time"}
        assert "Continue" in sent[-1]["content"]
        msgs = await history(client, sid, h)
        assert [m["content"] for m in msgs] == [
            "tell me a story",
            "Once upon a time there was a fox.",
        ]
        # streamed, as Server-Sent Events when asked for
        fake.queue(" The end.")
        async with client.stream(
            "POST",
            f"/api/v1/chat/sessions/{sid}/continue",
            json={"character": "Lumina"},
            headers={**h, "Accept": "text/event-stream"},
        ) as resp:
            events = await read_sse(resp)
        assert [k for k, _ in events if k != "chunk"] == ["start", "end", "done"]
        assert "".join(d["delta"] for k, d in events if k == "chunk") == " The end."
        msgs = await history(client, sid, h)
        assert msgs[-1]["content"] == "Once upon a time there was a fox. The end."
        # nothing by Nox to continue
        r = await client.post(
            f"/api/v1/chat/sessions/{sid}/continue", json={"character": "nox"}, headers=h
        )
        assert r.status == 409 and (await r.json())["code"] == "NOTHING_TO_CONTINUE"


async def test_export_as_json_and_markdown(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("Hello from **Lumina**")
        sid = (await chat(client, h, user_input="hi there"))["session_id"]
        r = await client.get(f"/api/v1/chat/sessions/{sid}/export", headers=h)
        assert r.status == 200
        doc = await r.json()
        assert doc["session"]["session_id"] == sid
        assert [m["content"] for m in doc["messages"]] == ["hi there", "Hello from **Lumina**"]
        assert doc["messages"][1]["character_name"] == "Lumina"
        assert "attachment" in r.headers["Content-Disposition"]
        r = await client.get(f"/api/v1/chat/sessions/{sid}/export?format=markdown", headers=h)
        assert r.status == 200 and r.content_type == "text/markdown"
        text = await r.text()
        assert text.startswith("# hi there")
        assert "**You**" in text and "**Lumina**" in text and "Hello from **Lumina**" in text
        r = await client.get(f"/api/v1/chat/sessions/{sid}/export?format=pdf", headers=h)
        assert r.status == 422


async def test_websocket_regenerate_streams_a_new_alternative(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("take one")
        body = await chat(client, h, user_input="hi")
        sid, first = body["session_id"], body["replies"][0]["message_id"]
        fake.queue("take two")
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json({"type": "regenerate", "message_id": first, "request_id": "r"})
            frames = await frames_until(ws, is_done("r"))
        assert frames[-1]["type"] == "complete", frames
        assert "".join(f["data"] for f in frames if f["type"] == "chunk") == "take two"
        assert frames[0]["type"] == "start" and frames[0]["session_id"] == sid
        msgs = await history(client, sid, h)
        assert msgs[1]["content"] == "take two"
        assert msgs[1]["alternatives"] == [first, frames[-1]["message_id"]]


async def test_client_message_id_makes_a_resend_answer_with_the_stored_turn(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("only once")
        body = {"user_input": "hello", "client_message_id": "c-1"}
        first = await chat(client, h, **body)
        again = await chat(client, h, **body)
        assert again["replayed"] is True
        assert again["replies"][0]["message_id"] == first["replies"][0]["message_id"]
        assert again["session_id"] == first["session_id"] and again["response"] == "only once"
        assert len(fake.requests) == 1
        # SSE and WebSocket resends replay it too
        async with client.stream("POST", "/api/v1/chat/stream", json=body, headers=h) as resp:
            events = await read_sse(resp)
        assert events[-1] == ("done", {"session_id": first["session_id"], "replayed": True})
        assert "".join(d["delta"] for k, d in events if k == "chunk") == "only once"
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json(
                {"type": "chat", "message": "hello", "client_message_id": "c-1", "request_id": "w"}
            )
            frames = await frames_until(ws, is_done("w"))
        assert frames[-1]["replayed"] is True
        assert frames[-1]["message_id"] == first["replies"][0]["message_id"]
        assert len(fake.requests) == 1
        msgs = await history(client, first["session_id"], h)
        assert [m["content"] for m in msgs] == ["hello", "only once"]
        # the same id from another user is another turn
        fake.queue("yours")
        theirs = await chat(client, client.auth_headers("u2"), **body)
        assert theirs["response"] == "yours" and "replayed" not in theirs
        # out of bounds
        for bad in ("", "x" * 65):
            r = await client.post(
                "/api/v1/chat", json={"user_input": "x", "client_message_id": bad}, headers=h
            )
            assert r.status == 422


async def test_a_resend_while_the_turn_runs_is_409_and_the_message_is_stored_at_once(
    llmmc, database_url
):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue(" ".join(f"w{i}" for i in range(30)), chunk_delay=0.05)
        body = {"user_input": "slowly", "client_message_id": "c-slow"}
        running = asyncio.create_task(client.post("/api/v1/chat", json=body, headers=h))
        async with asyncio.timeout(5):
            while not fake.requests:  # noqa: ASYNC110 (the fake has no event to wait on)
                await asyncio.sleep(0.02)
        # the user's message is stored before any reply exists
        r = await client.get("/api/v1/chat/sessions", headers=h)
        sid = (await r.json())["sessions"][0]["session_id"]
        assert [m["content"] for m in await history(client, sid, h)] == ["slowly"]
        r = await client.post("/api/v1/chat", json=body, headers=h)
        assert r.status == 409 and (await r.json())["code"] == "TURN_IN_PROGRESS"
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json({"type": "chat", "message": "slowly", "client_message_id": "c-slow"})
            frame = await ws.receive_json(timeout=5)
            assert frame["type"] == "error" and frame["code"] == "TURN_IN_PROGRESS"
        assert (await running).status == 200
        again = await chat(client, h, **body)
        assert again["replayed"] is True and again["response"].startswith("w0 w1")
        assert len(fake.requests) == 1
        # no session was left behind by the refused resend
        r = await client.get("/api/v1/chat/sessions", headers=h)
        assert len((await r.json())["sessions"]) == 1


async def test_usage_and_quota_count_every_generation(llmmc, database_url):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("ratelimit", "chat"))
        cfg["plugins"]["ratelimit"] = {"quotas": {"tokens_per_day": {"user": 100, "admin": 0}}}
        client = await llmmc(cfg, database_url=database_url)
        h = client.auth_headers("u1")
        fake.queue("a", usage={"prompt_tokens": 20, "completion_tokens": 10})
        body = await chat(client, h, user_input="hi")
        reply = body["replies"][0]["message_id"]
        fake.queue("b", usage={"prompt_tokens": 20, "completion_tokens": 10})
        r = await client.post(f"/api/v1/chat/messages/{reply}/regenerate", json={}, headers=h)
        assert r.status == 200
        fake.queue("c", usage={"prompt_tokens": 20, "completion_tokens": 10})
        r = await client.post(
            f"/api/v1/chat/sessions/{body['session_id']}/continue", json={}, headers=h
        )
        assert r.status == 200
        fake.queue("d", usage={"prompt_tokens": 20, "completion_tokens": 10})
        r = await client.post(f"/api/v1/chat/messages/{reply}/regenerate", json={}, headers=h)
        assert r.status == 200
        # 120 tokens spent over four generations: the quota of 100 is used up
        r = await client.post(f"/api/v1/chat/messages/{reply}/regenerate", json={}, headers=h)
        assert r.status == 429 and (await r.json())["code"] == "QUOTA_EXCEEDED"
        r = await client.post(
            f"/api/v1/chat/sessions/{body['session_id']}/continue", json={}, headers=h
        )
        assert r.status == 429
        assert len(fake.requests) == 4


async def test_two_instances_share_alternatives_and_resends(llmmc, postgres_database):
    """Two instances on one PostgreSQL database: a reply made on one is regenerated and
    selected on the other, and a resend to the other while the turn runs is 409."""
    from builtin_plugins.storage.testing import fresh_schema_url

    url = fresh_schema_url(postgres_database)
    async with FakeOpenAI() as fake:
        a = await llmmc(chat_config(fake.url), database_url=url)
        b = await llmmc(chat_config(fake.url), database_url=url)
        h = a.auth_headers("u1")
        fake.queue("from A")
        body = await chat(a, h, user_input="hi", client_message_id="two-1")
        sid, first = body["session_id"], body["replies"][0]["message_id"]
        again = await chat(b, h, user_input="hi", client_message_id="two-1")
        assert again["replayed"] is True and again["response"] == "from A"
        fake.queue("from B")
        r = await b.post(f"/api/v1/chat/messages/{first}/regenerate", json={}, headers=h)
        assert (await r.json())["response"] == "from B"
        msgs = await history(a, sid, h)
        assert msgs[1]["content"] == "from B" and msgs[1]["alternatives"][0] == first
        r = await a.post(f"/api/v1/chat/messages/{first}/select", headers=h)
        assert (await history(b, sid, h))[1]["content"] == "from A"
        fake.queue(" ".join(f"w{i}" for i in range(30)), chunk_delay=0.05)
        running = asyncio.create_task(
            a.post(
                "/api/v1/chat",
                json={"user_input": "slow", "session_id": sid, "client_message_id": "two-2"},
                headers=h,
            )
        )
        async with asyncio.timeout(5):
            while len(fake.requests) < 3:  # noqa: ASYNC110 (the fake has no event to wait on)
                await asyncio.sleep(0.02)
        r = await b.post(
            "/api/v1/chat",
            json={"user_input": "slow", "session_id": sid, "client_message_id": "two-2"},
            headers=h,
        )
        assert r.status == 409 and (await r.json())["code"] == "TURN_IN_PROGRESS"
        assert (await running).status == 200
        assert len(fake.requests) == 3
