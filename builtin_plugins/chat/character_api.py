"""Making, changing and deleting characters; avatars; Character Card import and export.

Who may do what: a user makes ``private`` characters and changes or deletes their own;
an admin may make ``global`` ones and change or delete global and system ones (a change
to a system character is stored as an override of its ``plugins.toml`` table). Another
user's private character is 404 for everyone else, admins included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdk import Identity, errors

from .cards import card_from_character, card_png, character_from_card, parse_card
from .character_set import new_character_id
from .characters import Character, build_character
from .images import check_image

if TYPE_CHECKING:
    from .service import ChatService

CHARACTERS_CHANGED = "chat.characters.changed"  # {version}


class CharacterAPI:
    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.charset = service.charset

    # ---- checks ---------------------------------------------------------------------
    def _check_refs(self, fields: dict[str, Any]) -> None:
        """``provider`` (and ``fallback``) must be configured providers, ``tools`` enabled
        tools: 422 naming the one that is not."""
        providers = self.service.providers.providers if self.service.providers else {}
        named = [("/provider", fields.get("provider"))] + [
            (f"/fallback/{i}", p) for i, p in enumerate(fields.get("fallback") or [])
        ]
        for path, name in named:
            if name is not None and name not in providers:
                raise errors.ValidationFailed(
                    f"there is no provider {name!r} (configured: {', '.join(sorted(providers))})",
                    code="UNKNOWN_PROVIDER",
                    errors=[{"path": path, "message": f"no provider {name!r}"}],
                )
        tools = fields.get("tools")
        if isinstance(tools, list):
            for i, name in enumerate(tools):
                if self.service.tools.get(name) is None:
                    raise errors.ValidationFailed(
                        f"there is no enabled tool {name!r}",
                        code="UNKNOWN_TOOL",
                        errors=[{"path": f"/tools/{i}", "message": f"no enabled tool {name!r}"}],
                    )

    def _editable(self, identity: Identity, char_id: str) -> Character:
        char = self.charset.get(identity, char_id)
        if char.scope == "private":
            return char  # visible to the caller: so it is theirs
        if not identity.is_admin:
            raise errors.Forbidden(
                f"only admins change {char.scope} characters", code="ADMIN_REQUIRED"
            )
        return char

    async def _changed(self, version: int) -> None:
        await self.charset.reload()
        await self.service.publisher.publish(CHARACTERS_CHANGED, {"version": version})

    # ---- CRUD -----------------------------------------------------------------------
    async def create(self, identity: Identity, body: dict[str, Any]) -> dict[str, Any]:
        await self.charset.fresh()
        fields = {k: v for k, v in body.items() if k != "scope" and v is not None}
        scope = body.get("scope") or "private"
        if scope == "global" and not identity.is_admin:
            raise errors.Forbidden("only admins make global characters", code="ADMIN_REQUIRED")
        owner = identity.user_id
        if scope == "private":
            limit = int(self.service.config.get("characters_per_user", 100))
            mine = sum(
                1
                for c in self.charset.active.values()
                if c.scope == "private" and c.owner_id == owner
            )
            if mine >= limit:
                raise errors.Conflict(
                    f"you have {mine} characters, the most one user may keep ({limit}); "
                    "delete one first",
                    code="CHARACTER_LIMIT",
                )
        fields.setdefault("provider", self.service.default_provider)
        self._check_refs(fields)
        self.charset.check_names(
            None, fields["name"], fields.get("aliases") or [], scope=scope, owner_id=owner
        )
        char_id = new_character_id(fields["name"])
        build_character(char_id, fields, self.service.default_provider, scope)  # shape check
        version = await self.charset.store.save(
            char_id, scope=scope, owner_id=owner, data=fields, create=True
        )
        await self._changed(version)
        return self.service.public(self.charset.active[char_id])

    async def get(self, identity: Identity, char_id: str) -> dict[str, Any]:
        await self.charset.fresh()
        return self.service.public(self.charset.get(identity, char_id))

    async def update(
        self, identity: Identity, char_id: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        await self.charset.fresh()
        char = self._editable(identity, char_id)
        fields = char.fields()
        for key, value in patch.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        self._check_refs({k: v for k, v in patch.items() if k in ("provider", "fallback", "tools")})
        self.charset.check_names(
            char.id,
            fields["name"],
            fields.get("aliases") or [],
            scope=char.scope,
            owner_id=char.owner_id,
        )
        build_character(char.id, fields, self.service.default_provider, char.scope)
        version = await self.charset.store.save(
            char.id, scope=char.scope, owner_id=char.owner_id, data=fields
        )
        await self._changed(version)
        return self.service.public(self.charset.active[char.id])

    async def delete(self, identity: Identity, char_id: str) -> None:
        await self.charset.fresh()
        char = self._editable(identity, char_id)
        # kept as a deleted row: past messages still show the character's name
        version = await self.charset.store.save(
            char.id, scope=char.scope, owner_id=char.owner_id, data=char.fields(), deleted=True
        )
        await self._changed(version)

    async def erase_user(self, user_id: str) -> None:
        version = await self.charset.store.erase_owner(user_id)
        await self._changed(version)

    # ---- avatars --------------------------------------------------------------------
    async def put_avatar(self, identity: Identity, char_id: str, data: bytes) -> None:
        await self.charset.fresh()
        char = self._editable(identity, char_id)
        content_type = check_image(data)
        if char.scope == "system" and char.avatar_version is None:
            # a system character gets its row (an override equal to plugins.toml) first
            await self.charset.store.save(
                char.id, scope="system", owner_id=None, data=char.fields()
            )
        version = await self.charset.store.set_avatar(char.id, content_type, data)
        await self._changed(version)

    async def avatar(self, identity: Identity | None, char_id: str) -> tuple[Character, str, bytes]:
        await self.charset.fresh()
        char = self.charset.get(identity, char_id)
        found = await self.charset.store.avatar(char.id) if char.avatar_version else None
        if found is None:
            raise errors.NotFound("this character has no avatar", code="AVATAR_NOT_FOUND")
        return char, found[0], found[1]

    # ---- Character Card V2 ----------------------------------------------------------
    async def import_card(
        self, identity: Identity, raw: bytes | dict[str, Any], scope: str = "private"
    ) -> dict[str, Any]:
        card, image = parse_card(raw)
        fields = character_from_card(card, self.service.default_provider)
        created = await self.create(identity, {**fields, "scope": scope})
        if image is not None:
            try:
                await self.put_avatar(identity, created["id"], image)
            except errors.Problem:
                pass  # a card whose picture we cannot take still makes its character
            created = await self.get(identity, created["id"])
        return created

    async def export_card(self, identity: Identity, char_id: str) -> dict[str, Any]:
        await self.charset.fresh()
        return card_from_character(self.charset.get(identity, char_id))

    async def export_card_png(self, identity: Identity, char_id: str) -> tuple[str, bytes]:
        """The card in a PNG's ``chara`` chunk (the avatar, when it is a PNG)."""
        await self.charset.fresh()
        char = self.charset.get(identity, char_id)
        found = await self.charset.store.avatar(char.id) if char.avatar_version else None
        image = found[1] if found is not None and found[0] == "image/png" else None
        return char.name, card_png(image, card_from_character(char))
