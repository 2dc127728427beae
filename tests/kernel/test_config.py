"""plugins.toml: location, interpolation, validation with messages that name the plugin,
the key path and what was expected; `config check` and `serve` refuse a bad file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kernel.config import ConfigError, find_config_path, interpolate, load_config
from tests.serverproc import BIN, ROOT, ServerProcess


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=str(cwd) if cwd else None,
        timeout=120,
    )


def test_interpolation_uses_environment_and_defaults() -> None:
    env = {"HOST": "0.0.0.0", "EMPTY": ""}
    tree = {"a": "${HOST}", "b": "x-${MISSING:-dflt}-y", "c": ["${EMPTY:-fallback}"], "d": 3}
    assert interpolate(tree, env) == {"a": "0.0.0.0", "b": "x-dflt-y", "c": ["fallback"], "d": 3}
    with pytest.raises(
        ConfigError, match=r"plugins.auth.jwt_secret: environment variable NOPE is not set"
    ):
        interpolate({"plugins": {"auth": {"jwt_secret": "${NOPE}"}}}, {})


def test_config_path_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMMC_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_path("explicit.toml") == Path("explicit.toml")
    assert find_config_path(None) == tmp_path / "env.toml"
    monkeypatch.delenv("LLMMC_CONFIG")
    assert find_config_path(None) == Path("plugins.toml")


def test_kernel_errors_are_all_reported_with_paths() -> None:
    text = """
[kernel]
port = "eighty"
colour = "blue"
[kernel.bus]
backend = "kafka"
"""
    with pytest.raises(ConfigError) as info:
        load_config(text=text)
    problems = "\n".join(info.value.problems)
    assert "kernel.port: expected integer" in problems
    assert "kernel: unknown key" in problems and "colour" in problems
    assert "kernel.bus.backend: expected one of ['memory', 'redis'], got 'kafka'" in problems


def test_not_toml_is_reported() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(text="[kernel\nport=1")


def test_defaults_are_filled() -> None:
    cfg = load_config(text="[plugins]\nenabled = []\n")
    assert cfg.kernel["max_body_bytes"] == 1048576
    assert cfg.kernel["bus"]["backend"] == "memory"


def test_the_shipped_plugins_toml_is_valid_for_the_kernel() -> None:
    cfg = load_config(ROOT / "plugins.toml")
    assert cfg.required == ["auth"]
    assert set(cfg.enabled) == {
        "storage",
        "pluginadmin",
        "accesslog",
        "metrics",
        "compression",
        "auth",
        "ratelimit",
        "chat",
        "memory",
        "weather",
        "translate",
        "webui",
    }


def test_config_check_names_plugin_key_and_expectation(
    tmp_path: Path, samples_env: dict[str, str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[plugins]\nenabled = ["crasher"]\n[plugins.crasher]\nfail_in = "lunch"\n')
    result = run_cli("config", "check", "--config", str(bad), env=samples_env)
    assert result.returncode == 2
    assert "plugins.crasher.fail_in: expected one of" in result.stderr
    assert "'lunch'" in result.stderr

    good = tmp_path / "good.toml"
    good.write_text('[plugins]\nenabled = ["crasher"]\n[plugins.crasher]\nfail_in = "none"\n')
    result = run_cli("config", "check", "--config", str(good), env=samples_env)
    assert result.returncode == 0, result.stderr
    assert "crasher: ok" in result.stdout


def test_config_from_environment_variable(tmp_path: Path, samples_env: dict[str, str]) -> None:
    bad = tmp_path / "viaenv.toml"
    bad.write_text('[plugins]\nenabled = ["crasher"]\n[plugins.crasher]\nfail_in = 3\n')
    result = run_cli("config", "check", env={**samples_env, "LLMMC_CONFIG": str(bad)})
    assert result.returncode == 2 and "plugins.crasher.fail_in" in result.stderr


def test_serve_refuses_an_invalid_file(tmp_path: Path, samples_env: dict[str, str]) -> None:
    server = ServerProcess(
        {"plugins": {"enabled": ["crasher"], "crasher": {"fail_in": "sometimes"}}},
        tmp_path,
        env=samples_env,
    )
    server.start(wait=False)
    assert server.wait(60) == 2
    assert "plugins.crasher.fail_in" in server.output()
