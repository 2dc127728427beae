"""Tools: functions that characters call through function calling and that clients run
with ``POST /api/v1/plugins/{name}/execute``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .identity import Identity

JSONSchema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """Who is calling a tool, for per-user caching, quotas and audit."""

    identity: Identity | None
    request_id: str = ""
    # "api" (execute route) or "llm" (a character's function call)
    origin: str = "api"


ToolHandler = Callable[[dict[str, Any], ToolCall], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class Tool:
    """A tool a plugin contributes through ``register_tools``.

    ``parameters`` is the JSON Schema of the params object (validated by the kernel
    before ``handler`` runs; it is also the function schema the LLM sees), ``result``
    the schema of what ``handler`` returns. A handler raises :mod:`sdk.errors` problems
    (404 unknown city, 502 upstream...), which reach the client or the model as errors.
    """

    name: str
    description: str
    parameters: JSONSchema
    handler: ToolHandler
    result: JSONSchema = field(default_factory=lambda: {"type": "object"})
    plugin: str = ""  # set by the kernel


class ToolRegistry(Protocol):
    """Every tool of every running plugin (``self.context.tools``)."""

    def list(self) -> list[Tool]:
        """Tools of plugins that are RUNNING now."""

    def get(self, name: str) -> Tool | None:
        """The tool with that name, if its plugin is running."""

    async def call(self, name: str, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        """Validate ``params`` and run the tool; raises Problems (404 unknown, 422 params)."""
