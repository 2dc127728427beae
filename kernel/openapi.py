"""OpenAPI 3.1 built from the same Route and Tool declarations the kernel mounts, so the
document cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any

from sdk.routes import Route
from sdk.tools import Tool

from . import __version__

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_STATUS_TEXT = {
    400: "Malformed JSON body",
    401: "Missing or invalid credentials",
    403: "Authenticated but not allowed",
    404: "Not found, or not yours",
    409: "Conflict",
    413: "Body too large",
    415: "Wrong content type",
    422: "Body, query or path does not match its schema, or holds text that is not Unicode",
    429: "Rate limited (see Retry-After)",
    502: "Upstream failed",
    503: "The plugin or a backend it needs is unavailable",
    504: "Upstream timed out",
}


def _problem(desc: str) -> dict[str, Any]:
    return {
        "description": desc,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _error(route: Route, desc: str) -> dict[str, Any]:
    if route.error_shape is None:
        return _problem(desc)
    return {
        "description": desc,
        "content": {"application/json": {"schema": route.error_shape.schema}},
    }


def operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id or _operation_id(route),
        "tags": route.tags or [route.plugin or "kernel"],
    }
    if route.summary:
        op["summary"] = route.summary
    if route.description:
        op["description"] = route.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(route.path)
    ]
    if route.query_schema:
        required = set(route.query_schema.get("required", []))
        for name, schema in route.query_schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    if params:
        op["parameters"] = params
    if route.request_schema is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.request_schema}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if route.status != 204:
        content_schema = route.response_schema if route.response_schema is not None else {}
        ok["content"] = {route.response_content_type: {"schema": content_schema}}
    responses: dict[str, Any] = {str(route.status): ok}
    codes = {503}
    if route.request_schema is not None:
        codes |= {400, 413, 415, 422}
    if route.query_schema is not None or "{" in route.path:
        codes.add(422)  # a query or path value that fails its schema or is not Unicode
    if route.auth != "public":
        codes.add(401)
        op["security"] = [{"bearerAuth": []}]
    if route.auth == "admin":
        codes.add(403)
    if route.rate_limit is not None:
        codes.add(429)
    if params and any(p["in"] == "path" for p in params):
        codes.add(404)
    for status in sorted(codes):
        responses[str(status)] = _error(route, _STATUS_TEXT[status])
    for status, desc in route.responses.items():
        if str(status) not in responses:
            responses[str(status)] = _error(route, desc) if status >= 400 else {"description": desc}
    op["responses"] = responses
    return op


def _operation_id(route: Route) -> str:
    slug = re.sub(r"[^a-zA-Z0-9]+", "_", route.path).strip("_") or "root"
    return f"{route.method.lower()}_{slug}"


def tool_execute_schema(tools: list[Tool]) -> dict[str, Any]:
    variants = [
        {
            "type": "object",
            "title": tool.name,
            "description": tool.description,
            "required": ["tool", "params"],
            "properties": {"tool": {"const": tool.name}, "params": tool.parameters},
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return {"oneOf": variants} if len(variants) > 1 else variants[0]


def build_openapi(
    routes: list[Route], tools: list[Tool], info_title: str = "LlmMultiChat"
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = operation(route)
    by_plugin: dict[str, list[Tool]] = {}
    for tool in tools:
        by_plugin.setdefault(tool.plugin, []).append(tool)
    for plugin, plugin_tools in sorted(by_plugin.items()):
        # One concrete path per plugin with tools: its body and result schemas are exact.
        results = [t.result for t in plugin_tools]
        paths[f"/api/v1/plugins/{plugin}/execute"] = {
            "post": {
                "operationId": f"execute_{plugin}_tool",
                "tags": [plugin],
                "summary": f"Run a tool of the {plugin} plugin: "
                + ", ".join(t.name for t in plugin_tools),
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": tool_execute_schema(plugin_tools)}},
                },
                "responses": {
                    "200": {
                        "description": "The tool's result",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["plugin", "tool", "result"],
                                    "properties": {
                                        "plugin": {"type": "string"},
                                        "tool": {"type": "string"},
                                        "result": {"anyOf": results}
                                        if len(results) > 1
                                        else results[0],
                                    },
                                }
                            }
                        },
                    },
                    **{
                        str(s): _problem(_STATUS_TEXT[s])
                        for s in (400, 401, 404, 413, 415, 422, 429, 502, 503, 504)
                    },
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": info_title,
            "version": __version__,
            "description": "Self-hosted multi-character chat server. Every route below is "
            "declared by a plugin; errors are RFC 9457 Problem Details.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An access token (JWT) or an API key",
                }
            },
        },
    }
