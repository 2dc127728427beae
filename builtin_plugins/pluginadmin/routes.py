"""``/api/v1/admin/plugins``: the plugin administration's routes (administrators only)."""

from __future__ import annotations

from typing import Any

from sdk import Request, Route

from .service import PluginAdmin

PLUGIN: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "version",
        "enabled",
        "state",
        "required",
        "requires",
        "config",
        "error",
        "overridden",
    ],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "description": {"type": "string"},
        "distribution": {"type": "string"},
        "enabled": {"type": "boolean"},
        "state": {"type": "string", "description": "the lifecycle state, or DISABLED"},
        "required": {"type": "boolean"},
        "requires": {"type": "array", "items": {"type": "string"}},
        "locked": {"type": "boolean", "description": "cannot be disabled here"},
        "config": {"type": "object", "description": "in force, secrets redacted"},
        "schema": {"type": "object", "description": "the plugin's configuration JSON Schema"},
        "error": {"type": "string"},
        "overridden": {
            "type": "array",
            "items": {"type": "string"},
            "description": "what was set at run time (config keys, and enabled)",
        },
    },
}
LIST = {
    "type": "object",
    "required": ["plugins"],
    "properties": {"plugins": {"type": "array", "items": PLUGIN}},
}
PATCH = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "enabled": {"type": "boolean"},
        "config": {
            "type": "object",
            "description": "keys merged over the plugin's table in plugins.toml",
        },
    },
}
HISTORY = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["at", "kind", "outcome"],
                "properties": {
                    "at": {"type": "number", "description": "UNIX time"},
                    "kind": {"enum": ["tool", "state", "config", "llm"]},
                    "actor_id": {"type": ["string", "null"]},
                    "detail": {"type": "string"},
                    "outcome": {"enum": ["ok", "error"]},
                    "duration_ms": {"type": ["number", "null"]},
                    "error": {"type": "string"},
                },
            },
        }
    },
}
CONFLICTS = {409: "PLUGIN_REQUIRES, PLUGIN_REQUIRED_BY or PLUGIN_LOCKED (names the plugins)"}


def build_routes(admin: PluginAdmin, history: Any) -> list[Route]:
    async def list_plugins(req: Request) -> Any:
        return {"plugins": admin.catalog()}

    async def change_plugin(req: Request) -> Any:
        body = req.body
        actor = req.identity.user_id if req.identity else None
        return await admin.change(
            req.match_info["name"], body.get("enabled"), body.get("config"), actor
        )

    async def rescan(req: Request) -> Any:
        admin.server.rescan()
        return {"plugins": admin.catalog()}

    async def plugin_history(req: Request) -> Any:
        name = req.match_info["name"]
        admin.info(name)  # 404 for an unknown plugin
        return {"events": await history(name, req.params["limit"])}

    tags = ["plugins"]
    return [
        Route(
            "GET",
            "/api/v1/admin/plugins",
            list_plugins,
            auth="admin",
            tags=tags,
            summary="Every installed plugin, enabled or not",
            response_schema=LIST,
        ),
        Route(
            "PATCH",
            "/api/v1/admin/plugins/{name}",
            change_plugin,
            auth="admin",
            tags=tags,
            summary="Enable, disable or configure a plugin while serving, on every instance",
            request_schema=PATCH,
            response_schema=PLUGIN,
            responses=CONFLICTS,
        ),
        Route(
            "POST",
            "/api/v1/admin/plugins/rescan",
            rescan,
            auth="admin",
            tags=tags,
            summary="Find plugins installed since start (listed disabled)",
            response_schema=LIST,
        ),
        Route(
            "GET",
            "/api/v1/admin/plugins/{name}/history",
            plugin_history,
            auth="admin",
            tags=tags,
            summary="Tool runs, state and configuration changes, newest first",
            query_schema={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}
                },
            },
            response_schema=HISTORY,
        ),
    ]
