"""The embedded model (SmolLM2-135M-Instruct through llama.cpp) on fixed prompts.

Sampling: twenty prompts (ten English, ten Japanese) to the three default characters,
built by the chat plugin's own prompt builder, six of them after another character's
reply in the same turn. Each is answered twice through the real ``llama_cpp`` provider:
with llama.cpp's defaults ("before": no repetition penalty, 256 tokens, no stop but the
end of turn) and with the provider's settings for a small model ("after"). The reply is
then passed through the chat plugin's speaker guard, as a user would see it. Reported:
the share of replies with a repeated 8-gram (of model tokens), the share that name
another speaker as a speaker ("Claris:", "ノクス：", "User:", "[Nox said]"), mean tokens.

Tools: ten weather questions (five English, five Japanese, the city named in the
question's language) and ten that need no tool, to Nox with the default tools (weather,
translate, detect_language, languages): how many call ``weather`` with the right city,
and how many call any tool when none is needed.

    .venv/bin/python bench/local_model.py                 # both parts
    .venv/bin/python bench/local_model.py --part sampling --show
    .venv/bin/python bench/local_model.py --part tools

Sampling uses a fixed seed per prompt; the tool steps are greedy. Takes a few minutes on
2 CPUs (check ``uptime`` first and give the load beside the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builtin_plugins.chat.characters import DEFAULT_CHARACTERS, load_characters
from builtin_plugins.chat.graph import ConversationGraph, SpeakerGuard, Turn
from builtin_plugins.chat.providers import local_sampling
from builtin_plugins.chat.providers.llama_cpp import LlamaCppProvider
from builtin_plugins.translate.plugin import TranslatePlugin
from builtin_plugins.weather.plugin import WeatherPlugin
from sdk import Identity

# (character, user message, an earlier reply in the same turn: (character, text) or None)
PROMPTS: list[tuple[str, str, tuple[str, str] | None]] = [
    ("lumina", "Hi! I just got back from a long trip. How are you today?", None),
    ("claris", "What is the capital of France, and why is it the capital?", None),
    ("nox", "Is it true that we only use ten percent of our brains?", None),
    ("lumina", "Can you recommend a hobby I could start this weekend?", None),
    ("claris", "Explain how a rainbow forms.", None),
    ("nox", "Summarise the pros and cons of working from home.", None),
    ("lumina", "I feel a bit tired today. Any advice?", None),
    (
        "claris",
        "Why is the sky blue?",
        ("lumina", "Great question! The sky looks blue on a clear day. Claris can tell you why."),
    ),
    (
        "nox",
        "Is coffee bad for your health?",
        ("claris", "Coffee contains caffeine, which affects the nervous system."),
    ),
    (
        "lumina",
        "Tell me something fun about cats.",
        ("nox", "Cats sleep about 12 to 16 hours a day."),
    ),
    ("lumina", "こんにちは！今日はどんな一日でしたか？", None),
    ("claris", "日本の首都はどこですか？その理由も教えてください。", None),
    ("nox", "人間は脳の10%しか使っていないというのは本当ですか？", None),
    ("lumina", "週末に始められる趣味を教えてください。", None),
    ("claris", "虹ができる仕組みを説明してください。", None),
    ("nox", "在宅勤務の長所と短所をまとめてください。", None),
    ("lumina", "今日は少し疲れています。何かアドバイスはありますか？", None),
    (
        "claris",
        "なぜ空は青いのですか？",
        ("lumina", "いい質問ですね！晴れた日の空は青く見えます。クラリスが詳しく説明できますよ。"),
    ),
    (
        "nox",
        "コーヒーは体に悪いですか？",
        ("claris", "コーヒーにはカフェインが含まれていて、神経系に作用します。"),
    ),
    (
        "lumina",
        "猫について面白いことを教えて。",
        ("nox", "猫は一日に12〜16時間眠ります。"),
    ),
]

WEATHER_QUESTIONS: list[tuple[str, str]] = [
    ("What's the weather like in Paris right now?", "Paris"),
    ("Is it raining in London today?", "London"),
    ("How hot is it in Cairo at the moment?", "Cairo"),
    ("Can you check the current weather in New York for me?", "New York"),
    ("Should I take an umbrella in Berlin today?", "Berlin"),
    ("東京の天気はどうですか？", "東京"),
    ("大阪は今雨が降っていますか？", "大阪"),
    ("札幌の今の気温を教えて。", "札幌"),
    ("京都の天気を調べてください。", "京都"),
    ("福岡は今日晴れていますか？", "福岡"),
]

NO_TOOL_QUESTIONS = [
    "Hi! How are you today?",
    "Can you explain why the sky is blue?",
    "What is the capital of France?",
    "Tell me a short joke about cats.",
    "Give me one tip for learning a new language.",
    "こんにちは！元気ですか？",
    "おすすめの本を教えてください。",
    "なぜ海は塩辛いのですか？",
    "京都の歴史について教えて。",
    "猫についての短い詩を書いて。",
]


def build_graph() -> ConversationGraph:
    """The chat plugin's graph over the default characters; only its prompt builder is
    used here (the other parts are never reached)."""
    characters = load_characters(dict(DEFAULT_CHARACTERS), [], "local", None)
    return ConversationGraph(
        characters=characters,
        turn_taking=None,  # type: ignore[arg-type]
        providers=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        publisher=None,  # type: ignore[arg-type]
        tools=None,  # type: ignore[arg-type]
        hooks=None,  # type: ignore[arg-type]
        default_provider="local",
        max_tool_rounds=3,
        memory_max_tokens=None,
        metrics=None,  # type: ignore[arg-type]
    )


def names_of(graph: ConversationGraph, char_id: str) -> tuple[list[str], list[str]]:
    char = graph.characters[char_id]
    own = [char.name, char.id, *char.aliases]
    others = [
        n for c in graph.characters.values() if c.id != char_id for n in (c.name, *c.aliases)
    ] + list(local_sampling.USER_NAMES)
    return own, others


def names_another_speaker(text: str, others: list[str]) -> bool:
    alt = "|".join(re.escape(n) for n in sorted(others, key=len, reverse=True))
    label = rf"(?:[*_\[]*(?:{alt})[*_\]]*\s*[:：]|\[(?:{alt}) said\])"
    return re.search(label, text, flags=re.IGNORECASE) is not None


def repeated_ngram(tokens: list[int], n: int = 8) -> bool:
    seen: set[tuple[int, ...]] = set()
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        if gram in seen:
            return True
        seen.add(gram)
    return False


async def reply(
    provider: LlamaCppProvider, messages: list[dict[str, Any]], own: list[str], others: list[str]
) -> tuple[str, str]:
    guard = SpeakerGuard(own, others)
    raw: list[str] = []
    shown: list[str] = []
    async for event in provider.stream(messages):
        if event.type == "delta":
            raw.append(event.text)
            shown.append(guard.feed(event.text))
    shown.append(guard.flush())
    return "".join(raw), "".join(shown).strip()


VARIANTS: dict[str, dict[str, Any]] = {
    "before": dict(local_sampling.LLAMA_CPP_DEFAULTS),
    # the settings without the loop stop (repetition penalty, speaker stops, length)
    "after-no-loop-stop": {**local_sampling.DEFAULTS, "loop_ngram": 0},
    "after": dict(local_sampling.DEFAULTS),
}


async def sampling_part(show: bool, variants: list[str]) -> dict[str, Any]:
    graph = build_graph()
    results: dict[str, Any] = {}
    for label in variants:
        settings = VARIANTS[label]
        rows = []
        started = time.perf_counter()
        for i, (char_id, text, earlier) in enumerate(PROMPTS):
            provider = LlamaCppProvider("local", {"type": "llama_cpp", **settings, "seed": i})
            llm = await provider._model()
            turn = Turn(identity=Identity("bench"), user_input=text)
            if earlier is not None:
                turn.replies.append({"character": earlier[0], "content": earlier[1]})
            messages = graph.prompt(turn, graph.characters[char_id])
            own, others = names_of(graph, char_id)
            raw, shown = await reply(provider, messages, own, others)
            rows.append(
                {
                    "character": char_id,
                    "prompt": text,
                    "raw": raw,
                    "shown": shown,
                    "raw_repeat": repeated_ngram(llm.tokenize(raw.encode(), add_bos=False)),
                    "repeat": repeated_ngram(llm.tokenize(shown.encode(), add_bos=False)),
                    "raw_other": names_another_speaker(raw, others),
                    "other": names_another_speaker(shown, others),
                    "tokens": len(llm.tokenize(shown.encode(), add_bos=False)),
                }
            )
            if show:
                print(f"--- {label} {char_id}: {text}\n{shown}\n", flush=True)
        n = len(rows)
        results[label] = {
            "replies": n,
            "repeated_8gram": sum(r["repeat"] for r in rows) / n,
            "names_other_speaker": sum(r["other"] for r in rows) / n,
            "raw_repeated_8gram": sum(r["raw_repeat"] for r in rows) / n,
            "raw_names_other_speaker": sum(r["raw_other"] for r in rows) / n,
            "mean_tokens": sum(r["tokens"] for r in rows) / n,
            "empty": sum(not r["shown"] for r in rows),
            "seconds": time.perf_counter() - started,
            "rows": rows,
        }
    return results


def default_tools() -> list[dict[str, Any]]:
    """The function schemas chat offers with the default plugins (weather, translate)."""
    tools = []
    for cls in (WeatherPlugin, TranslatePlugin):
        plugin = object.__new__(cls)  # register_tools needs no context
        for tool in plugin.register_tools():
            tools.append(
                {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
            )
    return tools


async def tools_part(show: bool) -> dict[str, Any]:
    graph = build_graph()
    nox = graph.characters["nox"]
    provider = LlamaCppProvider("local", {"type": "llama_cpp", "seed": 0})
    tools = default_tools()

    async def first_call(text: str) -> tuple[Any, float]:
        turn = Turn(identity=Identity("bench"), user_input=text)
        started = time.perf_counter()
        call = None
        async for event in provider.stream(graph.prompt(turn, nox), tools=tools, max_tokens=1):
            if event.type == "tool_call":
                call = event.tool_call
        return call, time.perf_counter() - started

    right = 0
    weather_rows = []
    for text, city in WEATHER_QUESTIONS:
        call, took = await first_call(text)
        got = (call.name, call.arguments) if call else None
        ok = bool(
            call
            and call.name == "weather"
            and str(call.arguments.get("city", "")).strip().casefold() == city.casefold()
        )
        right += ok
        weather_rows.append({"question": text, "call": got, "ok": ok, "seconds": took})
        if show:
            print(f"{'ok ' if ok else 'BAD'} {text} -> {got} ({took:.1f} s)", flush=True)
    wrong = 0
    none_rows = []
    for text in NO_TOOL_QUESTIONS:
        call, took = await first_call(text)
        got = (call.name, call.arguments) if call else None
        wrong += call is not None
        none_rows.append({"question": text, "call": got, "seconds": took})
        if show:
            print(f"{'BAD' if call else 'ok '} {text} -> {got} ({took:.1f} s)", flush=True)
    return {
        "weather_right_city": right,
        "weather_questions": len(WEATHER_QUESTIONS),
        "calls_when_none_needed": wrong,
        "no_tool_questions": len(NO_TOOL_QUESTIONS),
        "mean_decision_seconds": sum(r["seconds"] for r in weather_rows + none_rows)
        / (len(weather_rows) + len(none_rows)),
        "weather": weather_rows,
        "none": none_rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["sampling", "tools", "all"], default="all")
    ap.add_argument("--show", action="store_true", help="print every reply or call")
    ap.add_argument(
        "--variants",
        default="before,after",
        help=f"sampling settings to compare, of: {', '.join(VARIANTS)}",
    )
    ap.add_argument("--json", type=Path, help="write the figures (and replies) here")
    args = ap.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    out: dict[str, Any] = {}
    if args.part in ("sampling", "all"):
        out["sampling"] = asyncio.run(sampling_part(args.show, args.variants.split(",")))
        print(
            "\n| sampling | repeated 8-gram | names another speaker | mean tokens | empty | time |"
        )
        print("|---|---|---|---|---|---|")
        for label, r in out["sampling"].items():
            print(
                f"| {label} | {r['repeated_8gram']:.0%} (raw {r['raw_repeated_8gram']:.0%}) "
                f"| {r['names_other_speaker']:.0%} (raw {r['raw_names_other_speaker']:.0%}) "
                f"| {r['mean_tokens']:.0f} | {r['empty']} | {r['seconds']:.0f} s |"
            )
    if args.part in ("tools", "all"):
        t = out["tools"] = asyncio.run(tools_part(args.show))
        print(
            f"\nweather with the right city: {t['weather_right_city']}/{t['weather_questions']}; "
            f"tool calls when none needed: {t['calls_when_none_needed']}/"
            f"{t['no_tool_questions']}; mean decision {t['mean_decision_seconds']:.1f} s"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
