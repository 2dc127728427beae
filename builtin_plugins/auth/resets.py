"""Password resets: one-time reset tokens (issued by an admin or mailed on request) and
setting a password that ends every login of the user."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from sdk import errors

from . import mailer, passwords
from .auditlog import Recorder
from .checks import TokenChecks
from .lockout import LoginGuard, account_key
from .names import fold
from .settings import Settings
from .store import AuthStore, UserRow
from .tokens import sha256

RESET_TOKEN_PREFIX = "rst_"
# Forgot-password mails being sent at once; beyond this, requests are answered but dropped.
MAX_PENDING_MAILS = 100


class Resets:
    def __init__(
        self,
        store: AuthStore,
        checks: TokenChecks,
        guard: LoginGuard,
        audit: Recorder,
        settings: Settings,
        logger: logging.Logger,
    ) -> None:
        self.store = store
        self.checks = checks
        self.guard = guard
        self.audit = audit
        self.settings = settings
        self.log = logger
        self._mails: set[asyncio.Task[None]] = set()

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
        await self.set_password_everywhere(user, new, "password_reset")
        await self.audit("password.reset", user_id=user.user_id, ip=ip)

    async def set_password_everywhere(self, user: UserRow, new: str, reason: str) -> None:
        """A new password that ends every login of the user (reset, set by an admin)."""
        new_hash = await passwords.hash_password(new, self.settings.bcrypt_rounds)
        await self.store.set_password(user.user_id, new_hash)
        await self.store.revoke_user_families(user.user_id, "")
        await self.checks.revoke(reason, user.user_id, issued_before=time.time())
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
                await self.audit(
                    "password.reset_requested", user_id=None, ip=ip, email=email[:254], sent=False
                )
                return
            last = await self.store.last_reset_at(user.user_id, "email")
            if last is not None and time.time() - last < self.settings.forgot_interval_seconds:
                # One mail per interval: nobody can flood someone's inbox through us.
                await self.audit(
                    "password.reset_requested", user_id=user.user_id, ip=ip, sent=False
                )
                return
            token, _ = await self.issue_reset(user, "email")
            minutes = self.settings.reset_seconds // 60
            await mailer.send(
                self.settings.email,
                mailer.reset_message(self.settings.email, user.email, token, minutes),
            )
            await self.audit("password.reset_requested", user_id=user.user_id, ip=ip, sent=True)
        except Exception as exc:  # the client already has its 202: log, never raise
            self.log.error("forgot-password: could not send the reset mail: %r", exc)

    async def finish_mails(self) -> None:
        """Let mails being sent finish (stop)."""
        if self._mails:
            await asyncio.wait(set(self._mails), timeout=15)
