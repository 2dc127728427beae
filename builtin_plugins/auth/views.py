"""What the auth routes answer: users, admins' view of users, API keys, timestamps."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from .store import ApiKeyRow, UserRow


@functools.lru_cache(maxsize=4096)
def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC ending in ``Z`` (None stays None). Remembered: ``/me`` formats the same
    ``created_at`` on every request, and formatting costs more than the lookup."""
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
