"""``llmmultichat serve --reload`` (the ``llmmultichat.cli`` entry point ``reload``): the server runs in a child process that watchfiles
restarts whenever a watched source file or the configuration changes (for plugin
development; never in production).

Watched: the folders of the kernel, the SDK and every enabled plugin's top-level package
(found through its entry point without importing it), and the configuration file.
Only ``.py`` files and the configuration count; data files written while serving
(DuckDB, generated secrets) never trigger a restart.
"""

from __future__ import annotations

import importlib.util
import shlex
import signal
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from sdk import ENTRY_POINT_GROUP


def _package_dirs(top_level: Iterable[str]) -> set[Path]:
    dirs: set[Path] = set()
    for name in top_level:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            dirs.update(Path(p).resolve() for p in spec.submodule_search_locations)
        elif spec.origin:
            dirs.add(Path(spec.origin).resolve().parent)
    return dirs


def watched_paths(config_path: Path, enabled: list[str]) -> list[Path]:
    modules = {"kernel", "sdk"}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in enabled:
            modules.add(ep.module.split(".")[0])
    paths = _package_dirs(sorted(modules))
    if config_path.exists():
        paths.add(config_path.resolve())
    return sorted(paths)


def serve_with_reload(argv: list[str], config_path: Path, enabled: list[str]) -> int:
    """Run ``llmmultichat <argv>`` (a serve command without --reload) until interrupted,
    restarting it on every change."""
    from watchfiles import Change, DefaultFilter, run_process

    config_file = str(config_path.resolve())
    ignore = DefaultFilter()

    def relevant(change: Change, path: str) -> bool:
        return (path.endswith(".py") or path == config_file) and ignore(change, path)

    def announce(changes: set[tuple[Change, str]]) -> None:
        names = sorted({Path(p).name for _, p in changes})
        print(f"llmmultichat: {', '.join(names)} changed; restarting", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # watchfiles then stops the server before exiting

    signal.signal(signal.SIGTERM, stop)
    paths = watched_paths(config_path, enabled)
    print("llmmultichat: --reload watches " + ", ".join(map(str, paths)), flush=True)
    # the server in a child process, through the console entry (never imported here)
    command = shlex.join([sys.executable, "-m", "kernel.cli", *argv])
    run_process(
        *paths, target=command, target_type="command", watch_filter=relevant, callback=announce
    )
    return 0
