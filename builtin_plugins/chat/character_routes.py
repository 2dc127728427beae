"""HTTP handlers of ``/api/v1/chat/characters``: CRUD, avatars, Character Card import and
export."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from aiohttp import web

from sdk import Request, Response, Route, errors

from .character_api import CharacterAPI
from .character_set import CHARACTER_FIELDS, CREATE_SCHEMA, PATCH_SCHEMA
from .images import MAX_AVATAR_BYTES, check_image

PREFIX = "/api/v1/chat/characters"
TAGS = ["characters"]
YEAR = 365 * 24 * 3600
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")

CHARACTER = {
    "type": "object",
    "required": ["id", "name", "description", "provider", "model", "scope"],
    "properties": {
        **CHARACTER_FIELDS,
        "id": {"type": "string"},
        "model": {"type": ["string", "null"]},
        "avatar_url": {
            "type": ["string", "null"],
            "description": "changes with each new picture, so it may be cached for a year",
        },
        "scope": {"enum": ["system", "global", "private"]},
        "owner_id": {"type": ["string", "null"]},
    },
}

IMAGE_BODY = {
    "type": "object",
    "required": ["image"],
    "additionalProperties": False,
    "properties": {
        "image": {
            "type": "string",
            "minLength": 1,
            "description": "the picture, base64 (or a data: URL)",
        }
    },
}


def decode_base64(text: str, path: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise errors.ValidationFailed(
            f"{path[1:]} is not base64", errors=[{"path": path, "message": "not base64"}]
        ) from None


async def raw_body(req: Request, limit: int) -> bytes | None:
    """The request's bytes when the kernel left the body unread (a non-JSON upload)."""
    if req.body is not None or not req.raw.body_exists or req.raw.content.at_eof():
        return None
    data = bytearray()
    async for chunk in req.raw.content.iter_chunked(65536):
        data.extend(chunk)
        if len(data) > limit:
            raise errors.PayloadTooLarge(f"the body is over {limit} bytes")
    return bytes(data)


class CharacterRoutes:
    def __init__(self, api: CharacterAPI) -> None:
        self.api = api

    async def create(self, req: Request) -> Any:
        return Response(await self.api.create(req.require_identity(), req.body), status=201)

    async def get(self, req: Request) -> Any:
        return await self.api.get(req.require_identity(), req.match_info["character_id"])

    async def update(self, req: Request) -> Any:
        return await self.api.update(
            req.require_identity(), req.match_info["character_id"], req.body
        )

    async def delete(self, req: Request) -> Any:
        await self.api.delete(req.require_identity(), req.match_info["character_id"])
        return Response(None, status=204)

    async def put_avatar(self, req: Request) -> Any:
        identity = req.require_identity()
        data = await raw_body(req, MAX_AVATAR_BYTES)
        if data is None:
            body = req.body if isinstance(req.body, dict) else {}
            if not isinstance(body.get("image"), str):
                raise errors.ValidationFailed(
                    'send {"image": "<base64 PNG, JPEG or WebP>"}',
                    errors=[{"path": "/image", "message": "required"}],
                )
            data = decode_base64(body["image"], "/image")
        await asyncio.to_thread(check_image, data)  # inflating a PNG takes a while
        await self.api.put_avatar(identity, req.match_info["character_id"], data)
        return Response(None, status=204)

    async def get_avatar(self, req: Request) -> web.StreamResponse:
        char, content_type, data = await self.api.avatar(
            req.identity, req.match_info["character_id"]
        )
        current = req.query.get("v") == char.avatar_version
        shared = "public" if char.scope != "private" else "private"
        return web.Response(
            body=data,
            content_type=content_type,
            headers={
                "Cache-Control": f"{shared}, max-age={YEAR}, immutable" if current else "no-cache",
                "ETag": f'"{char.avatar_version}"',
                **req.response_headers,
            },
        )

    async def import_card(self, req: Request) -> Any:
        identity = req.require_identity()
        data = await raw_body(req, 8 * MAX_AVATAR_BYTES)
        raw: bytes | dict[str, Any]
        if data is not None:
            raw = data
        elif isinstance(req.body, dict) and isinstance(req.body.get("png"), str):
            raw = decode_base64(req.body["png"], "/png")
        elif isinstance(req.body, dict):
            raw = req.body
        else:
            raise errors.ValidationFailed(
                'send a Character Card V2 (JSON) or {"png": "<base64 PNG card>"}',
                code="INVALID_CARD",
                errors=[{"path": "/", "message": "a card object"}],
            )
        scope = req.params.get("scope") or "private"
        return Response(await self.api.import_card(identity, raw, scope), status=201)

    async def card(self, req: Request) -> Any:
        identity = req.require_identity()
        char_id = req.match_info["character_id"]
        if req.params.get("format") == "png":
            name, data = await self.api.export_card_png(identity, char_id)
            stem = "".join(c for c in name if c.isalnum() or c in " -_").strip() or "character"
            return web.Response(
                body=data,
                content_type="image/png",
                headers={
                    "Content-Disposition": f'attachment; filename="{stem}.png"',
                    **req.response_headers,
                },
            )
        return await self.api.export_card(identity, char_id)


def character_routes(api: CharacterAPI) -> list[Route]:
    h = CharacterRoutes(api)
    item = f"{PREFIX}/{{character_id}}"
    not_found = {404: "No such character (or another user's private one)"}
    admin_only = {403: "Global and system characters: admins only"}
    return [
        Route(
            "POST",
            PREFIX,
            h.create,
            request_schema=CREATE_SCHEMA,
            response_schema=CHARACTER,
            status=201,
            summary="Make a character (private; an admin may make a global one)",
            description="Names and aliases must be unique among the characters the owner "
            "(for a global one: everyone) can see (409 CHARACTER_NAME_TAKEN); `provider` "
            "must be configured (422 UNKNOWN_PROVIDER), `tools` enabled (422 UNKNOWN_TOOL).",
            tags=TAGS,
            operation_id="chat_character_create",
            responses={409: "A name or alias is taken", **admin_only},
        ),
        Route(
            "GET",
            item,
            h.get,
            response_schema=CHARACTER,
            summary="One character",
            tags=TAGS,
            operation_id="chat_character_get",
            responses=not_found,
        ),
        Route(
            "PATCH",
            item,
            h.update,
            request_schema=PATCH_SCHEMA,
            response_schema=CHARACTER,
            summary="Change a character (owners their own; admins global and system ones)",
            description="A change to a system character is stored as an override of its "
            "table in plugins.toml. `null` clears model, temperature or max_tokens.",
            tags=TAGS,
            operation_id="chat_character_update",
            responses={**not_found, **admin_only, 409: "A name or alias is taken"},
        ),
        Route(
            "DELETE",
            item,
            h.delete,
            status=204,
            summary="Delete a character (its past messages stay, under its name)",
            tags=TAGS,
            operation_id="chat_character_delete",
            responses={**not_found, **admin_only},
        ),
        Route(
            "PUT",
            f"{item}/avatar",
            h.put_avatar,
            request_schema=IMAGE_BODY,
            raw_content_types=IMAGE_TYPES,
            status=204,
            summary="Set a character's picture (PNG, JPEG or WebP, at most 1 MiB)",
            description="Body: the picture itself (`Content-Type: image/png`, `image/jpeg` "
            'or `image/webp`), or JSON `{"image": "<base64>"}` (a `data:` URL works too). The '
            "picture is decoded to check it is one (422 NOT_AN_IMAGE otherwise). The "
            "character's `avatar_url` changes.",
            tags=TAGS,
            operation_id="chat_character_avatar_put",
            responses={**not_found, **admin_only, 413: "Over 1 MiB", 422: "Not an image"},
        ),
        Route(
            "GET",
            f"{item}/avatar",
            h.get_avatar,
            auth="public",
            summary="A character's picture",
            description="Cached for a year when asked for by its `avatar_url` (which "
            "changes with the picture). A private character's picture needs its owner's "
            "credentials.",
            tags=TAGS,
            operation_id="chat_character_avatar_get",
            response_content_type="image/png",
            responses=not_found,
        ),
        Route(
            "POST",
            f"{PREFIX}/import",
            h.import_card,
            raw_content_types=("image/png",),
            request_schema={
                "type": "object",
                "description": 'a Character Card V2, or {"png": "<base64 PNG card>"}',
            },
            query_schema={
                "type": "object",
                "properties": {"scope": {"enum": ["private", "global"], "default": "private"}},
            },
            status=201,
            response_schema=CHARACTER,
            summary="Make a character from a Character Card V2 (JSON, or a PNG card)",
            description='Body: the card JSON (`{"spec": "chara_card_v2", "data": {...}}`) '
            'or `{"png": "<base64 of a PNG with a chara text chunk>"}` (its picture becomes '
            "the avatar). A malformed card is 422 INVALID_CARD.",
            tags=TAGS,
            operation_id="chat_character_import",
            responses={409: "A name or alias is taken", 422: "Malformed card", **admin_only},
        ),
        Route(
            "GET",
            f"{item}/card",
            h.card,
            query_schema={
                "type": "object",
                "properties": {"format": {"enum": ["json", "png"], "default": "json"}},
            },
            summary="A character as a Character Card V2 (JSON, or a PNG card)",
            description="`format=png`: the card in the `chara` text chunk of the character's "
            "picture (a grey square when it has no PNG picture), as SillyTavern reads it.",
            tags=TAGS,
            operation_id="chat_character_card",
            responses=not_found,
        ),
    ]
