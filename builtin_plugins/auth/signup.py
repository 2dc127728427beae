"""A new account: the checks its username and email pass, and the row it becomes."""

from __future__ import annotations

import re
import time
import unicodedata
import uuid

from sdk import errors

from . import passwords
from .store import AuthStore, DuplicateUser, UserRow

# Checked on the NFKC form (so the NFD spelling of an é is one letter). Local part: no
# spaces, quotes or <>()[]\\,;: (no quoted local parts); domain: dot-separated labels of
# letters, digits and inner hyphens (Unicode letters allowed), a last label of 2+ letters
# (or a punycode one).
_LABEL = r"[^\W_](?:[^\W_]|-){0,61}(?<!-)"
EMAIL_RE = re.compile(
    r'^[^@\s<>()\[\]\\,;:"]{1,64}@(?:' + _LABEL + r"\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})$",
    re.IGNORECASE,
)
# Control, format (zero-width space and joiners, BOM, soft hyphen...), private-use,
# unassigned and separator characters: invisible or ambiguous in an address.
_INVISIBLE = ("Cc", "Cf", "Co", "Cn", "Cs", "Zs", "Zl", "Zp")
# Scripts that are written together: a Japanese or Korean name mixes these.
_TOGETHER = ({"CJK", "HIRAGANA", "KATAKANA"}, {"CJK", "HANGUL"})


def check_email(email: str) -> str:
    email = email.strip()
    folded = unicodedata.normalize("NFKC", email)
    if (
        len(email) > 254
        or not EMAIL_RE.match(folded)
        or any(unicodedata.category(c) in _INVISIBLE for c in folded)
    ):
        raise errors.ValidationFailed(
            "The email address is not valid.",
            code="INVALID_EMAIL",
            errors=[{"path": "/email", "message": "not a valid email address"}],
        )
    return email


def scripts_of(name: str) -> set[str]:
    """The scripts of a name's letters (the first word of each letter's Unicode name:
    LATIN, CYRILLIC, GREEK, CJK...), after NFKC (fullwidth letters are Latin)."""
    found = set()
    for c in unicodedata.normalize("NFKC", name):
        if unicodedata.category(c).startswith("L"):
            found.add(unicodedata.name(c, "UNKNOWN").split(" ", 1)[0])
    return found


def check_username(username: str) -> str:
    """One script per name: ``lкf1ade1`` (a Cyrillic к among Latin letters) would look
    like ``lkf1ade1`` to every reader, so names mixing scripts are refused."""
    scripts = scripts_of(username)
    if len(scripts) > 1 and not any(scripts <= group for group in _TOGETHER):
        raise errors.ValidationFailed(
            "The username mixes letters of several scripts ("
            + ", ".join(sorted(s.title() for s in scripts))
            + "); use letters of one script.",
            code="INVALID_USERNAME",
            errors=[{"path": "/username", "message": "letters of one script"}],
        )
    return username


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
    check_username(username)
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
