"""What the auth endpoints and hooks do, without HTTP: accounts, logins, tokens, API keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sdk import EventBus, Identity, errors, events

from . import passwords
from .cache import BoundedCache
from .revocation import RevocationStore
from .store import ApiKeyRow, AuthStore, DuplicateUser, UserRow
from .tokens import ACCESS, API_KEY_PREFIX, REFRESH, TokenError, TokenService, new_api_key, sha256

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
LOGIN_FAILED = "The email or password is not correct."


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def user_json(user: UserRow) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "username": user.username,
        "email": user.email,
        "roles": list(user.roles),
        "created_at": iso(user.created_at),
    }


def api_key_json(key: ApiKeyRow) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
    }


def invalid(detail: str = "The token is not valid.") -> errors.InvalidCredentials:
    return errors.InvalidCredentials(detail)


@dataclass(slots=True)
class Settings:
    bcrypt_rounds: int
    allow_registration: bool
    access_seconds: int
    refresh_seconds: int


class Accounts:
    def __init__(
        self,
        store: AuthStore,
        tokens: TokenService,
        revocations: RevocationStore,
        bus: EventBus,
        settings: Settings,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.revocations = revocations
        self.bus = bus
        self.settings = settings
        self._dummy_hash = ""
        # Refresh-token rotation is read-check-write; one at a time in this process (the
        # database's conditional update decides between processes).
        self._refresh_lock = asyncio.Lock()
        # Users and API keys read on every request are cached in memory, each with the
        # user's version (see revocation.py) current when it was read. Every change to a
        # user goes through user_changed(), which drops it here and raises the version in
        # Redis; the other instances learn the version on each request's revocation check
        # and drop what is older. Paths that act on the account (refresh, password change,
        # deletion) read the database, never the cache.
        self._users = BoundedCache(10_000)  # user_id -> (UserRow, version)
        self._keys = BoundedCache(10_000)  # key hash -> (ApiKeyRow, version)
        self._versions = BoundedCache(10_000)  # user_id -> last version seen

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

    def forget_user(self, user_id: str) -> None:
        """Drop what this process cached of the user (user_changed() for a change)."""
        self._users.pop(user_id, None)
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

    async def prepare(self) -> None:
        # A real hash at the configured cost, so a login for an unknown email spends the
        # same bcrypt time as one with a wrong password.
        self._dummy_hash = await passwords.hash_password(
            uuid.uuid4().hex + "Aa1", self.settings.bcrypt_rounds
        )

    # -- accounts ---------------------------------------------------------------------------

    @staticmethod
    def check_email(email: str) -> str:
        email = email.strip()
        if len(email) > 254 or not EMAIL_RE.match(email):
            raise errors.ValidationFailed(
                "The email address is not valid.",
                code="INVALID_EMAIL",
                errors=[{"path": "/email", "message": "not a valid email address"}],
            )
        return email

    async def create_user(
        self, username: str, email: str, password: str, roles: tuple[str, ...] = ("user",)
    ) -> UserRow:
        email = self.check_email(email)
        passwords.check_policy(password)
        password_hash = await passwords.hash_password(password, self.settings.bcrypt_rounds)
        user = UserRow(str(uuid.uuid4()), username, email, roles, time.time(), password_hash)
        try:
            await self.store.insert_user(
                user.user_id, username, email, password_hash, roles, user.created_at
            )
        except DuplicateUser as exc:
            raise errors.Conflict(
                f"That {exc.field} is already taken.", code="USER_EXISTS"
            ) from exc
        return user

    async def register(self, username: str, email: str, password: str) -> dict[str, Any]:
        if not self.settings.allow_registration:
            raise errors.Forbidden(
                "Registration is disabled on this server.", code="REGISTRATION_DISABLED"
            )
        user = await self.create_user(username, email, password)
        return await self._new_login(user)

    async def login(self, email: str, password: str) -> dict[str, Any]:
        passwords.check_length(password)
        user = await self.store.user_by_email(email.strip())
        # Same bcrypt work whether or not the account exists.
        ok = await passwords.verify_password(
            password, user.password_hash if user else self._dummy_hash
        )
        if user is None or not ok:
            raise errors.Unauthorized(LOGIN_FAILED, code="INVALID_CREDENTIALS")
        return await self._new_login(user)

    async def _new_login(self, user: UserRow) -> dict[str, Any]:
        return await self._token_pair(user, uuid.uuid4().hex)

    async def _token_pair(self, user: UserRow, family_id: str) -> dict[str, Any]:
        access = self.tokens.issue_access(user.user_id, family_id, user.roles, user.username)
        refresh = self.tokens.issue_refresh(user.user_id, family_id)
        await self.store.insert_refresh(
            sha256(refresh.token),
            family_id,
            user.user_id,
            refresh.claims["iat"],
            refresh.claims["exp"],
        )
        return {
            "access_token": access.token,
            "refresh_token": refresh.token,
            "token_type": "bearer",
            "expires_in": self.settings.access_seconds,
            "user": user_json(user),
        }

    async def refresh(self, token: str) -> dict[str, Any]:
        try:
            claims = self.tokens.decode(token, REFRESH)
        except TokenError as exc:
            raise invalid(f"The refresh token is not valid: {exc}.") from exc
        async with self._refresh_lock:
            row = await self.store.refresh_by_hash(sha256(token))
            if row is None or row.revoked or row.user_id != claims["sub"]:
                raise invalid("The refresh token is not valid.")
            if row.spent_at is not None or not await self.store.spend_refresh(
                row.token_hash, time.time()
            ):
                # Reuse of a rotated token: someone else may hold this login; end it everywhere.
                await self._end_family(row.family_id)
                raise errors.InvalidCredentials(
                    "This refresh token was already used; the login has been ended.",
                    code="REFRESH_TOKEN_REUSED",
                )
            # From the database: the new access token carries the roles of now.
            user = await self.store.user_by_id(row.user_id)
            if user is None:
                raise invalid("The refresh token is not valid.")
            return await self._token_pair(user, row.family_id)

    async def _end_family(self, family_id: str) -> None:
        await self.store.revoke_family(family_id)
        await self.revocations.revoke_family(family_id)

    async def logout(self, token: str) -> None:
        try:
            # An expired refresh token still names the login to end.
            claims = self.tokens.decode(token, REFRESH, verify_exp=False)
        except TokenError as exc:
            raise invalid(f"The refresh token is not valid: {exc}.") from exc
        row = await self.store.refresh_by_hash(sha256(token))
        if row is None or row.user_id != claims["sub"]:
            raise invalid("The refresh token is not valid.")
        await self._end_family(row.family_id)

    async def change_password(self, identity: Identity, current: str, new: str) -> None:
        passwords.check_length(current, "/current_password")
        passwords.check_policy(new, "/new_password")
        user = await self.store.user_by_id(identity.user_id)
        if user is None:
            raise errors.NotFound("The user does not exist.", code="USER_NOT_FOUND")
        if not await passwords.verify_password(current, user.password_hash):
            raise errors.Forbidden("The current password is not correct.", code="WRONG_PASSWORD")
        new_hash = await passwords.hash_password(new, self.settings.bcrypt_rounds)
        await self.store.set_password(user.user_id, new_hash)
        # Every other login of the user ends; the caller's own login (if a JWT) goes on.
        keep = str(identity.claims.get("fam", "")) if identity.scheme == "jwt" else ""
        await self.store.revoke_user_families(user.user_id, keep)
        await self.revocations.revoke_user(user.user_id, time.time(), keep)
        await self.user_changed(user.user_id)

    async def delete_user(self, identity: Identity, user_id: str) -> None:
        if user_id != identity.user_id and not identity.is_admin:
            raise errors.Forbidden("You may only delete your own account.", code="FORBIDDEN")
        if await self.store.user_by_id(user_id) is None:
            raise errors.NotFound("No such user.", code="USER_NOT_FOUND")
        # Revoke first: no request may slip through between the delete and the revocation.
        await self.revocations.revoke_user(user_id, float("inf"))
        await self.store.delete_user(user_id)
        await self.user_changed(user_id)
        await self.bus.publish(events.USER_DELETED, {"user_id": user_id})

    async def me(self, identity: Identity) -> UserRow:
        user = await self.user(identity.user_id)
        if user is None:
            raise errors.NotFound("The user does not exist.", code="USER_NOT_FOUND")
        return user

    async def promote_admin(
        self, email: str, username: str, password: str | None
    ) -> tuple[UserRow, bool]:
        """create-admin: promote the account with that email, or create it. Returns (user, created)."""
        user = await self.store.user_by_email(email.strip())
        if user is not None:
            if "admin" not in user.roles:
                roles = (*user.roles, "admin")
                await self.store.set_roles(user.user_id, roles)
                await self.user_changed(user.user_id)
                user = UserRow(
                    user.user_id,
                    user.username,
                    user.email,
                    roles,
                    user.created_at,
                    user.password_hash,
                )
            return user, False
        if password is None:
            raise ValueError("a password is needed to create the account")
        return await self.create_user(username, email, password, ("user", "admin")), True

    # -- API keys ---------------------------------------------------------------------------

    async def create_api_key(
        self, identity: Identity, name: str, expires_in_days: int | None
    ) -> dict[str, Any]:
        if await self.user(identity.user_id) is None:
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
        return {**api_key_json(row), "key": key}

    async def list_api_keys(self, identity: Identity) -> list[dict[str, Any]]:
        return [api_key_json(k) for k in await self.store.api_keys_of(identity.user_id)]

    async def delete_api_key(self, identity: Identity, key_id: str) -> None:
        if not await self.store.delete_api_key(identity.user_id, key_id):
            raise errors.NotFound("No such API key.", code="API_KEY_NOT_FOUND")
        await self.user_changed(identity.user_id)

    # -- authentication -----------------------------------------------------------------------

    async def authenticate_token(self, token: str) -> Identity:
        if token.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(token)
        try:
            claims = self.tokens.decode(token, ACCESS)
        except TokenError as exc:
            raise invalid(f"The access token is not valid: {exc}.") from exc
        revoked, version = await self.revocations.check(
            claims["sub"], claims["fam"], float(claims["iat"])
        )
        if revoked:
            raise invalid("The access token has been revoked.")
        self._saw_version(claims["sub"], version)
        return Identity(
            user_id=claims["sub"],
            roles=tuple(claims["roles"]),
            username=str(claims.get("username", "")),
            scheme="jwt",
            credential_id=claims["jti"],
            claims=claims,
        )

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
        if user is None:
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
