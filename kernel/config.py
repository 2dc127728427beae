"""Reading ``plugins.toml``: where it is, ``${VAR}`` interpolation, defaults, validation.

Every error names where it is (``plugins.auth.bcrypt_rounds``) and what was expected, and
all of them are reported at once, so a deployer fixes the file in one pass.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk.schema import validate

ENV_CONFIG = "LLMMC_CONFIG"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")

KERNEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "default": "127.0.0.1"},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535, "default": 8000},
        "data_dir": {"type": "string", "minLength": 1, "default": "data"},
        "max_body_bytes": {"type": "integer", "minimum": 1024, "default": 1048576},
        # all request headers together (each line is limited to 8 KB, their number to 128)
        "max_header_bytes": {"type": "integer", "minimum": 8192, "default": 65536},
        "trusted_proxies": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[0-9a-fA-F:.]+(/\d{1,3})?$"},
            "default": [],
        },
        "cors_origins": {"type": "array", "items": {"type": "string"}, "default": []},
        "shutdown_timeout_seconds": {"type": "number", "minimum": 0, "default": 30},
        # a client slower than this in sending its headers or its body is cut off
        "read_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30},
        # Strict-Transport-Security on every answer: only when served behind TLS
        "hsts": {"type": "boolean", "default": False},
        "log_level": {
            "enum": ["DEBUG", "INFO", "WARNING", "ERROR"],
            "default": "INFO",
        },
        "log_format": {
            "enum": ["text", "json"],
            "default": "text",
            "description": "log lines (the access log included) as text or one JSON object each",
        },
        "thread_switch_ms": {
            "type": "number",
            "minimum": 0.1,
            "maximum": 100,
            "default": 0.5,
            "description": "how long a thread waiting for Python's interpreter lock waits "
            "before the holder is asked to let go (Python's default is 5 ms): work handed to "
            "a thread (an embedding, a database call) starts this soon even while the event "
            "loop is busy",
        },
        "drain_delay_seconds": {
            "type": "number",
            "minimum": 0,
            "default": 0,
            "description": "after SIGTERM, how long /readyz answers 503 while requests are "
            "still served, so a load balancer stops sending traffic before the port closes",
        },
        # Moved to plugins; still read from here (see MOVED_TABLES).
        "metrics": {"type": "object", "description": "legacy: [plugins.metrics]"},
        "bus": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "backend": {"enum": ["memory", "redis"], "default": "memory"},
                "redis_url": {
                    "type": "string",
                    "pattern": "^rediss?://",
                    "default": "redis://127.0.0.1:6379/0",
                },
                "channel_prefix": {"type": "string", "default": "llmmc:events:"},
            },
        },
        "database": {"type": "object", "description": "legacy: [plugins.storage]"},
    },
}

# Kernel tables that became plugins' own: the plugin still reads the old table (its own
# table wins), and the old table without the plugin enabled is an error saying what to do.
MOVED_TABLES = {"database": "storage", "metrics": "metrics"}

PLUGINS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "enabled": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "uniqueItems": True,
            "default": [],
        },
        "required": {
            "type": "array",
            "items": {"type": "string"},
            "uniqueItems": True,
            "default": [],
        },
    },
}


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n  - " + "\n  - ".join(problems))


@dataclass
class LoadedConfig:
    raw: dict[str, Any]
    source: str
    base: dict[str, Any] = field(default_factory=dict)  # raw as the file had it

    def __post_init__(self) -> None:
        self.base = self.base or copy.deepcopy(self.raw)

    @property
    def kernel(self) -> dict[str, Any]:
        kernel: dict[str, Any] = self.raw["kernel"]
        return kernel

    @property
    def enabled(self) -> list[str]:
        enabled: list[str] = self.raw["plugins"]["enabled"]
        return enabled

    @property
    def required(self) -> list[str]:
        required: list[str] = self.raw["plugins"]["required"]
        return required

    def plugin_table(self, name: str) -> dict[str, Any]:
        table = self.raw["plugins"].get(name, {})
        return dict(table) if isinstance(table, dict) else table

    def base_table(self, name: str) -> dict[str, Any]:
        """``[plugins.<name>]`` as the file has it, before any run-time change."""
        table = self.base["plugins"].get(name, {})
        return copy.deepcopy(table) if isinstance(table, dict) else {}

    def override(self, name: str, enabled: bool | None, table: dict[str, Any] | None) -> bool:
        """A run-time change over the file: enable or disable ``name``, replace its table.
        Returns whether anything changed."""
        plugins, before = self.raw["plugins"], copy.deepcopy(self.raw["plugins"])
        if enabled is True and name not in plugins["enabled"]:
            plugins["enabled"] = [*plugins["enabled"], name]
        elif enabled is False and name in plugins["enabled"]:
            plugins["enabled"] = [n for n in plugins["enabled"] if n != name]
        if table is not None:
            plugins[name] = copy.deepcopy(table)
        return bool(plugins != before)

    def drop_overrides(self) -> None:
        self.raw["plugins"] = copy.deepcopy(self.base["plugins"])


def find_config_path(explicit: str | None = None) -> Path:
    """``--config PATH``, else ``$LLMMC_CONFIG``, else ``./plugins.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return Path("plugins.toml")


def interpolate(value: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed TOML tree."""
    environ = os.environ if env is None else env
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and (environ[name] != "" or default is None):
                return environ[name]
            if default is not None:
                return default
            raise ConfigError([f"{path}: environment variable {name} is not set"])

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def load_config(path: str | Path | None = None, *, text: str | None = None) -> LoadedConfig:
    """Parse, interpolate and validate the kernel's and plugin list's tables.

    Plugin tables are validated later against each plugin's own schema
    (:func:`validate_plugin_config`), once the plugin's class is known.
    """
    source = "<string>"
    if text is None:
        p = find_config_path(str(path) if path else None)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([f"configuration file {p} does not exist"], source) from None
        except OSError as exc:
            raise ConfigError([f"cannot read {p}: {exc}"], source) from None
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source) from None
    try:
        return from_dict(parsed, source)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None


def from_dict(parsed: dict[str, Any], source: str = "<dict>") -> LoadedConfig:
    raw = interpolate(copy.deepcopy(parsed))
    unknown = sorted(set(raw) - {"kernel", "plugins"})
    problems = [
        f"{key}: unknown top-level table (expected [kernel] or [plugins])" for key in unknown
    ]
    raw.setdefault("kernel", {})
    raw.setdefault("plugins", {})
    problems += validate(raw["kernel"], KERNEL_SCHEMA, "kernel")
    problems += validate(raw["plugins"], PLUGINS_SCHEMA, "plugins")
    if not problems:
        problems += _bad_networks(raw["kernel"])
        for key, plugin in MOVED_TABLES.items():
            if key in raw["kernel"] and plugin not in raw["plugins"]["enabled"]:
                problems.append(
                    f"kernel.{key}: this table now configures the {plugin} plugin: add "
                    f'"{plugin}" to [plugins] enabled (and write it as [plugins.{plugin}])'
                )
        missing = [n for n in raw["plugins"]["required"] if n not in raw["plugins"]["enabled"]]
        problems += [
            f"plugins.required: {n!r} is required but not in plugins.enabled" for n in missing
        ]
    if problems:
        raise ConfigError(problems, source)
    return LoadedConfig(raw=raw, source=source)


def _bad_networks(kernel: dict[str, Any]) -> list[str]:
    """CIDRs that match the schema's pattern but are not addresses (``300.1.1.1/8``)."""
    lists = {
        "kernel.trusted_proxies": kernel["trusted_proxies"],
    }
    problems = []
    for where, cidrs in lists.items():
        for i, cidr in enumerate(cidrs):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                problems.append(f"{where}[{i}]: {exc}")
    return problems


def validate_plugin_config(name: str, table: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Validate ``[plugins.<name>]`` against the plugin's schema; return it with defaults."""
    config = copy.deepcopy(table) if table is not None else {}
    if not isinstance(config, dict):
        raise ConfigError([f"plugins.{name}: expected a table, got {type(config).__name__}"])
    problems = validate(config, schema, f"plugins.{name}")
    if problems:
        raise ConfigError(problems)
    return config
