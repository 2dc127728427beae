"""Tool calls for the embedded model, which has no function calling of its own.

Two constrained steps, each a short prompt of its own (not the character's):

1. **Decision**: the tools' names and descriptions, a few examples, and the user's last
   message; the answer is constrained (a llama.cpp JSON-schema grammar) to
   ``{"tool": <one of the tool names or "none">}``.
2. **Arguments**: the chosen tool's description and parameters, examples, and the same
   message; the answer is constrained to the tool's ``parameters`` schema.

A 135M-parameter model cannot tell from a bare description when a tool fits (asked
directly it answers "none" to every weather question, English or Japanese); the examples
are what makes it work, so the builtin tools (``weather``, ``translate``) come with
examples here, and a tool without examples is offered by its description alone.

This module only builds prompts and schemas; ``llama_cpp.py`` runs them.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

NONE = "none"
MAX_REQUEST_CHARS = 400

# (user message, arguments) pairs for the builtin tools, English and Japanese. They are
# not the questions of bench/local_model.py (other cities, other wording).
TOOL_EXAMPLES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "weather": [
        ("What's the temperature in Madrid?", {"city": "Madrid"}),
        ("Is it snowing in Oslo right now?", {"city": "Oslo"}),
        ("ローマの天気は？", {"city": "ローマ"}),
        ("ニューヨークは今寒いですか？", {"city": "ニューヨーク"}),
        ("Will it rain in Sydney today?", {"city": "Sydney"}),
        ("ソウルの気温を教えて。", {"city": "ソウル"}),
    ],
    "translate": [
        ("Translate 'good morning' into French.", {"text": "good morning", "target_lang": "fr"}),
        ("「ありがとう」を英語に訳して。", {"text": "ありがとう", "target_lang": "en"}),
    ],
}

# Messages that need no tool: small talk, explanations, general knowledge (a city named
# without asking about its weather among them).
NO_TOOL_EXAMPLES = [
    "Hello, nice to meet you!",
    "Good evening! How have you been?",
    "やあ、調子はどう？",
    "Why do cats purr?",
    "面白い話をして。",
    "What is the tallest mountain in Japan?",
    "パリの有名な観光地は？",
    "Write a haiku about spring.",
    "おはよう！",
    "How do I cook rice?",
]

# Messages and tool answers interleaved, so that no answer follows from position alone.
_ORDER = [
    NONE,
    "weather",
    NONE,
    "translate",
    NONE,
    "weather",
    NONE,
    "weather",
    NONE,
    NONE,
    "weather",
    NONE,
    "weather",
    NONE,
    "translate",
    NONE,
    "weather",
    NONE,
]

NO_TOOL_LINE = (
    f"- {NONE}: no tool is needed (greetings, small talk, explanations, stories, "
    "general knowledge)."
)


def decision_examples(names: list[str]) -> list[tuple[str, str]]:
    """(message, tool) examples for the tools offered, interleaved with no-tool ones."""
    pools: dict[str, list[str]] = {
        name: [text for text, _ in TOOL_EXAMPLES.get(name, [])] for name in names
    }
    pools[NONE] = list(NO_TOOL_EXAMPLES)
    out: list[tuple[str, str]] = []
    for name in _ORDER:
        pool = pools.get(name)
        if pool:
            out.append((pool.pop(0), name))
    # tools offered but not in the builtin order (none of the builtins' examples left)
    for name, pool in pools.items():
        for text in pool[:2]:
            out.append((text, name))
    return out


def decision_schema(names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tool": {"enum": [*names, NONE]}},
        "required": ["tool"],
        "additionalProperties": False,
    }


def decision_messages(tools: list[dict[str, Any]], request: str) -> list[dict[str, Any]]:
    """The decision prompt: which of ``tools`` (function schemas: name, description,
    parameters) answers ``request``, or none."""
    names = [str(t["name"]) for t in tools]
    lines = "\n".join(f"- {t['name']}: {_one_line(t.get('description') or '')}" for t in tools)
    system = (
        "You pick the tool that answers the user's message, or none. Tools:\n"
        f"{lines}\n{NO_TOOL_LINE}\nAnswer with JSON."
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for text, name in decision_examples(names):
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": json.dumps({"tool": name})})
    messages.append({"role": "user", "content": request})
    return messages


def arguments_messages(tool: dict[str, Any], request: str) -> list[dict[str, Any]]:
    """The argument prompt: fill ``tool``'s parameters from ``request``."""
    params = tool.get("parameters") or {}
    props = params.get("properties") or {}
    described = "\n".join(
        f"- {name}: {_one_line(str(spec.get('description') or spec.get('type') or ''))}"
        for name, spec in props.items()
        if isinstance(spec, dict)
    )
    system = (
        f"You fill in the arguments of the tool {tool['name']}: "
        f"{_one_line(tool.get('description') or '')}\n"
        + (f"Arguments:\n{described}\n" if described else "")
        + "Take the values from the user's message, in the words the user used. "
        "Answer with JSON."
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for text, args in TOOL_EXAMPLES.get(str(tool["name"]), []):
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": json.dumps(args, ensure_ascii=False)})
    messages.append({"role": "user", "content": request})
    return messages


def pending_request(messages: list[dict[str, Any]]) -> str | None:
    """The user's last message when a tool could still answer it; None when none is
    there or a tool result already follows it (one tool round per message)."""
    for message in reversed(messages):
        role = message.get("role")
        if role == "tool" or message.get("tool_calls"):
            return None
        if role == "user":
            text = str(message.get("content") or "").strip()
            # another character's line ("[Claris said]: ...") is not a request
            if not text or re.match(r"^\[[^\]]{1,80} said\]:", text):
                return None
            # the end of a long message (the question is usually there): the prompts
            # must stay well inside the model's context
            return text[-MAX_REQUEST_CHARS:]
    return None


# Keywords llama.cpp's schema converter refuses or cannot turn into a grammar.
_UNSUPPORTED = ("$schema", "$id", "examples", "default", "title")


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JSON schema that llama.cpp's converter accepts: annotation keywords
    dropped, and ``pattern`` kept only when anchored (``^...$``), which is all it handles.
    The grammar may then accept a little more than the schema: the tool still validates
    its arguments."""

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(n) for n in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _UNSUPPORTED:
                continue
            if key == "pattern" and not (
                isinstance(value, str) and value.startswith("^") and value.endswith("$")
            ):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {k: clean(v) for k, v in value.items()}
            else:
                out[key] = clean(value)
        return out

    cleaned = clean(copy.deepcopy(schema))
    return cleaned if isinstance(cleaned, dict) else {}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
