"""Logins: register, log in, refresh (rotation with reuse detection), log out, change the
password, and the caller's own account."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

from sdk import Identity, errors

from . import passwords
from .auditlog import Recorder
from .checks import TokenChecks, invalid
from .lockout import LoginGuard, account_key
from .names import fold
from .settings import Settings
from .signup import create_user
from .store import AuthStore, UserRow
from .tokens import REFRESH, TokenError, TokenService, sha256
from .views import user_json

LOGIN_FAILED = "The email or password is not correct."


class Sessions:
    def __init__(
        self,
        store: AuthStore,
        tokens: TokenService,
        checks: TokenChecks,
        guard: LoginGuard,
        audit: Recorder,
        settings: Settings,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.checks = checks
        self.guard = guard
        self.audit = audit
        self.settings = settings
        self._dummy_hash = ""
        # Refresh-token rotation is read-check-write; one at a time in this process (the
        # database's conditional update decides between processes).
        self._refresh_lock = asyncio.Lock()

    async def prepare(self) -> None:
        # A real hash at the configured cost, so a login for an unknown email spends the
        # same bcrypt time as one with a wrong password.
        self._dummy_hash = await passwords.hash_password(
            uuid.uuid4().hex + "Aa1", self.settings.bcrypt_rounds
        )

    async def register(
        self, username: str, email: str, password: str, ip: str | None = None
    ) -> dict[str, Any]:
        if not self.settings.allow_registration:
            raise errors.Forbidden(
                "Registration is disabled on this server.", code="REGISTRATION_DISABLED"
            )
        user = await create_user(self.store, self.settings.bcrypt_rounds, username, email, password)
        await self.audit("user.created", user_id=user.user_id, ip=ip, via="register")
        return await self._token_pair(user, uuid.uuid4().hex)

    async def login(self, email: str, password: str, ip: str = "") -> dict[str, Any]:
        passwords.check_length(password)
        email = email.strip()
        account = account_key(fold(email))
        wait = await self.guard.locked_for(account, ip)
        if wait > 0:
            await self.audit("login.locked", user_id=None, ip=ip, email=email[:254])
            raise errors.TooManyRequests(
                "Too many failed logins for this account; try again later.",
                code="ACCOUNT_LOCKED",
                retry_after=int(wait + 0.999),
            )
        user = await self.store.user_by_email(email)
        # Same bcrypt work whether or not the account exists.
        ok = await passwords.verify_password(
            password, user.password_hash if user else self._dummy_hash
        )
        if user is None or not ok:
            lock = await self.guard.failed(account, ip)
            locked: dict[str, Any] = {"locked_seconds": lock} if lock else {}
            await self.audit(
                "login.failed",
                user_id=user.user_id if user else None,
                ip=ip,
                email=email[:254],
                reason="unknown email" if user is None else "wrong password",
                **locked,
            )
            raise errors.Unauthorized(LOGIN_FAILED, code="INVALID_CREDENTIALS")
        await self.guard.succeeded(account, ip)
        if user.disabled:
            # Said only to someone who knows the password.
            await self.audit("login.failed", user_id=user.user_id, ip=ip, reason="disabled")
            raise errors.Forbidden("This account is disabled.", code="ACCOUNT_DISABLED")
        now = time.time()
        await self.store.touch_login(user.user_id, now)
        user = dataclasses.replace(user, last_login_at=now)
        await self.audit("login.ok", user_id=user.user_id, ip=ip)
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
        await self.checks.revoke(reason, user_id, family_id=family_id)

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
        await self.audit("logout", user_id=row.user_id, ip=ip)

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
        await self.checks.revoke(
            "password_changed", user.user_id, issued_before=time.time(), keep_family=keep
        )
        await self.audit("password.changed", user_id=user.user_id, actor=identity, ip=ip)

    async def me(self, identity: Identity) -> UserRow:
        user = await self.checks.user(identity.user_id)
        if user is None:
            raise errors.NotFound("The user does not exist.", code="USER_NOT_FOUND")
        return user
