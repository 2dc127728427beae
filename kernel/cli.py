"""``llmmultichat``: serve, plugins, config check, openapi, plugin new, and the
subcommands plugins contribute (``db migrate`` and ``db copy`` from the storage plugin,
``users ...`` from the auth plugin)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from aiohttp import web

from sdk.cli import CliCommand
from sdk.plugin import PluginState

from .app import Kernel, build_kernel
from .config import ConfigError, LoadedConfig, find_config_path, load_config
from .logs import configure_logging
from .plugins import StartupError, installed_plugins
from .server import GatedRunner, run_app


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="PATH", help="plugins.toml (else $LLMMC_CONFIG, else ./plugins.toml)"
    )


def _fail(message: str, code: int = 1) -> int:
    print(f"llmmultichat: {message}", file=sys.stderr)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if args.reload:
        child = ["serve"]
        for flag, value in (
            ("--config", args.config),
            ("--host", args.host),
            ("--port", args.port),
        ):
            if value is not None:
                child += [flag, str(value)]
        reload = _extension("reload")
        return int(reload(child, find_config_path(args.config), config.enabled)) if reload else 2
    configure_logging(config.kernel["log_level"], config.kernel["log_format"])
    if args.host:
        config.kernel["host"] = args.host
    if args.port is not None:
        config.kernel["port"] = args.port
    if args.workers < 1:
        return _fail("--workers must be at least 1", 2)
    if args.workers > 1:
        return _serve_workers(config, args.workers)
    try:
        run_app(
            lambda: build_kernel(config),
            kernel_config=config.kernel,
            host=config.kernel["host"],
            port=config.kernel["port"],
            print=lambda msg: print(msg, flush=True),
        )
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except StartupError as exc:
        return _fail(f"cannot start: {exc}")
    except OSError as exc:
        return _fail(f"cannot listen on {config.kernel['host']}:{config.kernel['port']}: {exc}")
    return 0


# Process management and scaffolding are not the kernel's: they are found, like plugins,
# through entry points (group ``llmmultichat.cli``) and imported only when asked for.
CLI_GROUP = "llmmultichat.cli"


def _extension(name: str) -> Any:
    found = [ep for ep in entry_points(group=CLI_GROUP) if ep.name == name]
    if not found:
        _fail(f"{name!r} is not installed (entry point group {CLI_GROUP!r})", 2)
        return None
    return found[0].load()


def _serve_workers(config: LoadedConfig, workers: int) -> int:
    """N processes under a process manager (entry point ``workers``), after checking
    that nothing the processes must share is kept inside one of them."""
    kernel = Kernel(config)
    try:
        kernel.resolve()
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc), 2)
    local = kernel.process_local_settings()
    if local:
        return _fail(
            f"--workers {workers} needs state shared between processes; change " + "; ".join(local),
            2,
        )
    run_workers = _extension("workers")
    if run_workers is None:
        return 2

    async def build() -> tuple[Kernel, web.Application]:
        try:
            return await build_kernel(config)
        except (ConfigError, StartupError) as exc:
            logging.getLogger("llmmultichat").error("cannot start: %s", exc)
            raise

    def runner() -> GatedRunner:
        kc = config.kernel
        return GatedRunner(kc, shutdown_timeout=float(kc["shutdown_timeout_seconds"]))

    return int(run_workers(config.kernel, workers, build, runner))


def cmd_plugins(args: argparse.Namespace) -> int:
    enabled: list[str] = []
    try:
        enabled = load_config(args.config).enabled
    except ConfigError as exc:
        print(f"(configuration not usable: {exc.problems[0]})", file=sys.stderr)
    from importlib.metadata import version

    rows = [(n, v, f"{d} {version(d)}" if d else "") for n, v, d in installed_plugins()]
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'NAME':<{width}}  {'ENABLED':<7}  DISTRIBUTION  ENTRY POINT")
    for name, value, dist in rows:
        print(f"{name:<{width}}  {'yes' if name in enabled else 'no':<7}  {dist}  {value}")
    missing = [n for n in enabled if n not in {r[0] for r in rows}]
    for name in missing:
        print(f"{name:<{width}}  {'yes':<7}  NOT INSTALLED")
    if "pluginadmin" in enabled:
        print("(changed at run time? `llmmultichat plugins list` shows states and overrides)")
    return 1 if missing else 0


async def _load(config: LoadedConfig, until: str = "initialized", plugin: str = "") -> Kernel:
    kernel = Kernel(config)
    await kernel.load(until, plugin)
    return kernel


def _scratch(config: LoadedConfig) -> LoadedConfig:
    """The configuration with a scratch data_dir and the embedded database, to validate
    and document without touching the real store."""
    import tempfile

    config.kernel["data_dir"] = tempfile.mkdtemp(prefix="llmmc-check-")
    for table in (config.kernel.get("database"), config.raw["plugins"].get("storage")):
        if isinstance(table, dict):
            table["url"] = ""
    return config


def cmd_config_check(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    try:
        config = _scratch(load_config(args.config))
        kernel = asyncio.run(_load(config))
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except StartupError as exc:
        return _fail(f"cannot start: {exc}")
    asyncio.run(kernel.close())
    errors = [r for r in kernel.records.values() if r.state is PluginState.ERROR]
    for rec in kernel.records.values():
        mark = "ok" if rec.state is not PluginState.ERROR else f"ERROR: {rec.error}"
        print(f"{rec.name}: {mark}")
    print(f"{path}: {'valid' if not errors else 'valid, but some plugins cannot load'}")
    return 1 if errors else 0


def cmd_openapi(args: argparse.Namespace) -> int:
    try:
        kernel = asyncio.run(_load(_scratch(load_config(args.config))))
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc), 2)
    asyncio.run(kernel.close())
    json.dump(kernel.openapi(), sys.stdout, indent=2)
    print()
    return 0


def cmd_plugin_new(args: argparse.Namespace) -> int:
    create_plugin = _extension("scaffold")
    if create_plugin is None:
        return 2
    try:
        kind = () if args.kind == "routes" else (args.kind,)
        path = create_plugin(args.name, args.directory, *kind)
    except (ValueError, FileExistsError) as exc:
        return _fail(str(exc), 2)
    print(f"created {path}\n  install it:  pip install -e {path}\n  test it:     pytest {path}")
    return 0


def _run_plugin_command(command: CliCommand, args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if command.via_server is not None:
        # A running server holds the database (DuckDB: one process): ask it first.
        data_dir = Path(config.kernel["data_dir"]).resolve()
        via_server = command.via_server

        async def ask() -> int | None:
            return await via_server(data_dir, args)

        code = asyncio.run(ask())
        if code is not None:
            return code

    async def run() -> int:
        if command.lifecycle != "running":  # a maintenance command: only its own output
            configure_logging("WARNING", config.kernel["log_format"])
        kernel = await _load(config, command.lifecycle, command.plugin)
        try:
            if command.lifecycle == "running":
                await kernel.start()
            rec = kernel.records[command.plugin]
            wanted = (
                PluginState.RUNNING if command.lifecycle == "running" else PluginState.INITIALIZED
            )
            if rec.state is not wanted:
                return _fail(f"plugin {command.plugin!r} is not running: {rec.error}")
            return await command.run(rec.instance, args)
        finally:
            await kernel.stop()
            await kernel.close()

    try:
        return asyncio.run(run())
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc), 2)


def _plugin_commands(argv: list[str]) -> list[CliCommand]:
    """Commands contributed by enabled plugins (loaded only when the first word is not
    a kernel command, so ``serve`` never loads plugins twice). Nothing is opened, so
    this works while a server runs on the same data_dir. When the command asked for is
    not among them, say on stderr which plugins could not offer theirs, and why."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    try:
        config = load_config(known.config)
    except ConfigError as exc:
        print(f"llmmultichat: plugin commands unavailable: {exc}", file=sys.stderr)
        return []
    kernel = Kernel(config)
    try:
        commands = asyncio.run(kernel.load_cli_commands())
    except Exception as exc:
        print(f"llmmultichat: plugin commands unavailable: {exc!r}", file=sys.stderr)
        return []
    if argv and argv[0] not in {c.name.split()[0] for c in commands}:
        for rec in kernel.records.values():
            if rec.state is PluginState.ERROR:
                print(
                    f"llmmultichat: plugin {rec.name!r} offers no commands: {rec.error}",
                    file=sys.stderr,
                )
    return commands


KERNEL_COMMANDS = {"serve", "plugins", "config", "openapi", "plugin", "-h", "--help"}


def build_parser(commands: list[CliCommand]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmmultichat", description="LlmMultiChat server")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    _add_config(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on the one port (N > 1 needs PostgreSQL and Redis; "
        "docs/scaleout.md)",
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="restart when a source file of the kernel, the SDK or an enabled plugin, or the "
        "configuration, changes (plugin development)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "plugins",
        help="list discovered plugins and whether they are enabled (and, with pluginadmin: "
        "list | enable | disable | reset NAME at run time)",
    )
    _add_config(p)
    p.set_defaults(func=cmd_plugins)
    groups: dict[str, Any] = {}
    if any(c.name.split()[0] == "plugins" for c in commands):
        groups["plugins"] = p.add_subparsers(dest="sub", required=False)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="sub", required=True)
    p = cfg.add_parser("check", help="validate plugins.toml without starting")
    _add_config(p)
    p.set_defaults(func=cmd_config_check)

    p = sub.add_parser("openapi", help="print the OpenAPI document")
    _add_config(p)
    p.set_defaults(func=cmd_openapi)

    plug = sub.add_parser("plugin", help="plugin tools").add_subparsers(dest="sub", required=True)
    p = plug.add_parser("new", help="write a ready-to-install plugin package")
    p.add_argument("name")
    p.add_argument("--directory", default=".", help="where to create it (default: here)")
    p.add_argument(
        "--kind",
        choices=("routes", "tool", "provider"),
        default="routes",
        help="what the plugin offers: HTTP routes (default), a tool, or an LLM provider",
    )
    p.set_defaults(func=cmd_plugin_new)

    for command in commands:
        words = command.name.split()
        if len(words) == 1:
            p = sub.add_parser(words[0], help=command.help)
        else:
            if words[0] not in groups:
                groups[words[0]] = sub.add_parser(words[0]).add_subparsers(
                    dest="sub", required=True
                )
            p = groups[words[0]].add_parser(" ".join(words[1:]), help=command.help)
        _add_config(p)
        for flags, kwargs in command.arguments:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(func=lambda a, c=command: _run_plugin_command(c, a))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `plugins enable NAME` and the like are the plugin administration's commands
    runtime = argv[:1] == ["plugins"] and len(argv) > 1 and not argv[1].startswith("-")
    kernel_only = not argv or (argv[0] in KERNEL_COMMANDS and not runtime)
    commands = [] if kernel_only else _plugin_commands(argv)
    args = build_parser(commands).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
