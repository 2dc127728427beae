"""What the auth endpoints and hooks do, without HTTP: accounts, logins, tokens, API keys."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sdk import EventBus, Identity, audit, errors, events

from . import mailer, passwords
from .cache import BoundedCache
from .lockout import LoginGuard, account_key
from .names import fold
from .revocation import RevocationStore
from .store import ApiKeyRow, AuthStore, DuplicateUser, LastAdmin, UserRow
from .tokens import ACCESS, API_KEY_PREFIX, REFRESH, TokenError, TokenService, new_api_key, sha256

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
LOGIN_FAILED = "The email or password is not correct."
RESET_TOKEN_PREFIX = "rst_"
# How long a user found missing from this store is remembered as missing (an account held
# by another instance's own DuckDB file, see docs/auth.md): its tokens use their own roles.
ABSENT_SECONDS = 5.0
# Forgot-password mails being sent at once; beyond this, requests are answered but dropped.
MAX_PENDING_MAILS = 100


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


def admin_user_json(user: UserRow) -> dict[str, Any]:
    """A user as admins see it: adds ``disabled`` and ``last_login_at``."""
    return {
        **user_json(user),
        "disabled": user.disabled,
        "last_login_at": iso(user.last_login_at),
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


def actor_of(identity: Identity | None) -> str | None:
    return identity.user_id if identity is not None else None


@dataclass(slots=True)
class Settings:
    bcrypt_rounds: int
    allow_registration: bool
    access_seconds: int
    refresh_seconds: int
    reset_seconds: int = 3600
    forgot_interval_seconds: int = 60
    email: mailer.EmailSettings = dataclasses.field(default_factory=mailer.EmailSettings)


class Accounts:
    def __init__(
        self,
        store: AuthStore,
        tokens: TokenService,
        revocations: RevocationStore,
        bus: EventBus,
        settings: Settings,
        guard: LoginGuard,
        logger: logging.Logger,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.revocations = revocations
        self.bus = bus
        self.settings = settings
        self.guard = guard
        self.log = logger
        self._dummy_hash = ""
        # Role and disabled changes: the last-admin check and the write happen under this
        # lock as well as in one transaction (see AuthStore.update_user).
        self._admin_lock = asyncio.Lock()
        self._mails: set[asyncio.Task[None]] = set()
        # Refresh-token rotation is read-check-write; one at a time in this process (the
        # database's conditional update decides between processes).
        self._refresh_lock = asyncio.Lock()
        # Users and API keys read on every request are cached in memory, each with the
        # user's version (see revocation.py) current when it was read. Every change to a
        # user goes through user_changed(), which drops it here and raises the version in
        # Redis; the other instances learn the version on each request's revocation check
        # and drop what is older. Paths that act on the account (refresh, password change,
        # deletion, administration) read the database, never the cache. Role removals and
        # disabling are also revocations, so they do not depend on any cache.
        self._users = BoundedCache(10_000)  # user_id -> (UserRow, version)
        self._keys = BoundedCache(10_000)  # key hash -> (ApiKeyRow, version)
        self._versions = BoundedCache(10_000)  # user_id -> last version seen
        self._absent = BoundedCache(10_000)  # user_id -> monotonic time until which absent

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

    async def _audit(
        self,
        event_type: str,
        *,
        user_id: str | None,
        actor: Identity | None = None,
        ip: str | None = None,
        **detail: Any,
    ) -> None:
        await audit.record(
            self.bus,
            event_type,
            user_id=user_id,
            actor_id=actor_of(actor),
            ip=ip,
            detail=detail,
        )

    async def _revoke(
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

    async def register(
        self, username: str, email: str, password: str, ip: str | None = None
    ) -> dict[str, Any]:
        if not self.settings.allow_registration:
            raise errors.Forbidden(
                "Registration is disabled on this server.", code="REGISTRATION_DISABLED"
            )
        user = await self.create_user(username, email, password)
        await self._audit("user.created", user_id=user.user_id, ip=ip, via="register")
        return await self._new_login(user)

    async def login(self, email: str, password: str, ip: str = "") -> dict[str, Any]:
        passwords.check_length(password)
        email = email.strip()
        account = account_key(fold(email))
        wait = await self.guard.locked_for(account, ip)
        if wait > 0:
            await self._audit("login.locked", user_id=None, ip=ip, email=email[:254])
            raise self._locked(wait)
        user = await self.store.user_by_email(email)
        # Same bcrypt work whether or not the account exists.
        ok = await passwords.verify_password(
            password, user.password_hash if user else self._dummy_hash
        )
        if user is None or not ok:
            lock = await self.guard.failed(account, ip)
            await self._audit(
                "login.failed",
                user_id=user.user_id if user else None,
                ip=ip,
                email=email[:254],
                reason="unknown email" if user is None else "wrong password",
                **({"locked_seconds": lock} if lock else {}),
            )
            raise errors.Unauthorized(LOGIN_FAILED, code="INVALID_CREDENTIALS")
        await self.guard.succeeded(account, ip)
        if user.disabled:
            # Said only to someone who knows the password.
            await self._audit("login.failed", user_id=user.user_id, ip=ip, reason="disabled")
            raise errors.Forbidden("This account is disabled.", code="ACCOUNT_DISABLED")
        now = time.time()
        await self.store.touch_login(user.user_id, now)
        user = dataclasses.replace(user, last_login_at=now)
        await self._audit("login.ok", user_id=user.user_id, ip=ip)
        return await self._new_login(user)

    @staticmethod
    def _locked(seconds: float) -> errors.TooManyRequests:
        return errors.TooManyRequests(
            "Too many failed logins for this account; try again later.",
            code="ACCOUNT_LOCKED",
            retry_after=int(seconds + 0.999),
        )

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
                await self._end_family(row.user_id, row.family_id, "refresh_reuse")
                raise errors.InvalidCredentials(
                    "This refresh token was already used; the login has been ended.",
                    code="REFRESH_TOKEN_REUSED",
                )
            # Read from the store, not the cache: the new access token carries the roles
            # the user has now, whichever instance changed them.
            user = await self.store.user_by_id(row.user_id)
            if user is None or user.disabled:
                raise invalid("The refresh token is not valid.")
            return await self._token_pair(user, row.family_id)

    async def _end_family(self, user_id: str, family_id: str, reason: str) -> None:
        await self.store.revoke_family(family_id)
        await self._revoke(reason, user_id, family_id=family_id)

    async def logout(self, token: str, ip: str | None = None) -> None:
        try:
            # An expired refresh token still names the login to end.
            claims = self.tokens.decode(token, REFRESH, verify_exp=False)
        except TokenError as exc:
            raise invalid(f"The refresh token is not valid: {exc}.") from exc
        row = await self.store.refresh_by_hash(sha256(token))
        if row is None or row.user_id != claims["sub"]:
            raise invalid("The refresh token is not valid.")
        await self._end_family(row.user_id, row.family_id, "logout")
        await self._audit("logout", user_id=row.user_id, ip=ip)

    async def change_password(
        self, identity: Identity, current: str, new: str, ip: str | None = None
    ) -> None:
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
        await self._revoke(
            "password_changed", user.user_id, issued_before=time.time(), keep_family=keep
        )
        await self._audit("password.changed", user_id=user.user_id, actor=identity, ip=ip)

    async def delete_user(self, identity: Identity, user_id: str, ip: str | None = None) -> None:
        if user_id != identity.user_id and not identity.is_admin:
            raise errors.Forbidden("You may only delete your own account.", code="FORBIDDEN")
        async with self._admin_lock:
            if await self.store.user_by_id(user_id) is None:
                raise errors.NotFound("No such user.", code="USER_NOT_FOUND")
            if await self.store.is_last_admin(user_id):
                raise last_admin()
            # Revoke first: no request may slip through between the delete and the revocation.
            await self._revoke(
                "deleted", user_id, issued_before=time.time(), forever=True, api_keys=True
            )
            await self.store.delete_user(user_id)
        await self.user_changed(user_id)  # again: drops what was read during the delete
        await self.bus.publish(events.USER_DELETED, {"user_id": user_id})
        await self._audit("user.deleted", user_id=user_id, actor=identity, ip=ip)

    async def me(self, identity: Identity) -> UserRow:
        user = await self.user(identity.user_id)
        if user is None:
            raise errors.NotFound("The user does not exist.", code="USER_NOT_FOUND")
        return user

    # -- password resets ----------------------------------------------------------------------

    async def issue_reset(self, user: UserRow, origin: str) -> tuple[str, float]:
        """A new one-time reset token for the user (earlier unused ones stop working)."""
        token = RESET_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        expires = now + self.settings.reset_seconds
        await self.store.insert_reset(sha256(token), user.user_id, now, expires, origin)
        return token, expires

    async def reset_password(self, token: str, new: str, ip: str | None = None) -> None:
        passwords.check_policy(new, "/new_password")  # a weak password does not spend the token
        user_id = await self.store.use_reset(sha256(token), time.time())
        user = await self.store.user_by_id(user_id) if user_id else None
        if user is None:
            raise errors.BadRequest(
                "The reset token is not valid: unknown, already used or expired.",
                code="INVALID_RESET_TOKEN",
            )
        await self._set_password_everywhere(user, new, "password_reset")
        await self._audit("password.reset", user_id=user.user_id, ip=ip)

    async def _set_password_everywhere(self, user: UserRow, new: str, reason: str) -> None:
        """A new password that ends every login of the user (reset, set by an admin)."""
        new_hash = await passwords.hash_password(new, self.settings.bcrypt_rounds)
        await self.store.set_password(user.user_id, new_hash)
        await self.store.revoke_user_families(user.user_id, "")
        await self._revoke(reason, user.user_id, issued_before=time.time())
        await self.guard.clear(account_key(fold(user.email)))

    async def forgot_password(self, email: str, ip: str | None = None) -> None:
        """Mail a reset token if the account exists. Everything happens after the answer
        (a background task), so the answer and its timing are the same either way."""
        missing = self.settings.email.missing
        if missing:
            raise errors.ServiceUnavailable(
                f"Password reset by email is not configured on this server ({missing}).",
                code="EMAIL_NOT_CONFIGURED",
            )
        if len(self._mails) >= MAX_PENDING_MAILS:
            self.log.warning("forgot-password: %d mails pending, request dropped", len(self._mails))
            return
        task = asyncio.create_task(self._mail_reset(email.strip(), ip))
        self._mails.add(task)
        task.add_done_callback(self._mails.discard)

    async def _mail_reset(self, email: str, ip: str | None) -> None:
        try:
            user = await self.store.user_by_email(email)
            if user is None or user.disabled:
                await self._audit(
                    "password.reset_requested", user_id=None, ip=ip, email=email[:254], sent=False
                )
                return
            last = await self.store.last_reset_at(user.user_id, "email")
            if last is not None and time.time() - last < self.settings.forgot_interval_seconds:
                # One mail per interval: nobody can flood someone's inbox through us.
                await self._audit(
                    "password.reset_requested", user_id=user.user_id, ip=ip, sent=False
                )
                return
            token, _ = await self.issue_reset(user, "email")
            minutes = self.settings.reset_seconds // 60
            await mailer.send(
                self.settings.email,
                mailer.reset_message(self.settings.email, user.email, token, minutes),
            )
            await self._audit("password.reset_requested", user_id=user.user_id, ip=ip, sent=True)
        except Exception as exc:  # the client already has its 202: log, never raise
            self.log.error("forgot-password: could not send the reset mail: %r", exc)

    async def finish_mails(self) -> None:
        """Let mails being sent finish (stop)."""
        if self._mails:
            await asyncio.wait(set(self._mails), timeout=15)

    # -- administration ---------------------------------------------------------------------

    async def list_users(self, q: str, limit: int, offset: int) -> tuple[list[UserRow], int]:
        return await self.store.search_users(q.strip(), limit, offset)

    async def get_user(self, user_id: str) -> UserRow:
        user = await self.store.user_by_id(user_id)
        if user is None:
            raise errors.NotFound("No such user.", code="USER_NOT_FOUND")
        return user

    async def update_user(
        self,
        actor: Identity | None,
        user_id: str,
        roles: list[str] | None = None,
        disabled: bool | None = None,
        ip: str | None = None,
    ) -> UserRow:
        """Set roles and/or disabled. A removed role or disabling takes effect at once on
        every instance: the user's earlier access tokens are revoked (and, disabling,
        their refresh tokens and API keys are ended)."""
        async with self._admin_lock:
            before = await self.get_user(user_id)
            new_roles = before.roles if roles is None else normalize_roles(roles)
            new_disabled = before.disabled if disabled is None else disabled
            try:
                after = await self.store.update_user(
                    user_id, new_roles, new_disabled, keep_an_admin=True
                )
            except LastAdmin:
                raise last_admin() from None
            if after is None:
                raise errors.NotFound("No such user.", code="USER_NOT_FOUND")
            now = time.time()
            if new_disabled and not before.disabled:
                key_ids = await self.store.end_credentials(user_id)
                await self._revoke(
                    "disabled", user_id, issued_before=now, api_keys=True, api_key_ids=key_ids
                )
            elif set(before.roles) - set(new_roles):
                await self._revoke("role_removed", user_id, issued_before=now)
        await self.user_changed(user_id)
        await self.bus.publish(
            events.USER_CHANGED,
            {"user_id": user_id, "roles": list(new_roles), "disabled": new_disabled},
        )
        if new_roles != before.roles:
            await self._audit(
                "user.roles",
                user_id=user_id,
                actor=actor,
                ip=ip,
                before=list(before.roles),
                after=list(new_roles),
            )
        if new_disabled != before.disabled:
            kind = "user.disabled" if new_disabled else "user.enabled"
            await self._audit(kind, user_id=user_id, actor=actor, ip=ip)
        return after

    async def admin_reset(
        self, actor: Identity | None, user_id: str, ip: str | None = None
    ) -> tuple[str, float]:
        user = await self.get_user(user_id)
        token, expires = await self.issue_reset(user, "admin")
        await self._audit("password.reset_issued", user_id=user_id, actor=actor, ip=ip)
        return token, expires

    async def set_password(self, user_id: str, new: str) -> None:
        """The command line's ``users reset-password --set``: ends every login."""
        passwords.check_policy(new)
        user = await self.get_user(user_id)
        await self._set_password_everywhere(user, new, "password_reset")
        await self._audit("password.reset", user_id=user_id, via="cli")

    async def find_user(self, ref: str) -> UserRow | None:
        """A user by email, user_id or username (the command line's USER argument)."""
        ref = ref.strip()
        if "@" in ref:
            return await self.store.user_by_email(ref)
        return await self.store.user_by_id(ref) or await self.store.user_by_username(ref)

    async def promote_admin(
        self, email: str, username: str, password: str | None
    ) -> tuple[UserRow, bool]:
        """create-admin: promote the account with that email, or create it. Returns (user, created)."""
        user = await self.store.user_by_email(email.strip())
        if user is not None:
            if "admin" not in user.roles or user.disabled:
                roles = normalize_roles([*user.roles, "admin"])
                user = await self.update_user(None, user.user_id, list(roles), False)
            return user, False
        if password is None:
            raise ValueError("a password is needed to create the account")
        user = await self.create_user(username, email, password, ("user", "admin"))
        await self._audit("user.created", user_id=user.user_id, via="cli", roles=list(user.roles))
        return user, True

    # -- API keys ---------------------------------------------------------------------------

    async def create_api_key(
        self, identity: Identity, name: str, expires_in_days: int | None, ip: str | None = None
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
        await self._audit(
            "api_key.created", user_id=row.user_id, actor=identity, ip=ip, key_id=row.key_id
        )
        return {**api_key_json(row), "key": key}

    async def list_api_keys(self, identity: Identity) -> list[dict[str, Any]]:
        return [api_key_json(k) for k in await self.store.api_keys_of(identity.user_id)]

    async def delete_api_key(self, identity: Identity, key_id: str, ip: str | None = None) -> None:
        if not await self.store.delete_api_key(identity.user_id, key_id):
            raise errors.NotFound("No such API key.", code="API_KEY_NOT_FOUND")
        await self._revoke("api_key_revoked", identity.user_id, api_key_ids=[key_id])
        await self._audit(
            "api_key.revoked", user_id=identity.user_id, actor=identity, ip=ip, key_id=key_id
        )

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
        roles = tuple(claims["roles"])
        user = await self._current_user(claims["sub"])
        if user is not None:
            if user.disabled:
                raise invalid("The account is disabled.")
            # A role removed since the token was issued is gone at once; a role granted
            # since comes with the next token (refresh).
            roles = tuple(r for r in roles if r in user.roles)
        return Identity(
            user_id=claims["sub"],
            roles=roles,
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


KNOWN_ROLES = ("user", "admin")


def normalize_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Known roles only, in a fixed order; every account keeps ``user``."""
    unknown = sorted(set(roles) - set(KNOWN_ROLES))
    if unknown:
        raise errors.ValidationFailed(
            f"Unknown role(s): {', '.join(unknown)}; roles are {', '.join(KNOWN_ROLES)}.",
            code="UNKNOWN_ROLE",
            errors=[{"path": "/roles", "message": f"one of {', '.join(KNOWN_ROLES)}"}],
        )
    return tuple(r for r in KNOWN_ROLES if r in roles or r == "user")


def last_admin() -> errors.Conflict:
    return errors.Conflict(
        "This is the last enabled admin: make another admin first.", code="LAST_ADMIN"
    )
