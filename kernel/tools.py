"""The registry of every running plugin's tools (``sdk.tools.ToolRegistry``)."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from jsonschema import Draft202012Validator

from sdk.errors import NotFound, Problem, ServiceUnavailable, ValidationFailed
from sdk.plugin import PluginEvent, PluginState
from sdk.schema import schema_errors
from sdk.tools import Tool, ToolCall

if TYPE_CHECKING:
    from .plugins import PluginRecord


class ToolRegistry:
    def __init__(
        self, records: dict[str, PluginRecord], record: Callable[[PluginEvent], None]
    ) -> None:
        self.records = records
        self.record = record  # each run goes into its plugin's history
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}

    def add(self, plugin: str, tool: Tool) -> None:
        if tool.name in self._tools:
            other = self._tools[tool.name].plugin
            raise ValueError(
                f"tool {tool.name!r} of plugin {plugin!r} is already offered by {other!r}"
            )
        Draft202012Validator.check_schema(tool.parameters)
        tool.plugin = plugin
        self._tools[tool.name] = tool
        self._validators[tool.name] = Draft202012Validator(tool.parameters)

    def remove(self, plugin: str) -> None:
        for name in [n for n, t in self._tools.items() if t.plugin == plugin]:
            del self._tools[name], self._validators[name]

    def _running(self, tool: Tool) -> bool:
        rec = self.records.get(tool.plugin)
        return rec is not None and rec.state is PluginState.RUNNING

    def all(self) -> builtins.list[Tool]:
        """Every registered tool, running or not (for documentation)."""
        return list(self._tools.values())

    def list(self) -> builtins.list[Tool]:
        return [t for t in self._tools.values() if self._running(t)]

    def get(self, name: str) -> Tool | None:
        tool = self._tools.get(name)
        return tool if tool is not None and self._running(tool) else None

    def of_plugin(self, plugin: str) -> builtins.list[Tool]:
        return [t for t in self._tools.values() if t.plugin == plugin]

    def validate(self, name: str, params: Any) -> None:
        errors = schema_errors(self._validators[name], params)
        if errors:
            raise ValidationFailed(
                f"Invalid params for tool {name!r}: {errors[0]['message'][:200]}", errors=errors
            )

    async def call(self, name: str, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        tool = self._tools.get(name)
        if tool is None:
            raise NotFound(f"There is no tool named {name!r}.", code="TOOL_NOT_FOUND")
        if not self._running(tool):
            raise ServiceUnavailable(
                f"The plugin {tool.plugin!r} offering {name!r} is not running.",
                code="PLUGIN_UNAVAILABLE",
            )
        self.validate(name, params)
        started = time.perf_counter()
        actor = call.identity.user_id if call.identity is not None else None
        try:
            result = await tool.handler(params, call)
            if not isinstance(result, dict):
                raise Problem(f"Tool {name!r} returned {type(result).__name__}, not an object.")
        except Problem as exc:
            self._ran(tool, call, started, actor, exc.detail or exc.code, exc.status < 500)
            raise
        except asyncio.CancelledError:  # a stopped turn: not the plugin's failure
            self._ran(tool, call, started, actor, "cancelled", caller_error=True)
            raise
        except Exception as exc:
            self._ran(tool, call, started, actor, f"{type(exc).__name__}: {exc}")
            raise
        self._ran(tool, call, started, actor, "")
        return result

    def _ran(
        self,
        tool: Tool,
        call: ToolCall,
        started: float,
        actor: str | None,
        error: str,
        caller_error: bool = False,
    ) -> None:
        ms = round((time.perf_counter() - started) * 1000, 1)
        outcome: Literal["ok", "error"] = "error" if error else "ok"
        self.record(
            PluginEvent(
                tool.plugin,
                "tool",
                outcome,
                f"{tool.name} ({call.origin})",
                error,
                ms,
                actor,
                caller_error=caller_error,
            )
        )
