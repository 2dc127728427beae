"""Character Card V2 (``spec: "chara_card_v2"``), as SillyTavern reads and writes them:
a JSON document, or a PNG picture carrying it base64-encoded in a ``tEXt`` chunk with the
keyword ``chara``. V1 cards (the same fields at the top level) and V3 cards (``ccv3``
chunk, same ``data`` fields) are read too. The mapping onto our fields is in
docs/chat.md ("Character cards").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from typing import Any

from sdk import errors
from sdk.untrusted import loads

from .character_set import MAX_DESCRIPTION, MAX_GREETINGS, MAX_NAME, MAX_PERSONA
from .characters import Character
from .images import PNG_SIGNATURE, check_png, png_chunk, png_text, png_with_text

TEXT_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
)
LIST_FIELDS = ("alternate_greetings", "tags")
EXTENSION = "llmmultichat"  # our fields, in the card's data.extensions


def bad_card(why: str, path: str = "/") -> errors.Problem:
    return errors.ValidationFailed(
        f"not a usable Character Card: {why}",
        code="INVALID_CARD",
        errors=[{"path": path, "message": why}],
    )


def parse_card(raw: bytes | dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """The card's ``data`` (checked) and, for a PNG card, the picture."""
    image: bytes | None = None
    doc: Any = raw
    if isinstance(raw, bytes):
        if raw.startswith(PNG_SIGNATURE):
            check_png(raw)  # 422 NOT_AN_IMAGE unless a whole, valid PNG
            texts = png_text(raw)
            encoded = texts.get("chara") or texts.get("ccv3")
            if encoded is None:
                raise bad_card("the PNG has no 'chara' text chunk")
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise bad_card("the 'chara' chunk is not base64") from None
            try:
                doc = loads(decoded)
            except errors.Problem:
                raise bad_card("the 'chara' chunk is not JSON") from None
            image = raw
        else:
            try:
                doc = loads(raw)
            except errors.Problem:
                raise bad_card("neither a PNG nor JSON") from None
    if not isinstance(doc, dict):
        raise bad_card("the card is not a JSON object")
    spec = doc.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = doc.get("data")
        if not isinstance(data, dict):
            raise bad_card("'data' must be an object", "/data")
        prefix = "/data"
    elif spec is None and "name" in doc:
        data, prefix = doc, ""  # V1: the fields at the top level
    else:
        raise bad_card(f"unknown spec {spec!r}; expected 'chara_card_v2'", "/spec")
    for key in TEXT_FIELDS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise bad_card(f"'{key}' must be a string", f"{prefix}/{key}")
    for key in LIST_FIELDS:
        value = data.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise bad_card(f"'{key}' must be a list of strings", f"{prefix}/{key}")
    if not isinstance(data.get("extensions", {}), dict):
        raise bad_card("'extensions' must be an object", f"{prefix}/extensions")
    name = (data.get("name") or "").strip()
    if not name or len(name) > MAX_NAME:
        raise bad_card(f"'name' must have 1 to {MAX_NAME} characters", f"{prefix}/name")
    return data, image


_CHAR_MACRO = re.compile(r"\{\{char\}\}|<BOT>", re.IGNORECASE)
_USER_MACRO = re.compile(r"\{\{user\}\}|<USER>", re.IGNORECASE)


def fill_macros(text: str, char_name: str, user_name: str) -> str:
    """SillyTavern's ``{{char}}``/``{{user}}`` (and V1's ``<BOT>``/``<USER>``)."""
    return _USER_MACRO.sub(user_name, _CHAR_MACRO.sub(char_name, text))


def compose_persona(data: dict[str, Any]) -> str:
    """The system prompt our characters have, from a card's definition fields."""
    name = data["name"].strip()
    parts: list[str] = []
    system = (data.get("system_prompt") or "").strip()
    if system:
        parts.append(system.replace("{{original}}", ""))
    else:
        parts.append(f"You are {name}.")
    if (data.get("description") or "").strip():
        parts.append(data["description"].strip())
    if (data.get("personality") or "").strip():
        parts.append(f"{name}'s personality: {data['personality'].strip()}")
    if (data.get("scenario") or "").strip():
        parts.append(f"Scenario: {data['scenario'].strip()}")
    example = (data.get("mes_example") or "").replace("<START>", "").strip()
    if example:
        parts.append(f"Examples of how {name} writes:\n{example}")
    if (data.get("post_history_instructions") or "").strip():
        parts.append(data["post_history_instructions"].strip())
    return fill_macros("\n\n".join(p for p in parts if p), name, "the user")


def character_from_card(data: dict[str, Any], default_provider: str) -> dict[str, Any]:
    """Our character fields from a card's ``data`` (our own extension, when the card
    was exported here, restores what a card has no field for)."""
    name = data["name"].strip()
    ours = (data.get("extensions") or {}).get(EXTENSION)
    ours = ours if isinstance(ours, dict) else {}
    persona = ours.get("persona") if isinstance(ours.get("persona"), str) else None
    persona = persona or compose_persona(data)
    if len(persona) > MAX_PERSONA:
        raise bad_card(
            f"the character's definition is longer than {MAX_PERSONA} characters",
            "/data/description",
        )
    blurb = (data.get("creator_notes") or data.get("description") or "").strip()
    blurb = fill_macros(blurb.split("\n\n")[0], name, "you")[:MAX_DESCRIPTION]
    greetings = [g for g in data.get("alternate_greetings") or [] if g.strip()]
    fields: dict[str, Any] = {
        "name": name,
        "description": str(ours.get("description") or blurb)[:MAX_DESCRIPTION],
        "persona": persona,
        "greeting": (data.get("first_mes") or "")[:MAX_PERSONA],
        "alternate_greetings": [g[:MAX_PERSONA] for g in greetings[:MAX_GREETINGS]],
        "card": dict(data),
    }
    for key, kinds in (
        ("aliases", list),
        ("keywords", list),
        ("talkativeness", (int, float)),
        ("tools", (bool, list)),
        ("provider", str),
        ("model", str),
    ):
        if isinstance(ours.get(key), kinds):
            fields[key] = ours[key]
    if isinstance(fields.get("aliases"), list):
        fields["aliases"] = [a for a in fields["aliases"] if isinstance(a, str) and a.strip()]
    if isinstance(fields.get("keywords"), list):
        fields["keywords"] = [k for k in fields["keywords"] if isinstance(k, str) and k.strip()]
    fields.setdefault("provider", default_provider)
    return fields


def card_from_character(char: Character) -> dict[str, Any]:
    """A Character Card V2 of ours: a card we imported comes back with its own fields
    (name and greetings as they are now); ours go in ``extensions.llmmultichat``."""
    base: dict[str, Any] = dict(char.card)
    data: dict[str, Any] = {
        "name": char.name,
        "description": base.get("description", char.persona),
        "personality": base.get("personality", ""),
        "scenario": base.get("scenario", ""),
        "first_mes": char.greeting,
        "mes_example": base.get("mes_example", ""),
        "creator_notes": base.get("creator_notes", char.description),
        "system_prompt": base.get("system_prompt", ""),
        "post_history_instructions": base.get("post_history_instructions", ""),
        "alternate_greetings": list(char.alternate_greetings),
        "tags": list(base.get("tags") or []),
        "creator": base.get("creator", ""),
        "character_version": base.get("character_version", ""),
        "extensions": dict(base.get("extensions") or {}),
    }
    if "character_book" in base:
        data["character_book"] = base["character_book"]
    data["extensions"][EXTENSION] = {
        "id": char.id,
        "persona": char.persona,
        "description": char.description,
        "aliases": list(char.aliases),
        "keywords": list(char.keywords),
        "talkativeness": char.talkativeness,
        "tools": char.tools if isinstance(char.tools, bool) else list(char.tools),
        "provider": char.provider,
        "model": char.model,
    }
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def card_png(image: bytes | None, card: dict[str, Any]) -> bytes:
    """A PNG carrying ``card`` in its ``chara`` chunk, as SillyTavern writes it (on a
    plain grey square when the character has no PNG picture)."""
    encoded = base64.b64encode(json.dumps(card, ensure_ascii=False).encode()).decode()
    return png_with_text(image or blank_png(), "chara", encoded.encode("ascii"))


def blank_png(side: int = 64) -> bytes:
    row = b"\0" + b"\x80\x80\x80" * side
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(row * side))
        + png_chunk(b"IEND", b"")
    )
