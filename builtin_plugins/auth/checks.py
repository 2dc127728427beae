"""Who a request is: access tokens and API keys checked against revocations, with the
users and API keys read on every request kept in memory.

Every change to an account goes through :meth:`TokenChecks.user_changed` (or
:meth:`TokenChecks.revoke`, which also refuses tokens), which drops what this process
cached of the user and raises the user's version (see revocation.py) on every instance.
"""

from __future__ import annotations

import time

from sdk import EventBus, Identity, errors, events

from .cache import BoundedCache
from .revocation import RevocationStore
from .store import ApiKeyRow, AuthStore, UserRow
from .tokens import ACCESS, API_KEY_PREFIX, TokenError, TokenService, sha256

# How long a user found missing from this store is remembered as missing (an account held
# by another instance's own DuckDB file, see docs/auth.md): its tokens use their own roles.
ABSENT_SECONDS = 5.0
CACHE_SIZE = 10_000


def invalid(detail: str = "The token is not valid.") -> errors.InvalidCredentials:
    return errors.InvalidCredentials(detail)


class TokenChecks:
    def __init__(
        self,
        store: AuthStore,
        tokens: TokenService,
        revocations: RevocationStore,
        bus: EventBus,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.revocations = revocations
        self.bus = bus
        # Users and API keys read on every request are cached in memory, each with the
        # user's version (see revocation.py) current when it was read. Every change to a
        # user goes through user_changed(), which drops it here and raises the version on
        # every instance; each instance drops what it read at an older version. Paths that
        # act on the account (refresh, password change, deletion, administration) read the
        # database, never the cache. Role removals and disabling are also revocations, so
        # they do not depend on any cache.
        self._users = BoundedCache(CACHE_SIZE)  # user_id -> (UserRow, version)
        self._keys = BoundedCache(CACHE_SIZE)  # key hash -> (ApiKeyRow, version)
        self._versions = BoundedCache(CACHE_SIZE)  # user_id -> last version seen
        self._absent = BoundedCache(CACHE_SIZE)  # user_id -> monotonic time until absent
        self._identities = BoundedCache(CACHE_SIZE)  # access token -> (UserRow, Identity)

    # -- the cached users -------------------------------------------------------------------

    async def user(self, user_id: str) -> UserRow | None:
        """The user as of this request's authentication (cached)."""
        entry = self._users.get(user_id)
        if entry is not None:
            return entry[0]  # type: ignore[no-any-return]
        version = self._versions.get(user_id)  # read before the database: never newer
        user = await self.store.user_by_id(user_id)
        if user is not None:
            self._users.put(user_id, (user, version))
        return user

    async def _current_user(self, user_id: str) -> UserRow | None:
        """The cached row for authentication; None (remembered briefly) when this store
        does not hold the user."""
        until = self._absent.get(user_id)
        if until is not None and until > time.monotonic():
            return None
        user = await self.user(user_id)
        if user is None:
            self._absent.put(user_id, time.monotonic() + ABSENT_SECONDS)
        return user

    def forget_user(self, user_id: str) -> None:
        """Drop what this process cached of the user (user_changed() for a change)."""
        self._users.pop(user_id, None)
        self._absent.pop(user_id, None)
        for key_hash in [h for h, (k, _) in self._keys.items() if k.user_id == user_id]:
            self._keys.pop(key_hash, None)

    async def user_changed(self, user_id: str) -> None:
        """The account changed (password, roles, state, API keys, deletion): every
        instance stops using what it cached of it before this returns."""
        self.forget_user(user_id)
        await self.revocations.user_changed(user_id)

    def _saw_version(self, user_id: str, version: str | None) -> None:
        if version is None:
            return  # unknown (one instance, or Redis away)
        if self._versions.get(user_id) != version:
            self._versions.put(user_id, version)
            entry = self._users.get(user_id)
            if entry is not None and entry[1] != version:
                self.forget_user(user_id)

    # -- revoking ---------------------------------------------------------------------------

    async def revoke(
        self,
        reason: str,
        user_id: str,
        *,
        family_id: str = "",
        issued_before: float | None = None,
        forever: bool = False,
        keep_family: str = "",
        api_keys: bool = False,
        api_key_ids: list[str] | None = None,
    ) -> None:
        """Refuse tokens at once on every instance (revocation list) and tell every
        listener which ones (the chat WebSocket closes the sockets they authenticated).
        ``family_id``: one login; ``issued_before``: the user's tokens issued before then
        (``forever``: and after, for a deleted user), except login ``keep_family``."""
        if family_id:
            await self.revocations.revoke_family(family_id)
        if issued_before is not None:
            after = float("inf") if forever else issued_before
            await self.revocations.revoke_user(user_id, after, keep_family)
        await self.user_changed(user_id)
        await self.bus.publish(
            events.TOKENS_REVOKED,
            {
                "user_id": user_id,
                "family_id": family_id or None,
                "issued_before": issued_before,
                "keep_family": keep_family,
                "api_keys": api_keys,
                "api_key_ids": list(api_key_ids or ()),
                "reason": reason,
            },
        )

    # -- authentication ---------------------------------------------------------------------

    async def authenticate(self, token: str) -> Identity:
        if token.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(token)
        try:
            claims = self.tokens.decode(token, ACCESS)
        except TokenError as exc:
            raise invalid(f"The access token is not valid: {exc}.") from exc
        user_id = claims["sub"]
        # Answered in memory on every request but the first ones after a (re)start of the
        # Redis subscription (see revocation.py).
        result = self.revocations.check_here(user_id, claims["fam"], claims["iat"])
        if result is None:
            result = await self.revocations.check(user_id, claims["fam"], claims["iat"])
        revoked, version = result
        if revoked:
            raise invalid("The access token has been revoked.")
        self._saw_version(user_id, version)
        entry = self._users.get(user_id)
        user = entry[0] if entry is not None else await self._current_user(user_id)
        known = self._identities.get(token)
        if known is not None and known[0] is user:
            return known[1]  # type: ignore[no-any-return]
        roles = tuple(claims["roles"])
        if user is not None and any(r not in user.roles for r in roles):
            # Read the user again (what was cached may be older than the token); a role
            # removed since the token was issued ends the token, as its revocation does
            # (a request between the change and its revocation meets the same answer).
            # A role granted since comes with the next token (refresh).
            self.forget_user(user_id)
            user = await self._current_user(user_id)
            if user is not None and any(r not in user.roles for r in roles):
                raise invalid("A role of this access token was removed; refresh it.")
        if user is not None and user.disabled:
            raise invalid("The account is disabled.")
        identity = Identity(
            user_id=user_id,
            roles=roles,
            username=str(claims.get("username", "")),
            scheme="jwt",
            credential_id=claims["jti"],
            claims=claims,
        )
        # The identity made from this token and this very row of the user: a request with
        # the same token, once its revocation is checked, gets it again.
        self._identities.put(token, (user, identity))
        return identity

    async def _authenticate_api_key(self, key: str) -> Identity:
        key_hash = sha256(key)
        entry = self._keys.get(key_hash)
        if entry is not None:
            row: ApiKeyRow = entry[0]
            version = await self.revocations.user_version(row.user_id)
            self._saw_version(row.user_id, version)
            if version is not None and version != entry[1]:
                entry = None  # the user changed since: read the key again
        if entry is None:
            found = await self.store.api_key_owner(key_hash)
            if found is None:
                raise invalid("The API key is not valid.")
            # The version read before this lookup: an older tag only means a re-read.
            version = self._versions.get(found[1].user_id)
            row, owner = found
            self._keys.put(key_hash, (row, version))
            self._users.put(owner.user_id, (owner, version))
        user = await self.user(row.user_id)
        if user is None or user.disabled:
            raise invalid("The API key is not valid.")
        if row.expires_at is not None and row.expires_at <= time.time():
            raise invalid("The API key has expired.")
        return Identity(
            user_id=user.user_id,
            roles=user.roles,
            username=user.username,
            scheme="api_key",
            credential_id=row.key_id,
        )
