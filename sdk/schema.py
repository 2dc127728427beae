"""JSON Schema helpers shared by the kernel and plugins: validation that fills in
``default`` values, errors as JSON Pointers (for Problem Details) or as readable lines
naming the key (for configuration), and redaction of secrets in a config tree."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


def _with_defaults(validator_class: Any) -> Any:
    """A validator that fills in ``default`` values while it validates (jsonschema FAQ)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(prop, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})  # type: ignore[no-untyped-call]


# Validates and fills in `default` values (plugin configs, query parameters)
DefaultingValidator: Any = _with_defaults(Draft202012Validator)


def error_path(error: ValidationError, prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for part in error.absolute_path:
        if isinstance(part, int):
            if parts:
                parts[-1] += f"[{part}]"
            else:
                parts.append(f"[{part}]")
        else:
            parts.append(str(part))
    return ".".join(parts) if parts else "(root)"


def describe(error: ValidationError) -> str:
    """A message that says what was expected, in a deployer's words."""
    if error.validator == "additionalProperties":
        return f"unknown key ({error.message})"
    if error.validator == "enum":
        return f"expected one of {error.validator_value}, got {error.instance!r}"
    if error.validator == "type":
        return f"expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
    if error.validator == "pattern":
        return f"{error.instance!r} does not match the expected form {error.validator_value!r}"
    return error.message


def validate(instance: Any, schema: dict[str, Any], prefix: str) -> list[str]:
    """Validate (filling defaults in ``instance``) and return readable problems."""
    validator = DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{error_path(e, prefix)}: {describe(e)}" for e in errors]


_SECRET_NAME = re.compile(
    r"(secret|password|passwd|api_key|apikey|token|private_key|credential)", re.I
)
REDACTED = "***"


def redact(value: Any, schema: dict[str, Any] | None = None, key: str = "") -> Any:
    """A copy of a config tree with secrets replaced: keys named like secrets, and keys
    whose schema says ``"x-secret": true``. Empty secrets stay empty, so a deployer can
    see that one is missing."""
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        extra = schema.get("additionalProperties", {}) if isinstance(schema, dict) else {}
        out = {}
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else {})
            out[k] = redact(v, sub, k)
        return out
    if isinstance(value, list):
        items = schema.get("items", {}) if isinstance(schema, dict) else {}
        return [redact(v, items if isinstance(items, dict) else {}, key) for v in value]
    secret = bool(schema.get("x-secret")) if isinstance(schema, dict) else False
    if (secret or _SECRET_NAME.search(key)) and isinstance(value, str) and value:
        return REDACTED
    return value


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Problems with a plugin's own schema (a plugin author's bug, reported at load)."""
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [exc.message]
    return []


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    errors = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = "/" + "/".join(str(p) for p in err.absolute_path)
        errors.append({"path": path, "message": err.message})
    return errors
