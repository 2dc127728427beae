"""Administration: finding and listing accounts, roles, disabling, deletion, reset tokens
issued by an admin, and the command line's ``create-admin`` and ``--set`` password."""

from __future__ import annotations

import asyncio
import time

from sdk import EventBus, Identity, errors, events

from . import passwords
from .apikeys import login_required
from .auditlog import Recorder
from .checks import TokenChecks
from .resets import Resets
from .settings import Settings
from .signup import create_user
from .store import AuthStore, LastAdmin, UserRow

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


class Administration:
    def __init__(
        self,
        store: AuthStore,
        checks: TokenChecks,
        resets: Resets,
        bus: EventBus,
        audit: Recorder,
        settings: Settings,
    ) -> None:
        self.store = store
        self.checks = checks
        self.resets = resets
        self.bus = bus
        self.audit = audit
        self.settings = settings
        # Role and disabled changes and deletions: the last-admin check and the write
        # happen under this lock as well as in one transaction (see AuthStore.update_user).
        self._admin_lock = asyncio.Lock()

    async def list_users(self, q: str, limit: int, offset: int) -> tuple[list[UserRow], int]:
        return await self.store.search_users(q.strip(), limit, offset)

    async def get_user(self, user_id: str) -> UserRow:
        user = await self.store.user_by_id(user_id)
        if user is None:
            raise errors.NotFound("No such user.", code="USER_NOT_FOUND")
        return user

    async def find_user(self, ref: str) -> UserRow | None:
        """A user by email, user_id or username (the command line's USER argument)."""
        ref = ref.strip()
        if "@" in ref:
            return await self.store.user_by_email(ref)
        return await self.store.user_by_id(ref) or await self.store.user_by_username(ref)

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
                await self.checks.revoke(
                    "disabled", user_id, issued_before=now, api_keys=True, api_key_ids=key_ids
                )
            elif set(before.roles) - set(new_roles):
                await self.checks.revoke("role_removed", user_id, issued_before=now)
        await self.checks.user_changed(user_id)
        await self.bus.publish(
            events.USER_CHANGED,
            {"user_id": user_id, "roles": list(new_roles), "disabled": new_disabled},
        )
        if new_roles != before.roles:
            await self.audit(
                "user.roles",
                user_id=user_id,
                actor=actor,
                ip=ip,
                before=list(before.roles),
                after=list(new_roles),
            )
        if new_disabled != before.disabled:
            kind = "user.disabled" if new_disabled else "user.enabled"
            await self.audit(kind, user_id=user_id, actor=actor, ip=ip)
        return after

    async def delete_user(self, identity: Identity, user_id: str, ip: str | None = None) -> None:
        """Admins delete anyone, users themselves; never the last enabled admin. One's own
        account is not deleted with an API key (an admin's key may delete others, as it
        may administer them)."""
        if identity.scheme == "api_key" and user_id == identity.user_id:
            raise login_required("Deleting your own account")
        if user_id != identity.user_id and not identity.is_admin:
            raise errors.Forbidden("You may only delete your own account.", code="FORBIDDEN")
        async with self._admin_lock:
            if await self.store.user_by_id(user_id) is None:
                raise errors.NotFound("No such user.", code="USER_NOT_FOUND")
            if await self.store.is_last_admin(user_id):
                raise last_admin()
            # Revoke first: no request may slip through between the delete and the revocation.
            await self.checks.revoke(
                "deleted", user_id, issued_before=time.time(), forever=True, api_keys=True
            )
            await self.store.delete_user(user_id)
        await self.checks.user_changed(user_id)  # again: drops what was read during the delete
        await self.bus.publish(events.USER_DELETED, {"user_id": user_id})
        await self.audit("user.deleted", user_id=user_id, actor=identity, ip=ip)

    async def admin_reset(
        self, actor: Identity | None, user_id: str, ip: str | None = None
    ) -> tuple[str, float]:
        user = await self.get_user(user_id)
        token, expires = await self.resets.issue_reset(user, "admin")
        await self.audit("password.reset_issued", user_id=user_id, actor=actor, ip=ip)
        return token, expires

    async def set_password(self, user_id: str, new: str) -> None:
        """The command line's ``users reset-password --set``: ends every login."""
        passwords.check_policy(new)
        user = await self.get_user(user_id)
        await self.resets.set_password_everywhere(user, new, "password_reset")
        await self.audit("password.reset", user_id=user_id, via="cli")

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
        user = await create_user(
            self.store, self.settings.bcrypt_rounds, username, email, password, ("user", "admin")
        )
        await self.audit("user.created", user_id=user.user_id, via="cli", roles=list(user.roles))
        return user, True
