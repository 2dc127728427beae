"""Characters as data, through HTTP and the WebSocket, on both engines: scopes, CRUD and
validation, nomination and routing, the /v1 door, two instances on one database,
avatars, and Character Card V2 import and export."""

from __future__ import annotations

import base64
import json
from typing import Any

from builtin_plugins.chat.images import png_text
from tests.chat.helpers import chat_config, frames_until, is_done
from tests.chat.images import b64, card, card_png, jpeg, png, webp
from tests.fakes.openai_server import FakeOpenAI

ADMIN = {"admin": True}


async def fetch(client: Any, path: str, **kwargs: Any) -> tuple[Any, bytes]:
    """A response and its body (binary: read inside the request)."""
    async with client.session.get(client.url(path), **kwargs) as r:
        return r, await r.read()


async def make(client: Any, h: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/chat/characters", json=body, headers=h)
    assert r.status == 201, await r.text()
    return await r.json()


async def ids(client: Any, h: dict[str, str]) -> list[str]:
    r = await client.get("/api/v1/chat/characters", headers=h)
    assert r.status == 200
    return [c["id"] for c in await r.json()]


async def test_a_private_character_is_its_owners_alone(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h, other = client.auth_headers("u1"), client.auth_headers("u2")
        sera = await make(
            client,
            h,
            name="Seraphina",
            aliases=["セラ"],
            persona="You are Seraphina, a forest guardian.",
            description="Forest guardian",
        )
        assert sera["scope"] == "private" and sera["owner_id"] == "u1"
        assert sera["provider"] == "fake" and sera["model"] == "fake-model"
        sid = sera["id"]
        assert sid in await ids(client, h)
        assert sid not in await ids(client, other)
        requests = len(fake.requests)
        for method, path, body in [
            ("GET", f"/api/v1/chat/characters/{sid}", None),
            ("PATCH", f"/api/v1/chat/characters/{sid}", {"description": "mine now"}),
            ("DELETE", f"/api/v1/chat/characters/{sid}", None),
            ("GET", f"/api/v1/chat/characters/{sid}/card", None),
            ("GET", f"/api/v1/chat/characters/{sid}/avatar", None),
            ("PUT", f"/api/v1/chat/characters/{sid}/avatar", {"image": b64(png())}),
        ]:
            r = await client.request(method, path, json=body, headers=other)
            assert r.status == 404, (method, path, r.status)
        # nominated by name or alias by the owner only
        fake.queue("I am here, guardian of the glade.")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "セラ, are you there?"}, headers=h
        )
        assert (await r.json())["character"] == sid
        assert fake.requests[-1]["messages"][0]["content"].startswith("You are Seraphina")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "Seraphina, are you there?"}, headers=other
        )
        assert (await r.json())["character"] == "lumina"
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi", "character": "Seraphina"}, headers=other
        )
        assert r.status == 422 and (await r.json())["code"] == "UNKNOWN_CHARACTER"
        # the /v1 door lists and serves it to its owner only
        r = await client.get("/v1/models", headers=h)
        assert f"character:{sid}" in [m["id"] for m in (await r.json())["data"]]
        r = await client.get("/v1/models", headers=other)
        assert f"character:{sid}" not in [m["id"] for m in (await r.json())["data"]]
        body = {"model": f"character:{sid}", "messages": [{"role": "user", "content": "hi"}]}
        r = await client.post("/v1/chat/completions", json=body, headers=other)
        assert r.status == 404
        fake.queue("Hello from the glade.")
        r = await client.post("/v1/chat/completions", json=body, headers=h)
        assert (await r.json())["choices"][0]["message"]["content"] == "Hello from the glade."
        # and over the WebSocket
        async with client.ws_connect("/ws/chat", headers=other) as ws:
            await ws.send_json(
                {"type": "chat", "message": "hi", "character": "セラ", "request_id": "x"}
            )
            frame = (await frames_until(ws, is_done("x")))[-1]
            assert frame["type"] == "error" and frame["status"] == 422
        fake.queue("Welcome.")
        async with client.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json(
                {"type": "chat", "message": "hi", "character": "セラ", "request_id": "y"}
            )
            frames = await frames_until(ws, is_done("y"))
            assert frames[-1]["type"] == "complete" and frames[0]["character"] == sid
        assert len(fake.requests) == requests + 4  # the 404s and the 422 asked nobody


async def test_validation_of_names_providers_tools_and_sizes(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h, other = client.auth_headers("u1"), client.auth_headers("u2")
        await make(client, h, name="Seraphina", aliases=["Sera"])
        for body, status, code, path in [
            ({"name": "Lumina"}, 409, "CHARACTER_NAME_TAKEN", "/name"),
            (
                {"name": "Luna", "aliases": ["ＬＵＭＩＮＡ"]},
                409,
                "CHARACTER_NAME_TAKEN",
                "/aliases/0",
            ),
            ({"name": "sera"}, 409, "CHARACTER_NAME_TAKEN", "/name"),
            ({"name": "Kai", "aliases": ["K", "k"]}, 422, "VALIDATION_FAILED", "/aliases/1"),
            ({"name": "Kai", "provider": "nope"}, 422, "UNKNOWN_PROVIDER", "/provider"),
            ({"name": "Kai", "tools": ["no_such_tool"]}, 422, "UNKNOWN_TOOL", "/tools/0"),
            ({"name": "Kai", "persona": "x" * 20001}, 422, "VALIDATION_FAILED", None),
            ({"name": "K" * 65}, 422, "VALIDATION_FAILED", None),
            ({"name": "  "}, 422, "VALIDATION_FAILED", "/name"),
            ({"name": "Kai", "talkativeness": 2}, 422, "VALIDATION_FAILED", None),
            ({"name": "Kai", "scope": "global"}, 403, "ADMIN_REQUIRED", None),
            ({"name": "Kai", "scope": "system"}, 422, "VALIDATION_FAILED", None),
            ({"name": "Kai", "owner_id": "u2"}, 422, "VALIDATION_FAILED", None),
        ]:
            r = await client.post("/api/v1/chat/characters", json=body, headers=h)
            problem = await r.json()
            assert (r.status, problem["code"]) == (status, code), (body, problem)
            if path:
                assert problem["errors"][0]["path"] == path, problem
        r = await client.post(
            "/api/v1/chat/characters", json={"name": "Kai", "provider": "nope"}, headers=h
        )
        assert "nope" in (await r.json())["detail"]
        # another user sees no Seraphina: theirs may have that name
        theirs = await make(client, other, name="Seraphina")
        assert theirs["owner_id"] == "u2"
        # a change is checked the same way
        kai = await make(client, h, name="Kai")
        r = await client.patch(
            f"/api/v1/chat/characters/{kai['id']}", json={"aliases": ["Sera"]}, headers=h
        )
        assert r.status == 409
        r = await client.patch(
            f"/api/v1/chat/characters/{kai['id']}",
            json={"aliases": ["Kai-kun"], "talkativeness": 0.9, "model": "other-model"},
            headers=h,
        )
        assert r.status == 200
        changed = await r.json()
        assert changed["aliases"] == ["Kai-kun"] and changed["model"] == "other-model"
        r = await client.get(f"/api/v1/chat/characters/{kai['id']}", headers=h)
        assert (await r.json())["talkativeness"] == 0.9


async def test_admins_make_global_characters_and_override_system_ones(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        admin = client.auth_headers("boss", admin=True)
        h = client.auth_headers("u1")
        guide = await make(client, admin, name="Guide", scope="global", persona="You guide.")
        assert guide["scope"] == "global"
        assert guide["id"] in await ids(client, h)
        r = await client.patch(
            f"/api/v1/chat/characters/{guide['id']}", json={"description": "x"}, headers=h
        )
        assert r.status == 403
        r = await client.patch("/api/v1/chat/characters/lumina", json={"name": "Lu"}, headers=h)
        assert r.status == 403
        r = await client.delete("/api/v1/chat/characters/nox", headers=h)
        assert r.status == 403
        # an admin's change to a system character holds (stored as an override)
        r = await client.patch(
            "/api/v1/chat/characters/lumina",
            json={"persona": "You are Lumina, now very brief."},
            headers=admin,
        )
        assert r.status == 200 and (await r.json())["scope"] == "system"
        fake.queue("Hi.")
        await client.post("/api/v1/chat", json={"user_input": "hello"}, headers=h)
        assert "now very brief" in fake.requests[-1]["messages"][0]["content"]
        # a deleted character's past messages stay, under its name
        fake.queue("Verified.")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "check it", "character": "nox"}, headers=h
        )
        sid = (await r.json())["session_id"]
        r = await client.delete("/api/v1/chat/characters/nox", headers=admin)
        assert r.status == 204
        assert "nox" not in await ids(client, h)
        r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
        reply = (await r.json())["messages"][-1]
        assert reply["character"] == "nox" and reply["character_name"] == "Nox"
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi", "character": "nox"}, headers=h
        )
        assert r.status == 422


async def test_a_change_holds_on_every_instance_at_once(llmmc, postgres_database):
    from builtin_plugins.storage.testing import fresh_schema_url

    url = fresh_schema_url(postgres_database)
    async with FakeOpenAI() as fake:
        a = await llmmc(chat_config(fake.url), database_url=url)
        b = await llmmc(chat_config(fake.url), database_url=url)
        h = a.auth_headers("u1")
        sera = await make(a, h, name="Seraphina", aliases=["セラ"])
        # no wait: the next request on the other instance sees it
        assert sera["id"] in await ids(b, h)
        fake.queue("Yes?")
        r = await b.post("/api/v1/chat", json={"user_input": "セラ?"}, headers=h)
        assert (await r.json())["character"] == sera["id"]
        r = await a.patch(
            f"/api/v1/chat/characters/{sera['id']}", json={"aliases": ["Sera"]}, headers=h
        )
        assert r.status == 200
        fake.queue("Hello.")
        r = await b.post("/api/v1/chat", json={"user_input": "hi", "character": "セラ"}, headers=h)
        assert r.status == 422
        r = await b.get("/v1/models", headers=h)
        assert f"character:{sera['id']}" in [m["id"] for m in (await r.json())["data"]]
        r = await a.delete(f"/api/v1/chat/characters/{sera['id']}", headers=h)
        assert r.status == 204
        r = await b.get(f"/api/v1/chat/characters/{sera['id']}", headers=h)
        assert r.status == 404
        async with b.ws_connect("/ws/chat", headers=h) as ws:
            await ws.send_json(
                {"type": "chat", "message": "hi", "character": "Sera", "request_id": "z"}
            )
            assert (await frames_until(ws, is_done("z")))[-1]["type"] == "error"


async def test_avatars_are_checked_images_with_a_changing_url(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        sid = (await make(client, h, name="Seraphina"))["id"]
        path = f"/api/v1/chat/characters/{sid}/avatar"
        picture = png()
        r = await client.put(path, json={"image": b64(picture)}, headers=h)
        assert r.status == 204, await r.text()
        first = (await (await client.get(f"/api/v1/chat/characters/{sid}", headers=h)).json())[
            "avatar_url"
        ]
        assert first.startswith(path + "?v=")
        r, body = await fetch(client, first, headers=h)
        assert r.status == 200 and body == picture
        assert r.content_type == "image/png"
        assert "max-age=31536000" in r.headers["Cache-Control"]
        assert "immutable" in r.headers["Cache-Control"]
        assert r.headers["Cache-Control"].startswith("private")
        # a private character's picture: nobody else, not anonymous
        assert (await client.get(first, headers=client.auth_headers("u2"))).status == 404
        assert (await client.get(first)).status == 404
        for other, kind in ((jpeg(), "image/jpeg"), (webp(), "image/webp")):
            r = await client.put(path, json={"image": "data:x;base64," + b64(other)}, headers=h)
            assert r.status == 204, await r.text()
            url = (await (await client.get(f"/api/v1/chat/characters/{sid}", headers=h)).json())[
                "avatar_url"
            ]
            assert url != first
            r, body = await fetch(client, url, headers=h)
            assert r.content_type == kind and body == other
        # the picture itself as the body, as a browser or curl --data-binary sends it
        r = await client.put(path, data=picture, headers={**h, "Content-Type": "image/png"})
        assert r.status == 204, await r.text()
        url = (await (await client.get(f"/api/v1/chat/characters/{sid}", headers=h)).json())[
            "avatar_url"
        ]
        r, body = await fetch(client, url, headers=h)
        assert r.content_type == "image/png" and body == picture
        r = await client.put(
            path, data=b"not a picture", headers={**h, "Content-Type": "image/png"}
        )
        assert r.status == 422 and (await r.json())["code"] == "NOT_AN_IMAGE"
        r = await client.put(path, data=picture, headers={**h, "Content-Type": "image/gif"})
        assert r.status == 415
        # the old URL is not cached as if it were current
        r = await client.get(first, headers=h)
        assert r.headers["Cache-Control"] == "no-cache"
        broken_crc = bytearray(picture)
        broken_crc[-20] ^= 0xFF
        truncated = picture[:40] + picture[-12:]
        for bad in (
            b"hello, not a picture",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            bytes(broken_crc),
            truncated,
            b"\xff\xd8\xff\xe0 not really a jpeg",
            b"RIFF\x10\x00\x00\x00WEBPVP8 \x00\x00\x00\x00",
            b"GIF89a\x01\x00\x01\x00",
        ):
            r = await client.put(path, json={"image": b64(bad)}, headers=h)
            assert r.status == 422, (bad, r.status)
            assert (await r.json())["code"] == "NOT_AN_IMAGE"
        r = await client.put(path, json={"image": "%%% not base64"}, headers=h)
        assert r.status == 422
        r = await client.put(path, json={"image": b64(b"\0" * (1024 * 1024 + 1))}, headers=h)
        assert r.status == 413
        # a global character's picture is public
        admin = client.auth_headers("boss", admin=True)
        r = await client.put(
            "/api/v1/chat/characters/lumina/avatar", json={"image": b64(png(2, 2))}, headers=admin
        )
        assert r.status == 204
        chars = await (await client.get("/api/v1/chat/characters", headers=h)).json()
        url = next(c["avatar_url"] for c in chars if c["id"] == "lumina")
        r = await client.get(url)
        assert r.status == 200 and r.headers["Cache-Control"].startswith("public")


async def test_character_cards_import_greet_and_export(llmmc, database_url):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, max_speakers=4)
        client = await llmmc(cfg, database_url=database_url)
        h = client.auth_headers("u1")
        # a PNG card, as SillyTavern writes it
        r = await client.post(
            "/api/v1/chat/characters/import", json={"png": b64(card_png(card()))}, headers=h
        )
        assert r.status == 201, await r.text()
        sera = await r.json()
        assert sera["name"] == "Seraphina" and sera["scope"] == "private"
        assert sera["avatar_url"] and sera["description"] == "A gentle forest guardian."
        assert sera["greeting"].startswith("*{{char}} kneels")
        assert sera["alternate_greetings"] == ["*{{char}} smiles.* Welcome back."]
        persona = sera["persona"]
        assert "Seraphina is a guardian of the forest glade" in persona
        assert "kind, protective" in persona and "the user wakes up" in persona
        assert "I am Seraphina, keeper" in persona and "<START>" not in persona
        # first_mes greets in a new conversation with that character
        fake.queue("Rest now.")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "Where am I?", "character": sera["id"]}, headers=h
        )
        sid = (await r.json())["session_id"]
        r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
        msgs = (await r.json())["messages"]
        assert [m["role"] for m in msgs] == ["assistant", "user", "assistant"]
        assert (
            msgs[0]["content"]
            == "*Seraphina kneels beside you.* You're awake, u1. How do you feel?"
        )
        sent = fake.requests[-1]["messages"]
        assert {"role": "assistant", "content": msgs[0]["content"]} in sent
        # in a group conversation with the built-in three
        for text in ("Rest now.", "Hello!", "Because.", "Checked."):
            fake.queue(text)
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "Seraphina, Lumina, Claris and Nox: hello all!", "session_id": sid},
            headers=h,
        )
        speakers = [reply["character"] for reply in (await r.json())["replies"]]
        assert speakers == [sera["id"], "lumina", "claris", "nox"]
        # exported as a Card V2 that comes back the same
        r = await client.get(f"/api/v1/chat/characters/{sera['id']}/card", headers=h)
        exported = await r.json()
        assert exported["spec"] == "chara_card_v2"
        data = exported["data"]
        assert data["name"] == "Seraphina" and data["first_mes"] == sera["greeting"]
        assert data["personality"] == "kind, protective, speaks softly"
        assert data["tags"] == ["fantasy", "guardian"]
        assert data["extensions"]["fav"] is False
        assert data["extensions"]["llmmultichat"]["persona"] == persona
        r = await client.delete(f"/api/v1/chat/characters/{sera['id']}", headers=h)
        r = await client.post("/api/v1/chat/characters/import", json=exported, headers=h)
        assert r.status == 201, await r.text()
        again = await r.json()
        assert again["persona"] == persona and again["greeting"] == sera["greeting"]
        # a V2 JSON card without a picture
        r = await client.post(
            "/api/v1/chat/characters/import", json=card("Kai", first_mes=""), headers=h
        )
        assert r.status == 201 and (await r.json())["avatar_url"] is None


async def test_malformed_cards_are_422_never_500(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        good = card()
        not_json = b64(b"\x89PNG\r\n\x1a\n" + b"garbage")
        bodies: list[Any] = [
            {},
            {"spec": "chara_card_v2"},
            {"spec": "chara_card_v2", "data": "x"},
            {"spec": "chara_card_v9", "data": good["data"]},
            {"spec": "chara_card_v2", "data": {**good["data"], "name": 5}},
            {"spec": "chara_card_v2", "data": {**good["data"], "name": ""}},
            {"spec": "chara_card_v2", "data": {**good["data"], "first_mes": ["x"]}},
            {"spec": "chara_card_v2", "data": {**good["data"], "alternate_greetings": "x"}},
            {"spec": "chara_card_v2", "data": {**good["data"], "tags": [1]}},
            {"spec": "chara_card_v2", "data": {**good["data"], "extensions": []}},
            {"spec": "chara_card_v2", "data": {**good["data"], "description": "x" * 40000}},
            {"png": "not base64 !"},
            {"png": not_json},
            {"png": b64(png())},  # a picture without a card
            {"png": b64(png(text={"chara": b"!!!not-base64!!!"}))},
            {"png": b64(png(text={"chara": b64(b"not json").encode()}))},
            {"png": b64(png(text={"chara": b64(b"[1, 2]").encode()}))},
            {"png": b64(card_png(good)[:60])},
            {"png": b64(json.dumps(good).encode())},  # JSON sent as png: read as JSON
        ]
        for body in bodies[:-1]:
            r = await client.post("/api/v1/chat/characters/import", json=body, headers=h)
            assert r.status == 422, (str(body)[:80], r.status, await r.text())
        r = await client.post("/api/v1/chat/characters/import", json=bodies[-1], headers=h)
        assert r.status == 201
        r = await client.post("/api/v1/chat/characters/import", json=[1], headers=h)
        assert r.status == 422
        assert len(await ids(client, h)) == 4  # the three and the one good card


async def test_a_conversation_begun_with_a_character_opens_with_its_greeting(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        kai = await make(client, h, name="Kai", greeting="Hey {{user}}, I'm {{char}}!")
        r = await client.post("/api/v1/chat/sessions", json={"character": "Kai"}, headers=h)
        assert r.status == 201, await r.text()
        session = await r.json()
        assert session["title"] == "Kai" and session["message_count"] == 1
        assert [(m["character"], m["content"]) for m in session["messages"]] == [
            (kai["id"], "Hey u1, I'm Kai!")
        ]
        # the answer to a greeting goes to who greeted (unless someone else is named)
        fake.queue("Nice to meet you.")
        r = await client.post(
            "/api/v1/chat",
            json={"user_input": "hello!", "session_id": session["session_id"]},
            headers=h,
        )
        assert (await r.json())["character"] == kai["id"]
        r = await client.post("/api/v1/chat/sessions", json={"character": "nobody"}, headers=h)
        assert r.status == 422
        r = await client.post("/api/v1/chat/sessions", json={}, headers=h)
        assert r.status == 201 and (await r.json())["messages"] == []


async def test_a_card_goes_out_as_a_png_sillytavern_reads_and_comes_back(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url), database_url=database_url)
        h = client.auth_headers("u1")
        picture = png(6, 5)
        r = await client.post(
            "/api/v1/chat/characters/import",
            json={"png": b64(card_png(card("Mira"))[:8] + picture[8:])},
            headers=h,
        )
        assert r.status == 422  # a picture without its card
        r = await client.post(
            "/api/v1/chat/characters/import", json={"png": b64(card_png(card("Mira")))}, headers=h
        )
        mira = await r.json()
        r, body = await fetch(
            client, f"/api/v1/chat/characters/{mira['id']}/card?format=png", headers=h
        )
        assert r.status == 200 and r.content_type == "image/png"
        assert 'filename="Mira.png"' in r.headers["Content-Disposition"]
        # what SillyTavern does with it: the chara chunk, base64, JSON
        doc = json.loads(base64.b64decode(png_text(body)["chara"]))
        assert doc["spec"] == "chara_card_v2" and doc["data"]["name"] == "Mira"
        await client.delete(f"/api/v1/chat/characters/{mira['id']}", headers=h)
        r = await client.post("/api/v1/chat/characters/import", json={"png": b64(body)}, headers=h)
        assert r.status == 201 and (await r.json())["persona"] == mira["persona"]
        # without a picture: a plain square carries it
        kai = await make(client, h, name="Kai", persona="You are Kai.")
        r, body = await fetch(
            client, f"/api/v1/chat/characters/{kai['id']}/card?format=png", headers=h
        )
        assert (
            r.status == 200
            and json.loads(base64.b64decode(png_text(body)["chara"]))["data"]["extensions"][
                "llmmultichat"
            ]["persona"]
            == "You are Kai."
        )
        # a lone surrogate inside a PNG card is refused like anywhere else
        bad = b'{"spec": "chara_card_v2", "data": {"name": "x\\ud800"}}'
        r = await client.post(
            "/api/v1/chat/characters/import",
            json={"png": b64(png(text={"chara": b64(bad).encode()}))},
            headers=h,
        )
        assert r.status == 422


async def test_a_user_keeps_a_bounded_number_of_characters(llmmc, database_url):
    async with FakeOpenAI() as fake:
        client = await llmmc(
            chat_config(fake.url, characters_per_user=2), database_url=database_url
        )
        h = client.auth_headers("u1")
        first = await make(client, h, name="One")
        await make(client, h, name="Two")
        r = await client.post("/api/v1/chat/characters", json={"name": "Three"}, headers=h)
        assert r.status == 409 and (await r.json())["code"] == "CHARACTER_LIMIT"
        await make(client, client.auth_headers("u2"), name="Three")  # another user's own
        await client.delete(f"/api/v1/chat/characters/{first['id']}", headers=h)
        await make(client, h, name="Three")
