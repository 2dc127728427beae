"""The characters every part of chat uses, with their scopes.

- ``system``: from ``plugins.toml`` (and plugins' ``register_characters``); an admin's
  change to one is stored as an override row, a deletion as a deleted override.
- ``global``: made by an admin through the API, seen by everyone.
- ``private``: made by a user, seen (and nominated, routed to, listed by ``/v1/models``)
  by that user only; anyone else gets 404.

The set lives in the database (``chat_characters``); every change moves one version
number in the same transaction. Before characters are used, an instance on a shared
database compares its version with the stored one (one indexed read) and reloads when
they differ, so a change holds on every instance at once; a bus event makes the others
reload early too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

from sdk import Identity, errors

from .characters import Character, build_character, normalize
from .store import CharacterRow, CharacterStore

log = logging.getLogger("llmmultichat.chat.characters")

# Bounds of a character's fields (the API's schema says the same).
MAX_NAME = 64
MAX_ALIASES = 16
MAX_DESCRIPTION = 2000
MAX_PERSONA = 20000
MAX_KEYWORDS = 32
MAX_GREETINGS = 32
MAX_TOOLS = 64


def _short(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


CHARACTER_FIELDS: dict[str, Any] = {
    "name": _short(MAX_NAME),
    "aliases": {"type": "array", "maxItems": MAX_ALIASES, "items": _short(MAX_NAME)},
    "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
    "persona": {"type": "string", "maxLength": MAX_PERSONA},
    "provider": _short(64),
    "model": {"type": ["string", "null"], "maxLength": 200},
    "fallback": {"type": "array", "maxItems": 4, "items": _short(64)},
    "keywords": {"type": "array", "maxItems": MAX_KEYWORDS, "items": _short(MAX_NAME)},
    "talkativeness": {"type": "number", "minimum": 0, "maximum": 1},
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "max_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": 32768},
    "tools": {
        "description": "true: every enabled tool; false: none; or a list of enabled tools",
        "oneOf": [
            {"type": "boolean"},
            {"type": "array", "maxItems": MAX_TOOLS, "items": _short(100)},
        ],
    },
    "greeting": {"type": "string", "maxLength": MAX_PERSONA},
    "alternate_greetings": {
        "type": "array",
        "maxItems": MAX_GREETINGS,
        "items": {"type": "string", "maxLength": MAX_PERSONA},
    },
}

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        **CHARACTER_FIELDS,
        "scope": {
            "enum": ["private", "global"],
            "default": "private",
            "description": "global: admins only",
        },
    },
}

PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": CHARACTER_FIELDS,
}


def new_character_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", normalize(name)).strip("-")[:40]
    return f"{slug or 'character'}-{uuid.uuid4().hex[:6]}"


class CharacterSet:
    def __init__(
        self,
        store: CharacterStore,
        *,
        default_provider: str,
        shared: bool,
    ) -> None:
        self.store = store
        self.default_provider = default_provider
        # a database other processes write too (PostgreSQL): check the version before use
        self.shared = shared
        self.base: dict[str, Character] = {}
        self.active: dict[str, Character] = {}
        self.names: dict[str, str] = {}  # every id ever seen (deleted ones too) -> name
        self.version = -1
        self._checking: asyncio.Future[None] | None = None

    # ---- loading --------------------------------------------------------------------
    async def load(self, base: dict[str, Character]) -> None:
        self.base = base
        await self.reload()

    async def reload(self) -> None:
        version, rows = await self.store.load()
        self._apply(version, rows)

    def _apply(self, version: int, rows: list[CharacterRow]) -> None:
        active = dict(self.base)
        names = {cid: c.name for cid, c in self.base.items()}
        for row in rows:
            name = str(row.data.get("name") or row.character_id)
            names[row.character_id] = name
            if row.scope == "system" and row.character_id not in self.base:
                continue  # an override of a character plugins.toml no longer has
            if row.deleted:
                active.pop(row.character_id, None)
                continue
            try:
                char = build_character(row.character_id, row.data, self.default_provider, row.scope)
            except (errors.Problem, TypeError, ValueError) as exc:
                log.warning("stored character %r ignored: %s", row.character_id, exc)
                continue
            char.scope = row.scope
            char.owner_id = row.owner_id
            char.avatar_version = row.avatar_version
            active[row.character_id] = char
        self.active, self.names, self.version = active, names, version

    async def fresh(self) -> None:
        """Make sure the set is the stored one (on a shared database); concurrent callers
        share one check."""
        if not self.shared:
            return
        if self._checking is not None:
            await asyncio.shield(self._checking)
            return
        self._checking = asyncio.get_running_loop().create_future()
        try:
            if await self.store.version() != self.version:
                await self.reload()
            self._checking.set_result(None)
        except BaseException as exc:
            self._checking.set_exception(exc)
            self._checking.exception()  # retrieved: the caller gets it raised below
            raise
        finally:
            self._checking = None

    # ---- reading --------------------------------------------------------------------
    def visible(self, user_id: str | None) -> dict[str, Character]:
        return {cid: c for cid, c in self.active.items() if c.visible_to(user_id)}

    def get(self, identity: Identity | None, char_id: str) -> Character:
        char = self.active.get(char_id)
        if char is None or not char.visible_to(identity.user_id if identity else None):
            raise errors.NotFound("no such character", code="CHARACTER_NOT_FOUND")
        return char

    def name_of(self, char_id: str | None) -> str:
        if not char_id:
            return ""
        return self.names.get(char_id, char_id)

    # ---- checks ---------------------------------------------------------------------
    def check_names(
        self,
        char_id: str | None,
        name: str,
        aliases: list[str],
        *,
        scope: str,
        owner_id: str | None,
    ) -> None:
        """409 ``CHARACTER_NAME_TAKEN`` when the name or an alias is one a character the
        owner (or, for a global one, everyone) can see already answers to."""
        if not name.strip():
            raise errors.ValidationFailed(
                "name must not be blank", errors=[{"path": "/name", "message": "blank"}]
            )
        if scope == "private":
            others = self.visible(owner_id)
        else:
            others = {cid: c for cid, c in self.active.items() if c.scope != "private"}
        taken: dict[str, str] = {}
        for other in others.values():
            if other.id == char_id:
                continue
            for term in (other.id, other.name, *other.aliases):
                taken.setdefault(normalize(term), other.name)
        seen: set[str] = set()
        for path, term in [("/name", name), *((f"/aliases/{i}", a) for i, a in enumerate(aliases))]:
            key = normalize(term)
            if key in taken:
                raise errors.Conflict(
                    f"{term!r} is already the name or an alias of {taken[key]!r}",
                    code="CHARACTER_NAME_TAKEN",
                    errors=[{"path": path, "message": f"taken by {taken[key]!r}"}],
                )
            if key in seen:
                raise errors.ValidationFailed(
                    f"{term!r} is given twice",
                    errors=[{"path": path, "message": "given twice"}],
                )
            seen.add(key)
