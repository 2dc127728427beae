"""The audit log: who did what to which account, when and from where.

Any plugin records an event with::

    from sdk import audit
    await audit.record(self.context.bus, "memory.flushed", user_id=uid, actor_id=admin_id,
                       ip=req.client_ip, detail={"deleted": 12})

The event travels on the bus as topic ``audit.<type>`` (so any plugin may also listen to
``audit.*``); the auth plugin stores every one of them, prunes them after its
``audit_days``, and shows them to admins at ``GET /api/v1/admin/audit``. Types are dotted
lowercase names; the builtin ones are listed in ``docs/auth.md``. A plugin adds its own
simply by using a new name, best prefixed with its own (``memory.flushed``).
"""

from __future__ import annotations

import re
from typing import Any

from .events import EventBus

TOPIC_PREFIX = "audit."
TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
MAX_TYPE_CHARS = 64
_TYPE_RE = re.compile(TYPE_PATTERN)


def check_type(event_type: str) -> str:
    """Return ``event_type`` if it is a valid audit type name, else raise ValueError."""
    if len(event_type) > MAX_TYPE_CHARS or not _TYPE_RE.match(event_type):
        raise ValueError(f"not an audit event type: {event_type!r} (dotted lowercase names)")
    return event_type


async def record(
    bus: EventBus,
    event_type: str,
    *,
    user_id: str | None = None,
    actor_id: str | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Publish one audit event. ``user_id``: the account it is about; ``actor_id``: who did
    it (None: the user themself, the system, or the command line); ``detail``: a small
    JSON object (stored up to 4 KB)."""
    await bus.publish(
        TOPIC_PREFIX + check_type(event_type),
        {
            "type": event_type,
            "user_id": user_id,
            "actor_id": actor_id,
            "ip": ip,
            "detail": dict(detail or {}),
        },
    )
