"""How long a connection may trust the identity that opened it.

A request is authenticated once and is over in seconds; a WebSocket (or any long-lived
stream) outlives that moment. It must end when what authenticated it ends: the access
token's expiry, or a revocation the auth plugin announces on the bus (logout of that
login, a password change or reset, disabling, deletion, an API key revoked). These
helpers read both from an :class:`~sdk.identity.Identity` and the bus events, so every
transport applies the same rule (see docs/security.md).
"""

from __future__ import annotations

from typing import Any

from .events import TOKENS_REVOKED, USER_CHANGED, USER_DELETED
from .identity import Identity

# The bus topics that may end an authenticated connection.
TOPICS = (TOKENS_REVOKED, USER_CHANGED, USER_DELETED)


def expires_at(identity: Identity) -> float | None:
    """UNIX time the identity's credential expires (a JWT's ``exp``), or None."""
    exp = identity.claims.get("exp") if identity.claims else None
    return float(exp) if isinstance(exp, (int, float)) else None


def ended_by(identity: Identity, topic: str, data: dict[str, Any]) -> str | None:
    """Why this bus event ends connections authenticated by ``identity`` (a short reason
    for the close frame), or None when it does not concern them."""
    if data.get("user_id") != identity.user_id:
        return None
    if topic == USER_DELETED:
        return "account deleted"
    if topic == USER_CHANGED:
        return "account disabled" if data.get("disabled") else None
    if topic != TOKENS_REVOKED:
        return None
    reason = str(data.get("reason") or "credentials revoked").replace("_", " ")
    if identity.scheme == "api_key":
        if data.get("api_keys") or identity.credential_id in (data.get("api_key_ids") or ()):
            return reason
        return None
    claims = identity.claims or {}
    family = claims.get("fam")
    if family and data.get("family_id") == family:
        return reason
    issued_before = data.get("issued_before")
    issued_at = claims.get("iat")
    if (
        isinstance(issued_before, (int, float))
        and isinstance(issued_at, (int, float))
        and issued_at < issued_before
        and family != data.get("keep_family")
    ):
        return reason
    return None
