"""Sampling of the embedded model: stop sequences at another speaker's name (taken from
the chat plugin's own prompt), the first-token and loop guard, and the real model."""

from __future__ import annotations

import re

import numpy as np
import pytest

from builtin_plugins.chat.characters import DEFAULT_CHARACTERS, load_characters
from builtin_plugins.chat.graph import ConversationGraph, Turn
from builtin_plugins.chat.providers import local_sampling
from builtin_plugins.chat.providers.llama_cpp import LlamaCppProvider, chat_prompt, tool_facts
from sdk import Identity


def _graph() -> ConversationGraph:
    """The chat plugin's graph over the default characters (only its prompt is used)."""
    return ConversationGraph(
        characters=load_characters(dict(DEFAULT_CHARACTERS), [], "local", None),
        turn_taking=None,
        providers=None,
        store=None,
        publisher=None,
        tools=None,
        hooks=None,
        default_provider="local",
        max_tool_rounds=3,
        memory_max_tokens=None,
        metrics=None,
    )


def _prompt(char_id: str, text: str, earlier: tuple[str, str] | None = None) -> list[dict]:
    graph = _graph()
    turn = Turn(identity=Identity("u1"), user_input=text)
    if earlier:
        turn.replies.append({"character": earlier[0], "content": earlier[1]})
    return graph.prompt(turn, graph.characters[char_id])


def test_the_speakers_are_read_from_the_chat_plugins_prompt():
    """If the graph's prompt changes its wording, this fails (and the stops with it)."""
    own, others = local_sampling.speakers(
        _prompt("claris", "Why is the sky blue?", ("lumina", "Claris can tell you."))
    )
    assert own == ["Claris", "クラリス"]
    assert others == ["Lumina", "Nox"]
    stops = local_sampling.speaker_stops(_prompt("nox", "hi"), ["###"])
    for stop in ("Lumina:", "Claris：", "[Claris said]", "User:", "ユーザー：", "\nNox:", "###"):
        assert stop in stops
    assert "Nox:" not in stops  # its own leading label is dropped by the speaker guard
    # a prompt that is not a group chat's (the "llm" service's completions) gets none
    assert local_sampling.speaker_stops([{"role": "user", "content": "Summarise: x"}]) == []


def test_other_characters_replies_of_the_turn_go_into_the_users_message():
    messages = _prompt("claris", "Why is the sky blue?", ("lumina", "Claris can tell you."))
    folded = chat_prompt(messages)
    assert folded[-1] == {
        "role": "user",
        "content": 'Lumina already answered: "Claris can tell you."\n\n'
        "My message: Why is the sky blue?",
    }
    assert folded[:-1] == messages[:-2]
    assert chat_prompt(messages, fold=False) == messages


def test_a_tool_result_is_written_into_the_users_message_as_facts():
    messages = [
        {"role": "system", "content": "You are Nox."},
        {"role": "user", "content": "Is it raining in London?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "function": {"name": "weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"city": "London, GB", "temp": 14}'},
    ]
    assert chat_prompt(messages) == [
        {"role": "system", "content": "You are Nox."},
        {
            "role": "user",
            "content": "Is it raining in London?\n\nThe weather tool says: city: London, GB; "
            "temp: 14.\nAnswer in one or two sentences using only these facts.",
        },
    ]
    failed = '{"error": {"code": "CITY_NOT_FOUND", "detail": "no such city"}}'
    assert tool_facts(failed) == "it failed (no such city)"


def test_settings_override_the_small_model_defaults():
    params = local_sampling.sampling({"repeat_penalty": 1.3, "max_tokens": None})
    assert params["repeat_penalty"] == 1.3
    assert params["max_tokens"] == local_sampling.DEFAULTS["max_tokens"]


def test_the_reply_guard_bans_a_leading_label_and_forces_the_end_of_a_loop():
    guard = local_sampling.ReplyGuard([5], eos=0, loop_ngram=3, detokenize=None)
    prompt = [9, 9, 9]
    scores = guard(np.array(prompt), np.zeros(10, dtype=np.single))
    assert scores[5] == -np.inf and scores[4] == 0  # "[" may not open the reply
    scores = guard(np.array([*prompt, 1, 2, 3, 4]), np.zeros(10, dtype=np.single))
    assert not guard.looped and scores[5] == 0  # only the first token
    scores = guard(np.array([*prompt, 1, 2, 3, 4, 1, 2, 3]), np.zeros(10, dtype=np.single))
    assert guard.looped and scores[0] == 0 and np.isneginf(scores[1:]).all()


def test_a_repeated_run_is_dropped_from_the_held_back_text():
    run = "I'm sorry, I can't help."
    assert local_sampling.drop_repeat(f"tail. {run}", run) == "tail."
    assert local_sampling.drop_repeat("can't help.", run) == ""  # began before the held text
    assert local_sampling.drop_repeat("other text", run) == "other text"


async def _reply(settings: dict, messages: list[dict]) -> str:
    provider = LlamaCppProvider("local", {"type": "llama_cpp", "temperature": 0, **settings})
    out = await provider.complete(messages)
    return out.content


def _repeats(text: str, n: int = 6) -> bool:
    words = re.findall(r"\w+", text.casefold())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


LABEL = re.compile(r"(?:Claris|Nox|クラリス|ノクス|User)\s*(?:said\])?\s*[:：]")


@pytest.mark.model
async def test_the_model_neither_writes_another_speakers_lines_nor_loops():
    pytest.importorskip("llama_cpp", reason="needs the [local] extra (llama-cpp-python)")
    plain = {"stop_at_speakers": False, "loop_ngram": 0, "repeat_penalty": 1.0}
    # after Nox's reply in the same turn, Lumina left alone echoes a speaker's label
    echo = _prompt("lumina", "Tell me something fun about cats.", ("nox", "Cats sleep a lot."))
    assert LABEL.search(await _reply(plain, echo))
    reply = await _reply({}, echo)
    assert reply.strip() and not LABEL.search(reply)

    play = _prompt(
        "lumina",
        "Write a short play: Lumina and Claris talk about tea, four lines each. "
        "Start every line with the speaker's name and a colon.",
    )
    assert _repeats(await _reply(plain, play))
    reply = await _reply({}, play)
    assert reply.strip() and not _repeats(reply) and not LABEL.search(reply)
