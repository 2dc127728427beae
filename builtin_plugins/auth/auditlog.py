"""The audit log: :class:`Recorder` sends the auth plugin's events, and :class:`AuditLog`
stores every ``audit.*`` bus event (from any plugin, through ``sdk.audit.record``) as a
row, readable by admins and pruned after ``audit_days``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from sdk import EventBus, Identity, audit, errors
from sdk.events import Event

from .store import AuditRow, AuthStore
from .views import iso

MAX_DETAIL_CHARS = 4096


def _short(value: Any, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


class Recorder:
    """Records one of the auth plugin's audit events (through the bus, like any plugin)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def __call__(
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
            actor_id=actor.user_id if actor is not None else None,
            ip=ip,
            detail=detail,
        )


def event_json(row: AuditRow) -> dict[str, Any]:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {}
    return {
        "event_id": row.event_id,
        "at": iso(row.at),
        "type": row.type,
        "user_id": row.user_id,
        "actor_id": row.actor_id,
        "ip": row.ip,
        "detail": detail,
    }


class AuditLog:
    def __init__(self, store: AuthStore, days: int, logger: logging.Logger) -> None:
        self.store = store
        self.days = days
        self.log = logger

    async def on_event(self, event: Event) -> None:
        data = event.data
        try:
            event_type = audit.check_type(str(data.get("type", "")))
        except ValueError:
            self.log.warning("audit: ignored an event of no valid type from %r", event.source)
            return
        detail = data.get("detail")
        text = json.dumps(detail if isinstance(detail, dict) else {}, default=str)
        if len(text) > MAX_DETAIL_CHARS:
            text = json.dumps({"truncated": True, "chars": len(text)})
        await self.store.insert_audit(
            AuditRow(
                event_id=event.id[:64],
                at=event.timestamp,
                type=event_type,
                user_id=_short(data.get("user_id")),
                actor_id=_short(data.get("actor_id")),
                ip=_short(data.get("ip")),
                detail=text,
            )
        )

    async def events(
        self, user_id: str | None, event_type: str | None, before: str | None, limit: int
    ) -> list[dict[str, Any]]:
        cursor: tuple[float, str] | None = None
        if before:
            cursor = await self._cursor(before)
        rows = await self.store.audit_events(user_id or None, event_type or None, cursor, limit)
        return [event_json(r) for r in rows]

    async def _cursor(self, before: str) -> tuple[float, str]:
        """``before``: the event_id of the last event seen (paging), or an ISO 8601 time."""
        at = await self.store.audit_at(before)
        if at is not None:
            return at, before
        try:
            when = dt.datetime.fromisoformat(before)
        except ValueError:
            raise errors.ValidationFailed(
                "before must be an event_id of the log or an ISO 8601 date-time.",
                errors=[{"path": "/before", "message": "an event_id or a date-time"}],
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp(), ""

    async def prune(self) -> None:
        """Delete the events older than ``audit_days`` (housekeeping.py runs it hourly)."""
        await self.store.prune_audit(time.time() - self.days * 86400)
