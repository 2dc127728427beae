"""A session as a Markdown document (``GET /api/v1/chat/sessions/{id}/export``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .store import Message, iso, now


def export_markdown(
    session: dict[str, Any], messages: list[Message], name_of: Callable[[str | None], str]
) -> str:
    """Shown messages, oldest first; tool rounds as quoted notes; a stopped or failed
    reply says so."""
    title = session.get("title") or "Conversation"
    lines = [f"# {title}", "", f"*Session {session['session_id']}, exported {iso(now())}*", ""]
    for m in messages:
        when = iso(m.created_at) or ""
        if m.role == "user":
            who = "You"
        elif m.role == "tool":
            lines += [f"> tool `{m.tool_name}` answered for {name_of(m.character)}", ""]
            continue
        else:
            who = name_of(m.character) or "Assistant"
            if m.tool_calls:
                names = ", ".join(str(c.get("function", {}).get("name")) for c in m.tool_calls)
                lines += [f"> {who} called {names}", ""]
                if not m.content:
                    continue
        note = "" if m.status == "complete" else f" ({m.status})"
        lines += [f"**{who}**{note} · {when}", "", m.content or "*(no text)*", ""]
    return "\n".join(lines).rstrip() + "\n"
