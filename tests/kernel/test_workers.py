"""``serve --workers N`` refuses, with one line naming what to change, while anything the
processes must share would stay inside one of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.serverproc import BIN, to_toml


def serve_workers(tmp_path: Path, config: dict, workers: int = 2) -> subprocess.CompletedProcess:
    path = tmp_path / "plugins.toml"
    config = {"kernel": {"data_dir": str(tmp_path / "data"), "port": 1}, **config}
    path.write_text(to_toml(config))
    return subprocess.run(
        [str(BIN), "serve", "--config", str(path), "--workers", str(workers)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_defaults_are_refused_naming_every_setting(tmp_path: Path) -> None:
    done = serve_workers(tmp_path, {"plugins": {"enabled": ["storage", "auth", "ratelimit"]}})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for setting in (
        "[plugins.storage] url",
        '[kernel.bus] backend = "redis"',
        '[plugins.ratelimit] backend = "redis"',
        "[plugins.auth] redis_url",
    ):
        assert setting in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was opened


def test_one_process_local_setting_left_is_named_alone(tmp_path: Path) -> None:
    config = {
        "kernel": {
            "data_dir": str(tmp_path / "data"),
            "port": 1,
            "bus": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0"},
        },
        "plugins": {
            "enabled": ["storage", "auth", "ratelimit", "memory"],
            "storage": {"url": "postgresql://postgres@127.0.0.1:5432/unused"},
            "ratelimit": {"backend": "redis"},
            "memory": {"embedder": "hashing", "redis_url": "none"},
        },
    }
    done = serve_workers(tmp_path, config, workers=3)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "llmmultichat: --workers 3 needs state shared between processes; change "
        "[plugins.memory] redis_url (keeps the processes' vector indexes in step)"
    )


def test_workers_must_be_positive(tmp_path: Path) -> None:
    done = serve_workers(tmp_path, {"plugins": {"enabled": ["auth"]}}, workers=0)
    assert done.returncode == 2 and "--workers must be at least 1" in done.stderr
