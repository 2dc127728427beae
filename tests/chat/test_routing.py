"""Routing strategies (unit and over HTTP), nomination by alias, multi-speaker turns and
the guard that stops a character speaking for another."""

from __future__ import annotations

import random

from builtin_plugins.chat.characters import DEFAULT_CHARACTERS, load_characters
from builtin_plugins.chat.graph import SpeakerGuard
from builtin_plugins.chat.turn_taking import TurnTaking
from tests.chat.helpers import chat_config, read_sse
from tests.fakes.openai_server import FakeOpenAI


class _Log:
    def info(self, *a):
        pass

    warning = info


def chars(talk: float = 0.0):
    table = {k: {**v, "talkativeness": talk} for k, v in DEFAULT_CHARACTERS.items()}
    return load_characters(table, [], "local", _Log())


def router(strategy="natural", talk=0.0, max_speakers=1, seed=1):
    return TurnTaking(
        chars(talk), strategy=strategy, max_speakers=max_speakers, rng=random.Random(seed)
    )


def test_natural_nomination_by_name_and_japanese_alias_in_any_script():
    r = router()
    assert r.choose("クラリス、これは何？") == ["claris"]
    assert r.choose("ねえ、ノクス") == ["nox"]
    assert r.choose("るみな、おはよう") == ["lumina"]
    assert r.choose("ＮＯＸ what do you think?") == ["nox"]  # full-width Latin
    assert r.choose("hey claris!") == ["claris"]
    assert r.choose("that is noxious") == ["lumina"]  # whole words only for Latin names
    # named characters answer first, in the order named, even the last speaker
    assert r.choose("Nox?", recent=["nox"]) == ["nox"]
    assert router(max_speakers=3).choose("ルミナとクラリス") == ["lumina", "claris"]


def test_natural_keywords_host_and_never_twice_in_a_row():
    r = router()
    assert r.choose("量子コンピュータについて説明して") == ["claris"]
    assert r.choose("Why is the sky blue?") == ["claris"]
    assert r.choose("最新のニュースを調べて") == ["nox"]
    assert r.choose("hello there") == ["lumina"]  # nothing decides: the host
    # the keyword matcher skips the last speaker unless named
    assert r.choose("explain again", recent=["claris"]) == ["lumina"]
    # with talkative others, the host does not answer twice in a row
    talky = router(talk=0.9)
    for seed in range(20):
        talky.rng = random.Random(seed)
        assert talky.choose("hello", recent=["lumina"])[0] != "lumina"
    # only the host can speak: it answers even twice in a row
    assert r.choose("hello", recent=["lumina"]) == ["lumina"]


def test_natural_talkativeness_up_to_max_speakers():
    r = router(talk=1.0, max_speakers=2)
    out = r.choose("hello")
    assert len(out) == 2 and len(set(out)) == 2
    r = router(talk=1.0, max_speakers=5)
    assert sorted(r.choose("hello", recent=["claris"])) == ["lumina", "nox"]


def test_list_pooled_manual_and_request_override():
    r = router("list")
    assert r.choose("hi") == ["lumina"]
    assert r.choose("hi", recent=["lumina"]) == ["claris"]
    assert r.choose("hi", recent=["nox"]) == ["lumina"]
    assert router("list", max_speakers=3).choose("Nox!") == ["lumina", "claris", "nox"]
    p = router("pooled")
    for seed in range(10):
        p.rng = random.Random(seed)
        assert p.choose("hi", recent=["lumina", "claris"]) == ["nox"]
        assert p.choose("hi", recent=["nox"]) in (["lumina"], ["claris"])
    m = router("manual")
    assert m.choose("クラリス, explain why") == ["lumina"]  # no nomination in manual
    assert m.choose("hi", recent=["nox"]) == ["nox"]
    for strategy in ("natural", "list", "pooled", "manual"):
        assert router(strategy).choose("クラリス explain", requested="nox") == ["nox"]


def test_speaker_guard_cuts_lines_of_others_and_own_name_prefix():
    g = SpeakerGuard(["Lumina", "ルミナ"], ["Claris", "クラリス", "User"])
    out = (
        "".join(g.feed(p) for p in ["Lum", "ina: Hi ", "there!\n", "Cla", "ris: I would", " say"])
        + g.flush()
    )
    assert out == "Hi there!\n"
    g = SpeakerGuard(["Lumina"], ["Claris"])
    out = (
        "".join(g.feed(p) for p in ["The ", "ratio is 3:1, ", "fine.\n**Claris**: no"]) + g.flush()
    )
    assert out == "The ratio is 3:1, fine.\n"
    g = SpeakerGuard(["Lumina"], ["Claris"])
    assert g.feed("ok") + g.flush() == "ok"


async def test_japanese_alias_nomination_over_http(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        h = client.auth_headers("u1")
        r = await client.post("/api/v1/chat", json={"user_input": "ノクス、これ本当？"}, headers=h)
        body = await r.json()
        assert body["character"] == "nox"
        assert "You are Nox" in fake.requests[-1]["messages"][0]["content"]
        r = await client.post(
            "/api/v1/chat",
            json={
                "user_input": "クラリス?",
                "character": "Lumina",
                "session_id": body["session_id"],
            },
            headers=h,
        )
        assert (await r.json())["character"] == "lumina"


async def test_multi_speaker_turn_later_speakers_see_earlier_replies(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url, max_speakers=2))
        h = client.auth_headers("u1")
        fake.queue("Welcome! Claris: I will answer for Claris too")
        fake.queue("The theory is simple.")
        async with client.stream(
            "POST",
            "/api/v1/chat/stream",
            json={"user_input": "Lumina, Claris: explain tea"},
            headers=h,
        ) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith(
                "text/event-stream"
            )
            events = await read_sse(resp)
        kinds = [
            e
            for i, (e, _) in enumerate(events)
            if not (e == "chunk" and events[i - 1][0] == "chunk")
        ]
        assert kinds == ["start", "chunk", "end", "start", "chunk", "end", "done"]
        starts = [d for e, d in events if e == "start"]
        assert [s["character"] for s in starts] == ["lumina", "claris"]
        lumina_text = "".join(
            d["delta"] for e, d in events if e == "chunk" and d["character"] == "lumina"
        )
        assert (
            lumina_text == "Welcome! Claris: I will answer for Claris too"
        )  # mid-line, not a new speaker line
        second = fake.requests[1]["messages"]
        assert "You are Claris" in second[0]["content"]
        assert second[-1] == {
            "role": "user",
            "content": "[Lumina said]: Welcome! Claris: I will answer for Claris too",
        }
        sid = starts[0]["session_id"]
        r = await client.get(f"/api/v1/chat/history/{sid}", headers=h)
        msgs = (await r.json())["messages"]
        assert [(m["role"], m["character"]) for m in msgs] == [
            ("user", None),
            ("assistant", "lumina"),
            ("assistant", "claris"),
        ]


async def test_a_character_never_speaks_for_another(llmmc):
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        fake.queue("Lumina: Sure thing!\nClaris: And here is my view.\nNox: Mine too.")
        r = await client.post(
            "/api/v1/chat", json={"user_input": "hi"}, headers=client.auth_headers("u")
        )
        assert (await r.json())["response"] == "Sure thing!\n"
