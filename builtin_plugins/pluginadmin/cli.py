"""``llmmultichat plugins list | enable NAME | disable NAME | reset NAME``.

Sent to the running server over its socket when there is one (the change applies at once
and reaches every instance); otherwise the change is checked and stored here, and servers
apply it when they start, or within a second when they share this database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Protocol

from sdk import CliCommand, control, errors

from .service import PluginAdmin

SOCKET_NAME = "plugins-admin.sock"


class HasAdmin(Protocol):
    admin: PluginAdmin


async def execute(
    plugin: HasAdmin, message: dict[str, Any], *, apply: bool = True
) -> dict[str, Any]:
    """One operation; the answer is ``{code, out, err}``."""
    admin = plugin.admin
    op, name = str(message.get("op")), str(message.get("name") or "")
    try:
        if op == "list":
            return {"code": 0, "out": _table(admin.catalog()), "err": ""}
        if not apply:
            admin.overrides = await admin.store.overrides()
        if op in ("enable", "disable"):
            found = await admin.change(name, op == "enable", None, None, apply=apply)
        elif op == "reset":
            found = await admin.reset(name, None, apply=apply)
        else:
            return {"code": 2, "out": "", "err": f"unknown operation {op!r}\n"}
    except errors.Problem as exc:
        return {"code": 1, "out": "", "err": f"error: {exc.detail}\n"}
    where = "" if apply else " (stored; servers apply it when they start or sync)"
    state = "enabled" if found["enabled"] else "disabled"
    return {"code": 0, "out": f"{name}: {state}{where}\n", "err": ""}


def _table(plugins: list[dict[str, Any]]) -> str:
    width = max([len(p["name"]) for p in plugins] + [4])
    lines = [f"{'NAME':<{width}}  {'ENABLED':<7}  {'STATE':<13}  OVERRIDDEN"]
    for p in plugins:
        over = ", ".join(p["overridden"]) or "-"
        enabled = "yes" if p["enabled"] else "no"
        lines.append(f"{p['name']:<{width}}  {enabled:<7}  {p['state']:<13}  {over}")
    return "\n".join(lines) + "\n"


def _command(op: str, help_text: str) -> CliCommand:
    def message(args: argparse.Namespace) -> dict[str, Any]:
        return {"op": op, "name": getattr(args, "name", "")}

    def show(answer: dict[str, Any]) -> int:
        sys.stdout.write(str(answer.get("out", "")))
        sys.stderr.write(str(answer.get("err", "")))
        return int(answer.get("code", 1))

    async def run(plugin: HasAdmin, args: argparse.Namespace) -> int:
        return show(await execute(plugin, message(args), apply=False))

    async def via_server(data_dir: Path, args: argparse.Namespace) -> int | None:
        path = data_dir / SOCKET_NAME
        if not path.exists():
            return None
        try:
            return show(await control.request(path, message(args)))
        except control.NoServer:
            return None

    arguments = [] if op == "list" else [(("name",), {"help": "the plugin's name"})]
    return CliCommand(
        name=f"plugins {op}",
        help=help_text,
        run=run,
        arguments=arguments,
        plugin="pluginadmin",
        via_server=via_server,
        lifecycle="prepared",
    )


def commands() -> list[CliCommand]:
    return [
        _command("list", "every installed plugin: enabled, state, what is set at run time"),
        _command("enable", "enable a plugin (on the running server(s) at once)"),
        _command("disable", "disable a plugin (on the running server(s) at once)"),
        _command("reset", "drop a plugin's run-time changes: plugins.toml alone again"),
    ]
