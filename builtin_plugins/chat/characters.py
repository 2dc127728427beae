"""Characters: who can speak, with which persona, on which provider.

Defined in ``[plugins.chat.characters.<id>]`` tables, and by third-party plugins through
the ``register_characters`` hook (a list of dicts shaped like those tables plus ``id``).
Config wins over a hook-registered character with the same id.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sdk import errors

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

LUMINA_PERSONA = """\
You are Lumina (ルミナ), the host of this conversation. You are warm, curious and quick to \
notice how the user is feeling; you make people feel welcome and keep the talk flowing. \
You are good at small talk, everyday questions, encouragement and gentle humour, and you \
offer an insight of your own rather than only asking questions. When a topic needs a deep \
explanation you may say that Claris could explain the background, and when something \
should be checked or looked up you may suggest asking Nox, but you never speak for them. \
Keep replies short and conversational (two to four sentences unless asked for more), use \
plain friendly language, and answer in the language the user writes in (Japanese when \
they write Japanese)."""

CLARIS_PERSONA = """\
You are Claris (クラリス), the explainer of the group. You are calm, patient and precise. \
You explain background, theory and the reasons behind things: you start with a one-line \
answer, then build the explanation step by step with a clear structure (short paragraphs \
or numbered points), define terms the user may not know, and close with a brief summary \
or an example. You distinguish what is established from what is uncertain, and you say \
so when you do not know. You never pretend to have looked something up. You speak only \
as Claris, never for Lumina or Nox, and answer in the language the user writes in \
(Japanese when they write Japanese)."""

NOX_PERSONA = """\
You are Nox (ノクス), the sceptic of the group. You are cool, concise and exact. You \
verify claims, point out what is missing or doubtful, search for and check current \
information with the tools you have (call a tool rather than guess when one fits), and \
summarise long discussions into their essentials. You separate facts from assumptions, \
state your confidence, and name your sources when a tool gave you data. You do not do \
small talk for its own sake and you keep answers brief, often as a few bullet points. You \
speak only as Nox, never for Lumina or Claris, and answer in the language the user writes \
in (Japanese when they write Japanese)."""

DEFAULT_CHARACTERS: dict[str, dict[str, Any]] = {
    "lumina": {
        "name": "Lumina",
        "aliases": ["ルミナ", "るみな"],
        "description": "Host: friendly, insightful small talk",
        "provider": "local",
        "persona": LUMINA_PERSONA,
        "keywords": [],
        "talkativeness": 0.5,
    },
    "claris": {
        "name": "Claris",
        "aliases": ["クラリス", "くらりす"],
        "description": "Explanation and theory: calm, structured",
        "provider": "local",
        "persona": CLARIS_PERSONA,
        "keywords": ["説明", "解説", "詳しく", "理由", "explain", "why"],
        "talkativeness": 0.3,
    },
    "nox": {
        "name": "Nox",
        "aliases": ["ノクス", "のくす"],
        "description": "Verification, summary and search: cool, sceptical",
        "provider": "local",
        "persona": NOX_PERSONA,
        "keywords": ["調べて", "検索", "最新", "ニュース", "search", "latest", "news"],
        "talkativeness": 0.3,
    },
}

CHARACTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 64},
        "aliases": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": []},
        "description": {"type": "string", "default": ""},
        "provider": {"type": "string", "description": "a key of [plugins.chat.providers]"},
        "model": {"type": "string", "description": "overrides the provider's model"},
        "fallback": {
            "type": "array",
            "items": {"type": "string"},
            "default": [],
            "description": "providers to try, in order, when this character's provider fails",
        },
        "persona": {"type": "string", "default": ""},
        "keywords": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": []},
        "talkativeness": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1},
        "tools": {
            "description": "true: every tool; false: none; or a list of tool names",
            "oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}],
            "default": True,
        },
        "enabled": {"type": "boolean", "default": True},
        "greeting": {"type": "string", "description": "said first in a new conversation"},
        "alternate_greetings": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def normalize(text: str) -> str:
    """Case- and width-insensitive form for matching names in any script (ＬＵＭＩＮＡ, lumina)."""
    return unicodedata.normalize("NFKC", text).casefold()


def _is_wordlike(text: str) -> bool:
    return bool(re.fullmatch(r"[\w\s.'-]+", text, flags=re.ASCII))


def term_pattern(term: str) -> re.Pattern[str]:
    """A pattern finding ``term`` in normalized text: whole words for Latin terms, plain
    substrings for Japanese and other scripts without spaces."""
    escaped = re.escape(normalize(term))
    if _is_wordlike(term):
        return re.compile(rf"(?<![\w]){escaped}(?![\w])", flags=re.ASCII)
    return re.compile(escaped)


@dataclass(slots=True)
class Character:
    id: str
    name: str
    provider: str
    persona: str = ""
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    model: str | None = None
    fallback: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    talkativeness: float = 0.5
    temperature: float | None = None
    max_tokens: int | None = None
    tools: bool | list[str] = True
    source: str = "config"
    scope: str = "system"  # system (plugins.toml or a plugin) | global | private
    owner_id: str | None = None
    greeting: str = ""  # said first in a new conversation with this character
    alternate_greetings: list[str] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)  # a Character Card's own fields
    avatar_version: str | None = None
    _name_patterns: list[re.Pattern[str]] = field(default_factory=list, repr=False)
    _keyword_patterns: list[re.Pattern[str]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        names = [self.name, self.id, *self.aliases]
        self._name_patterns = [term_pattern(n) for n in dict.fromkeys(names) if n.strip()]
        self._keyword_patterns = [term_pattern(k) for k in self.keywords if k.strip()]

    def named_at(self, normalized_text: str) -> int | None:
        """Position of the first mention of this character (name, id or alias), or None."""
        best: int | None = None
        for pattern in self._name_patterns:
            m = pattern.search(normalized_text)
            if m and (best is None or m.start() < best):
                best = m.start()
        return best

    def keyword_hit(self, normalized_text: str) -> bool:
        return any(p.search(normalized_text) for p in self._keyword_patterns)

    def chain(self, default_provider: str) -> list[tuple[str, str | None]]:
        """Providers to try, in order, with the model override for the first."""
        first = self.provider or default_provider
        out: list[tuple[str, str | None]] = [(first, self.model)]
        out.extend((name, None) for name in self.fallback if name != first)
        return out

    def allows_tool(self, name: str) -> bool:
        if isinstance(self.tools, bool):
            return self.tools
        return name in self.tools

    def visible_to(self, user_id: str | None) -> bool:
        return self.scope != "private" or (user_id is not None and self.owner_id == user_id)

    @property
    def avatar_url(self) -> str | None:
        if not self.avatar_version:
            return None
        # a new picture is a new URL, so the old one may be cached for a year
        return f"/api/v1/chat/characters/{self.id}/avatar?v={self.avatar_version}"

    def public(self, default_provider: str, providers: dict[str, Any]) -> dict[str, Any]:
        provider_name = self.provider or default_provider
        provider = providers.get(provider_name)
        model = self.model or (getattr(provider, "model", "") if provider is not None else "")
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "provider": provider_name,
            "model": model,
            "aliases": list(self.aliases),
            "persona": self.persona,
            "avatar_url": self.avatar_url,
            "tools": self.tools if isinstance(self.tools, bool) else list(self.tools),
            "talkativeness": self.talkativeness,
            "keywords": list(self.keywords),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "greeting": self.greeting,
            "alternate_greetings": list(self.alternate_greetings),
            "scope": self.scope,
            "owner_id": self.owner_id,
        }

    def fields(self) -> dict[str, Any]:
        """What is stored of a character (its table in plugins.toml, plus card fields)."""
        out: dict[str, Any] = {
            "name": self.name,
            "aliases": list(self.aliases),
            "description": self.description,
            "provider": self.provider,
            "persona": self.persona,
            "keywords": list(self.keywords),
            "talkativeness": self.talkativeness,
            "tools": self.tools if isinstance(self.tools, bool) else list(self.tools),
            "fallback": list(self.fallback),
            "greeting": self.greeting,
            "alternate_greetings": list(self.alternate_greetings),
        }
        for key in ("model", "temperature", "max_tokens"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.card:
            out["card"] = self.card
        return out


def build_character(
    char_id: str, raw: dict[str, Any], default_provider: str, source: str
) -> Character:
    if not ID_PATTERN.match(char_id):
        raise errors.ValidationFailed(f"character id {char_id!r} must match {ID_PATTERN.pattern}")
    return Character(
        id=char_id,
        name=str(raw.get("name") or char_id),
        provider=str(raw.get("provider") or default_provider),
        persona=str(raw.get("persona") or ""),
        description=str(raw.get("description") or ""),
        aliases=[str(a) for a in raw.get("aliases") or []],
        model=raw.get("model") or None,
        fallback=[str(f) for f in raw.get("fallback") or []],
        keywords=[str(k) for k in raw.get("keywords") or []],
        talkativeness=float(raw.get("talkativeness", 0.5)),
        temperature=raw.get("temperature"),
        max_tokens=raw.get("max_tokens"),
        tools=raw.get("tools", True),
        source=source,
        greeting=str(raw.get("greeting") or ""),
        alternate_greetings=[str(g) for g in raw.get("alternate_greetings") or []],
        card=dict(raw.get("card") or {}),
    )


def load_characters(
    configured: dict[str, dict[str, Any]],
    registered: list[tuple[str, dict[str, Any]]],
    default_provider: str,
    log: Any,
) -> dict[str, Character]:
    """Config characters first (in table order), then hook-registered ones with new ids."""
    out: dict[str, Character] = {}
    for char_id, raw in configured.items():
        if raw.get("enabled", True) is False:
            continue
        out[char_id] = build_character(char_id, raw, default_provider, "config")
    for plugin_name, raw in registered:
        char_id = str(raw.get("id") or "")
        if not char_id or char_id in out:
            if char_id:
                log.info("character %r from %s: config already defines it", char_id, plugin_name)
            continue
        try:
            out[char_id] = build_character(char_id, raw, default_provider, plugin_name)
        except (errors.Problem, TypeError, ValueError) as exc:
            log.warning("character from %s ignored: %s", plugin_name, exc)
    return out


def find_character(characters: dict[str, Character], name: str) -> Character | None:
    """The character with this id, or with this display name or alias (any case or
    width)."""
    if name in characters:
        return characters[name]
    wanted = normalize(name)
    for char in characters.values():
        if wanted in (normalize(n) for n in (char.name, *char.aliases)):
            return char
    return None
