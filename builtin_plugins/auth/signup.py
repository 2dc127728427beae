"""A new account: the checks its email passes, and the row it becomes."""

from __future__ import annotations

import re
import time
import uuid

from sdk import errors

from . import passwords
from .store import AuthStore, DuplicateUser, UserRow

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")


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
    store: AuthStore,
    bcrypt_rounds: int,
    username: str,
    email: str,
    password: str,
    roles: tuple[str, ...] = ("user",),
) -> UserRow:
    """Check the email and password, hash the password and store the account (409 when
    the email or username is taken)."""
    email = check_email(email)
    passwords.check_policy(password)
    password_hash = await passwords.hash_password(password, bcrypt_rounds)
    user = UserRow(str(uuid.uuid4()), username, email, roles, time.time(), password_hash)
    try:
        await store.insert_user(
            user.user_id, username, email, password_hash, roles, user.created_at
        )
    except DuplicateUser as exc:
        raise errors.Conflict(f"That {exc.field} is already taken.", code="USER_EXISTS") from exc
    return user
