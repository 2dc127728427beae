"""Command-line subcommands contributed by plugins (``register_cli_commands``)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# How far the kernel takes the enabled plugins before a command runs: "running" (each is
# initialized and started, the default), "initialized" (no plugin started), "prepared"
# (only the command's plugin and what it requires are initialized; every other plugin is
# only prepared: its database migrations applied).
Lifecycle = Literal["running", "initialized", "prepared"]


@dataclass(slots=True)
class CliCommand:
    """``llmmultichat <name...>``: e.g. ``name="users create-admin"``.

    ``arguments`` are ``(flags, kwargs)`` pairs for ``argparse.add_argument``. ``run`` gets
    the plugin (initialized with its validated config, and started) and the parsed
    arguments, and returns the process exit code.

    ``via_server``, when given, is tried first, before the kernel opens anything: it gets
    the ``data_dir`` and the arguments and may run the command through a server already
    running there (the embedded DuckDB file allows one process); it returns the exit
    code, or None to run the command here the usual way.
    """

    name: str
    help: str
    run: Callable[[Any, argparse.Namespace], Awaitable[int]]
    arguments: list[tuple[tuple[str, ...], dict[str, Any]]] = field(default_factory=list)
    plugin: str = ""
    via_server: Callable[[Path, argparse.Namespace], Awaitable[int | None]] | None = None
    lifecycle: Lifecycle = "running"
