"""Dice: a plugin written the way any third party would, with only the SDK."""

from __future__ import annotations

import random
from typing import Any

from sdk import Plugin, Request, Route, Tool, ToolCall, hookimpl
from sdk.errors import ValidationFailed

ROLL_RESULT = {
    "type": "object",
    "required": ["sides", "rolls", "total"],
    "properties": {
        "sides": {"type": "integer"},
        "rolls": {"type": "array", "items": {"type": "integer"}},
        "total": {"type": "integer"},
    },
}


class DicePlugin(Plugin):
    name = "dice"
    version = "1.0.0"
    description = "Rolls dice for users and for characters"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_dice": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            "default_sides": {"type": "integer", "minimum": 2, "default": 6},
        },
    }

    @hookimpl
    def register_routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/api/v1/dice/roll",
                self.roll_route,
                auth="public",
                summary="Roll dice: ?count=&sides=",
                query_schema={
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer", "minimum": 1, "default": 1},
                        "sides": {"type": "integer", "minimum": 2, "maximum": 1000},
                    },
                },
                response_schema=ROLL_RESULT,
                responses={422: "count or sides out of range"},
            )
        ]

    @hookimpl
    def register_tools(self) -> list[Tool]:
        return [
            Tool(
                name="roll_dice",
                description="Roll some dice and return each roll and the total",
                parameters={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "count": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "sides": {"type": "integer", "minimum": 2, "maximum": 1000},
                    },
                },
                result=ROLL_RESULT,
                handler=self.roll_tool,
            )
        ]

    def roll(self, count: int, sides: int) -> dict[str, Any]:
        if count > self.config["max_dice"]:
            raise ValidationFailed(
                f"At most {self.config['max_dice']} dice at once.",
                errors=[{"path": "/count", "message": f"must be <= {self.config['max_dice']}"}],
            )
        rolls = [random.randint(1, sides) for _ in range(count)]
        return {"sides": sides, "rolls": rolls, "total": sum(rolls)}

    async def roll_route(self, req: Request) -> dict[str, Any]:
        # the kernel has checked both against query_schema (422 otherwise) and typed them
        return self.roll(req.params["count"], req.params.get("sides", self.config["default_sides"]))

    async def roll_tool(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        return self.roll(params.get("count", 1), params.get("sides", self.config["default_sides"]))
