"""API keys: made, listed and revoked by their owner."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sdk import Identity, errors

from .auditlog import Recorder
from .checks import TokenChecks
from .store import ApiKeyRow, AuthStore
from .tokens import new_api_key, sha256
from .views import api_key_json


def login_required(what: str) -> errors.Forbidden:
    """What an API key may not do: it stands for its owner's programs, not for the owner."""
    return errors.Forbidden(
        f"{what} needs the token of a login with the password, not an API key.",
        code="LOGIN_REQUIRED",
    )


class ApiKeys:
    def __init__(self, store: AuthStore, checks: TokenChecks, audit: Recorder) -> None:
        self.store = store
        self.checks = checks
        self.audit = audit

    async def create(
        self, identity: Identity, name: str, expires_in_days: int | None, ip: str | None = None
    ) -> dict[str, Any]:
        if identity.scheme == "api_key":
            # a key that made keys would outlive its own revocation through them
            raise login_required("Creating an API key")
        if await self.checks.user(identity.user_id) is None:
            raise errors.NotFound("The user does not exist.", code="USER_NOT_FOUND")
        key = new_api_key()
        now = time.time()
        row = ApiKeyRow(
            str(uuid.uuid4()),
            identity.user_id,
            name,
            now,
            now + expires_in_days * 86400 if expires_in_days else None,
        )
        await self.store.insert_api_key(
            row.key_id, row.user_id, row.name, sha256(key), row.created_at, row.expires_at
        )
        await self.audit(
            "api_key.created", user_id=row.user_id, actor=identity, ip=ip, key_id=row.key_id
        )
        return {**api_key_json(row), "key": key}

    async def list(self, identity: Identity) -> list[dict[str, Any]]:
        return [api_key_json(k) for k in await self.store.api_keys_of(identity.user_id)]

    async def delete(self, identity: Identity, key_id: str, ip: str | None = None) -> None:
        if not await self.store.delete_api_key(identity.user_id, key_id):
            raise errors.NotFound("No such API key.", code="API_KEY_NOT_FOUND")
        await self.checks.revoke("api_key_revoked", identity.user_id, api_key_ids=[key_id])
        await self.audit(
            "api_key.revoked", user_id=identity.user_id, actor=identity, ip=ip, key_id=key_id
        )
