"""Fact extraction for the long-term tier.

A fact is ``Fact(key, text)``. ``key`` names the attribute the fact is about
(``name``, ``location``, ``occupation``, ``likes:coffee``...): a newer fact with the same
key *replaces* the older one (a contradiction or a repeat updates, never piles up).
Facts come from the chat LLM (the ``llm`` service of the chat plugin) when it is
running, and from the rules below otherwise (or when the LLM answer is unusable).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_FACTS_PER_MESSAGE = 8
MAX_FACT_CHARS = 300


@dataclass(frozen=True, slots=True)
class Fact:
    key: str
    text: str
    importance: float = 0.7


def normalize_key(key: str) -> str:
    key = key.strip().lower()
    key = re.sub(r"[^\w:]+", "_", key, flags=re.UNICODE).strip("_")
    return key[:80]


def _clean(value: str) -> str:
    value = value.strip().strip(".!?,;: ").strip()
    value = re.sub(r"\s+", " ", value)
    return value


def _obj_key(value: str) -> str:
    words = re.findall(r"\w+", value.lower())
    stop = {"a", "an", "the", "my", "some", "to", "of", "very", "really", "much", "so"}
    words = [w for w in words if w not in stop]
    return "_".join(words[:4]) or "thing"


# (pattern, key builder, fact builder, importance). Patterns run on each sentence of a
# user message; the first group is the value.
_RULES: list[tuple[re.Pattern[str], Any, Any, float]] = []


def _rule(pattern: str, key: Any, fact: Any, importance: float = 0.7) -> None:
    _RULES.append((re.compile(pattern, re.IGNORECASE), key, fact, importance))


_STOP_VALUE = (
    r"(?:\s+(?:and|but|because|so|since|which|who|last|this|next|ago|yesterday|recently|"
    r"now|for|with|in \d{4})\b.*)?$"
)
_rule(
    r"\bmy name is ([\w' -]{1,40}?)" + _STOP_VALUE,
    lambda v: "name",
    lambda v: f"The user's name is {v}.",
    0.9,
)
_rule(
    r"\b(?:call me|i am called|i'm called) ([\w' -]{1,40}?)" + _STOP_VALUE,
    lambda v: "name",
    lambda v: f"The user's name is {v}.",
    0.9,
)
_rule(
    r"\bi(?: am|'m) (\d{1,3}) (?:years old|yo)\b",
    lambda v: "age",
    lambda v: f"The user is {v} years old.",
    0.8,
)
_rule(
    r"\bi (?:live|reside|am living|'m living) in ([\w' ,.-]{2,60}?)" + _STOP_VALUE,
    lambda v: "location",
    lambda v: f"The user lives in {v}.",
    0.85,
)
_rule(
    r"\bi(?: have|'ve)? (?:just )?moved to ([\w' ,.-]{2,60}?)" + _STOP_VALUE,
    lambda v: "location",
    lambda v: f"The user lives in {v}.",
    0.85,
)
_rule(
    r"\bi(?: am|'m) from ([\w' ,.-]{2,60}?)" + _STOP_VALUE,
    lambda v: "origin",
    lambda v: f"The user is from {v}.",
    0.75,
)
_rule(
    r"\bi (?:work|am working|'m working) as (?:an? )?([\w' -]{2,60}?)" + _STOP_VALUE,
    lambda v: "occupation",
    lambda v: f"The user works as {_article(v)}.",
    0.8,
)
_rule(
    r"\bi(?: am|'m) an? ((?:[\w-]+ ){0,2}(?:engineer|developer|teacher|doctor|nurse|student|designer|writer|lawyer|scientist|artist|chef|manager|programmer|researcher|musician|accountant|architect|farmer|pilot|driver))\b",
    lambda v: "occupation",
    lambda v: f"The user works as {_article(v)}.",
    0.8,
)
_rule(
    r"\bi work (?:at|for) ([\w' &.-]{2,60}?)" + _STOP_VALUE,
    lambda v: "employer",
    lambda v: f"The user works at {v}.",
    0.75,
)
_rule(
    r"\bmy (?:favou?rite) ([\w ]{2,30}?) is ([\w' ,.-]{1,60}?)" + _STOP_VALUE,
    lambda v: "favorite:" + _obj_key(v[0]),
    lambda v: f"The user's favorite {v[0]} is {v[1]}.",
    0.7,
)
_rule(
    r"\bi (?:really |also |absolutely )?(?:love|like|enjoy|adore|prefer) ([\w' ,.-]{2,60}?)"
    + _STOP_VALUE,
    lambda v: "likes:" + _obj_key(v),
    lambda v: f"The user likes {v}.",
    0.65,
)
_rule(
    r"\bi (?:really )?(?:don't|do not|dont) (?:like|enjoy|love) ([\w' ,.-]{2,60}?)" + _STOP_VALUE,
    lambda v: "likes:" + _obj_key(v),
    lambda v: f"The user does not like {v}.",
    0.65,
)
_rule(
    r"\bi (?:really )?(?:hate|dislike|can't stand|cannot stand|detest) ([\w' ,.-]{2,60}?)"
    + _STOP_VALUE,
    lambda v: "likes:" + _obj_key(v),
    lambda v: f"The user does not like {v}.",
    0.65,
)
_rule(
    r"\bi(?: am|'m) allergic to ([\w' ,.-]{2,60}?)" + _STOP_VALUE,
    lambda v: "allergy:" + _obj_key(v),
    lambda v: f"The user is allergic to {v}.",
    0.9,
)
_rule(
    r"\bi(?: have|'ve got| own) (?:an? |two |three |\d+ )?(dog|cat|dogs|cats|bird|birds|fish|hamster|rabbit|horse|parrot|turtle|kids|children|son|daughter|brother|sister|car|bike)\b(?: (?:named|called) ([\w'-]{1,30}))?",
    lambda v: "has:" + _obj_key(v[0] if isinstance(v, tuple) else v),
    lambda v: (
        f"The user has a {v[0]} named {v[1]}."
        if isinstance(v, tuple) and v[1]
        else f"The user has a {v[0] if isinstance(v, tuple) else v}."
    ),
    0.7,
)
_rule(
    r"\bmy ((?:wife|husband|partner|son|daughter|brother|sister|mother|father|mom|dad|boss|dog|cat)(?:'s name)?) is (?:called |named )?([\w' -]{1,40}?)"
    + _STOP_VALUE,
    lambda v: "relation:" + _obj_key(v[0].replace("'s name", "")),
    lambda v: f"The user's {v[0].replace(chr(39) + 's name', '')} is {v[1]}.",
    0.75,
)
_rule(
    r"\bi speak ([\w' ,-]{2,60}?)" + _STOP_VALUE,
    lambda v: "languages",
    lambda v: f"The user speaks {v}.",
    0.6,
)
_rule(
    r"\bi(?: am|'m) (vegetarian|vegan|pescatarian)\b",
    lambda v: "diet",
    lambda v: f"The user is {v}.",
    0.8,
)


def _article(value: str) -> str:
    value = value.strip()
    if re.match(r"^(a|an|the)\b", value, re.IGNORECASE):
        return value
    return ("an " if value[:1].lower() in "aeiou" else "a ") + value


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?\n;])\s+|\n+", text) if s.strip()]


def extract_rules(text: str) -> list[Fact]:
    """Facts from a user's message by pattern (English first-person statements)."""
    facts: dict[str, Fact] = {}
    for sentence in _sentences(text[:4000]):
        if sentence.endswith("?"):
            continue  # a question states nothing
        sentence = sentence.rstrip(".!;:,… ")
        for pattern, key_of, fact_of, importance in _RULES:
            m = pattern.search(sentence)
            if not m:
                continue
            groups = tuple(_clean(g) if g else g for g in m.groups())
            value: Any = groups[0] if len(groups) == 1 else groups
            first = groups[0]
            if not first:
                continue
            key = normalize_key(key_of(value))
            facts[key] = Fact(key, fact_of(value)[:MAX_FACT_CHARS], importance)
    return list(facts.values())[:MAX_FACTS_PER_MESSAGE]


LLM_SYSTEM_PROMPT = (
    "You extract durable facts about the USER from the user's latest message: who they "
    "are, where they live, work, their preferences, relationships, plans. Ignore "
    "questions, small talk and anything about the assistant. Answer with JSON only, "
    'exactly: {"facts": [{"key": "<attribute>", "fact": "<one short sentence about the user, third person>"}]}. '
    "The key names the attribute in snake_case (name, location, occupation, age, "
    "likes:<thing>, allergy:<thing>, relation:<who>...). Reuse the key of a known fact "
    "when the new one is about the same attribute, so it replaces it. Answer "
    '{"facts": []} when there is nothing durable.'
)


# The answer the LLM is held to: the embedded model's output is constrained to it by a
# llama.cpp grammar, an OpenAI-compatible upstream gets it as response_format, others
# are asked in words (the prompt) and parsed leniently.
FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": MAX_FACTS_PER_MESSAGE,
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": 60},
                    "fact": {"type": "string", "minLength": 1, "maxLength": MAX_FACT_CHARS},
                },
                "required": ["key", "fact"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}


def build_llm_messages(text: str, known: list[tuple[str, str]]) -> list[dict[str, str]]:
    known_lines = "\n".join(f"- {k}: {f}" for k, f in known[:20]) or "(none)"
    return [
        {"role": "system", "content": LLM_SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"Known facts:\n{known_lines}\n\nThe user's latest message:\n{text[:4000]}",
        },
    ]


def parse_llm_facts(answer: str) -> list[Fact] | None:
    """Facts from the LLM's JSON answer; None when the answer is not usable JSON."""
    if not answer:
        return None
    candidates = [answer.strip()]
    m = re.search(r"```(?:json)?\s*(.*?)```", answer, re.DOTALL)
    if m:
        candidates.insert(0, m.group(1).strip())
    m = re.search(r"\{.*\}", answer, re.DOTALL)
    if m:
        candidates.append(m.group(0))
    data: Any = None
    for candidate in candidates:
        try:
            # strict=False: a small model's grammar-held answer may put a raw newline
            # inside a string, which strict JSON refuses
            data = json.loads(candidate, strict=False)
            break
        except ValueError:
            continue
    if data is None:
        return None
    items = data.get("facts") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return None
    facts: dict[str, Fact] = {}
    for item in items[: MAX_FACTS_PER_MESSAGE * 2]:
        if not isinstance(item, dict):
            continue
        text = item.get("fact") or item.get("text") or item.get("content")
        key = item.get("key") or item.get("attribute")
        if not isinstance(text, str) or not text.strip():
            continue
        text = _clean(text)[:MAX_FACT_CHARS]
        if not text.endswith("."):
            text += "."
        key = normalize_key(key) if isinstance(key, str) and key.strip() else ""
        if not key:
            key = "fact:" + _obj_key(text)
        importance = item.get("importance")
        imp = float(importance) if isinstance(importance, (int, float)) else 0.7
        facts[key] = Fact(key, text, max(0.0, min(1.0, imp)))
    return list(facts.values())[:MAX_FACTS_PER_MESSAGE]
