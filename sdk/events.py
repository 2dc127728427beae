"""Events on the kernel's bus.

Topics are dotted names (``chat.message.created``). Subscribers may use an exact topic,
a prefix wildcard (``chat.*``) or ``*``. Each subscriber runs isolated: one that raises
is logged with its plugin's name and the others still receive the event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Topics the builtin plugins publish; third parties may publish their own.
USER_DELETED = "user.deleted"  # {user_id}
LLM_USAGE = "llm.usage"  # {user_id, prompt_tokens, completion_tokens, provider, model, character}
CHAT_MESSAGE_CREATED = (
    "chat.message.created"  # {user_id, session_id, message_id, role, character, content}
)
SESSION_DELETED = "chat.session.deleted"  # {user_id, session_id}
# The auth plugin: access tokens (and API keys) that stopped working. A WebSocket
# authenticated by JWT claims (sub, fam, iat) must close when family_id == fam, or when
# user_id == sub and (issued_before is None or iat < issued_before) and fam != keep_family;
# one authenticated by an API key when user_id matches and api_keys is true, or its key id
# is in api_key_ids. See docs/auth.md.
TOKENS_REVOKED = "auth.tokens.revoked"  # {user_id, family_id, issued_before, keep_family,
#                                          api_keys, api_key_ids, reason}
USER_CHANGED = "auth.user.changed"  # {user_id, roles, disabled}: after an admin change
PLUGIN_STATE_CHANGED = "kernel.plugin.state"  # {plugin, state, error}: after each start/stop
KERNEL_STARTED = "kernel.started"  # {plugins: {name: state}}: every plugin has had its start


@dataclass(frozen=True, slots=True)
class Event:
    topic: str
    data: dict[str, Any]
    source: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "data": self.data,
            "source": self.source,
            "id": self.id,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(
            topic=str(raw["topic"]),
            data=dict(raw.get("data") or {}),
            source=str(raw.get("source", "")),
            id=str(raw.get("id") or uuid.uuid4().hex),
            timestamp=float(raw.get("timestamp") or time.time()),
        )


EventHandler = Callable[[Event], Awaitable[None]]


class EventBus(Protocol):
    """What a plugin sees of the bus (``self.context.bus``)."""

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Deliver to every subscriber, on this process and (Redis backend) on every other."""

    def subscribe(
        self, topic: str, handler: EventHandler, *, local_only: bool = False
    ) -> Callable[[], None]:
        """Call ``handler`` for each matching event; returns a function that unsubscribes.

        With several server processes (Redis bus) every process receives every event: a
        handler that does work once per event for the whole deployment (stores something,
        calls an upstream) passes ``local_only=True`` and runs only in the process that
        published it; a handler that keeps this process's caches right leaves it False."""
