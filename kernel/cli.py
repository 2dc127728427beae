"""``llmmultichat``: serve, plugins, config check, openapi, plugin new, db migrate, db
copy, and the subcommands plugins contribute (``users create-admin`` from the auth
plugin)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from sdk.cli import CliCommand
from sdk.plugin import PluginState

from .app import Kernel, build_kernel
from .config import ConfigError, LoadedConfig, find_config_path, load_config
from .database import DatabaseError, redact
from .dbcopy import CopyError, copy_tables, target_database
from .logs import configure_logging
from .migrations import migrate
from .plugins import StartupError, installed_plugins
from .server import run_app


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
        from .reload import serve_with_reload

        child = ["serve"]
        for flag, value in (
            ("--config", args.config),
            ("--host", args.host),
            ("--port", args.port),
        ):
            if value is not None:
                child += [flag, str(value)]
        return serve_with_reload(child, find_config_path(args.config), config.enabled)
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


def _serve_workers(config: LoadedConfig, workers: int) -> int:
    """N processes under gunicorn's arbiter (kernel/workers.py), after checking that
    nothing the processes must share is kept inside one of them."""
    from .workers import run_workers

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

    async def build() -> tuple[Kernel, web.Application]:
        try:
            return await build_kernel(config)
        except (ConfigError, StartupError) as exc:
            logging.getLogger("llmmultichat").error("cannot start: %s", exc)
            raise

    return run_workers(config, workers, build)


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
    return 1 if missing else 0


async def _load(config: LoadedConfig) -> Kernel:
    kernel = Kernel(config)
    try:
        await kernel.load()
    except BaseException:
        await kernel.close()
        raise
    return kernel


def cmd_config_check(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), 2)

    database = dict(config.kernel["database"])

    async def check() -> Kernel:
        # validate without touching the real store
        config.kernel["data_dir"] = _scratch_dir()
        config.kernel["database"] = {**database, "url": ""}
        return await _load(config)

    try:
        kernel = asyncio.run(check())
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except StartupError as exc:
        return _fail(f"cannot start: {exc}")
    asyncio.run(kernel.close())
    errors = [r for r in kernel.records.values() if r.state is PluginState.ERROR]
    for rec in kernel.records.values():
        mark = "ok" if rec.state is not PluginState.ERROR else f"ERROR: {rec.error}"
        print(f"{rec.name}: {mark}")
    problem = asyncio.run(_reach(database)) if database.get("url") else None
    if problem:
        print(f"database: ERROR: {problem}")
    elif database.get("url"):
        print(f"database: ok ({redact(database['url'])})")
    print(f"{path}: {'valid' if not errors else 'valid, but some plugins cannot load'}")
    return 1 if errors or problem else 0


async def _reach(settings: dict[str, Any]) -> str | None:
    """Why the configured database cannot be opened, or None (nothing is changed)."""
    db = target_database(str(settings["url"]), 1)
    try:
        await db.open()
    except DatabaseError as exc:
        return str(exc)
    await db.close()
    return None


def _scratch_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="llmmc-check-")


def cmd_openapi(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        config.kernel["data_dir"] = _scratch_dir()
        config.kernel["database"] = {**config.kernel["database"], "url": ""}
        kernel = asyncio.run(_load(config))
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc), 2)
    asyncio.run(kernel.close())
    json.dump(kernel.openapi(), sys.stdout, indent=2)
    print()
    return 0


def _run_db_command(
    args: argparse.Namespace, run: Callable[[LoadedConfig], Coroutine[Any, Any, int]]
) -> int:
    try:
        config = load_config(args.config)
        configure_logging("WARNING", config.kernel["log_format"])
        return asyncio.run(run(config))
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc), 2)
    except (DatabaseError, CopyError) as exc:
        return _fail(f"db {args.sub} failed: {exc}")


def cmd_db_migrate(args: argparse.Namespace) -> int:
    async def run(config: LoadedConfig) -> int:
        kernel = Kernel(config)
        try:
            await kernel.prepare()
            applied = await kernel.migrate()
        finally:
            await kernel.close()
        print(f"database: {kernel.database.describe()}")
        failed = 0
        for name in kernel.order:
            rec = kernel.records[name]
            steps = len(rec.cls.migrations) if rec.cls is not None else 0
            if rec.error and rec.error.startswith("migrate"):
                failed += 1
                print(f"{name}: ERROR: {rec.error}")
            elif steps:
                done = applied.get(name, [])
                news = f"applied {', '.join(map(str, done))}" if done else "up to date"
                print(f"{name}: schema version {steps} ({news})")
        return 1 if failed else 0

    return _run_db_command(args, run)


def cmd_db_copy(args: argparse.Namespace) -> int:
    async def run(config: LoadedConfig) -> int:
        kernel = await _load(config)
        try:
            target = target_database(args.to)
            await target.open()
        except BaseException:
            await kernel.close()
            raise
        try:
            if target.url == kernel.database.url:
                return _fail("--to names the configured database itself")
            plans = [
                (n, r.cls.migrations)
                for n in kernel.order
                if (r := kernel.records[n]).cls is not None and r.state is PluginState.INITIALIZED
            ]
            report = await migrate(target, plans)
            for name, problem in report.failed.items():
                return _fail(f"migrating the target failed for plugin {name!r}: {problem}")
            tables: list[tuple[str, str]] = []
            taking_part = set()
            states = [PluginState.INITIALIZED]
            for name, fn in kernel.hooks.implementations("copy_tables", states=states):
                result = fn(target=target)
                names = await result if asyncio.iscoroutine(result) else result
                tables += [(name, str(t)) for t in names or []]
                taking_part.add(name)
            for name, _ in plans:
                if kernel.records[name].cls.migrations and name not in taking_part:  # type: ignore[union-attr]
                    print(
                        f"warning: plugin {name!r} keeps tables but has no copy_tables hook: "
                        "its data is not copied",
                        file=sys.stderr,
                    )
            copied = await copy_tables(kernel.database, target, tables)
        finally:
            await target.close()
            await kernel.close()
        print(f"copied {kernel.database.describe()} -> {target.describe()}")
        width = max([len(c.table) for c in copied] + [5])
        for c in copied:
            print(f"  {c.table:<{width}}  {c.rows:>9} rows  ({c.plugin}, verified)")
        print(f"  {'total':<{width}}  {sum(c.rows for c in copied):>9} rows")
        return 0

    return _run_db_command(args, run)


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from .scaffold import create_plugin

    try:
        path = create_plugin(args.name, args.directory)
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
        kernel = await _load(config)
        try:
            await kernel.start()
            rec = kernel.records[command.plugin]
            if rec.state is not PluginState.RUNNING:
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


KERNEL_COMMANDS = {"serve", "plugins", "config", "openapi", "plugin", "db", "-h", "--help"}


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

    p = sub.add_parser("plugins", help="list discovered plugins and whether they are enabled")
    _add_config(p)
    p.set_defaults(func=cmd_plugins)

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
    p.set_defaults(func=cmd_plugin_new)

    db = sub.add_parser("db", help="the database").add_subparsers(dest="sub", required=True)
    p = db.add_parser("migrate", help="apply the plugins' schema migrations, then exit")
    _add_config(p)
    p.set_defaults(func=cmd_db_migrate)
    p = db.add_parser("copy", help="copy every plugin's data into another (empty) database")
    _add_config(p)
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/dbname")
    p.set_defaults(func=cmd_db_copy)

    groups: dict[str, Any] = {}
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
    commands = [] if (not argv or argv[0] in KERNEL_COMMANDS) else _plugin_commands(argv)
    args = build_parser(commands).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
