"""``plugin new NAME --kind provider|tool|routes``: each kind's package installs (``pip
install -e``), is discovered through its entry point, and its own generated tests pass.
The scaffold function takes the kind as its third argument (routes by default), which is
how ``llmmultichat plugin new`` calls it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builtin_plugins.scaffold.create import create_plugin
from tests.serverproc import BIN

PIP = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]

# kind -> how many tests its package brings
KINDS = {"routes": 3, "tool": 4, "provider": 4}


def test_each_kind_installs_is_discovered_and_passes_its_tests(tmp_path: Path) -> None:
    roots = {kind: create_plugin(f"scaf_{kind}", tmp_path, kind) for kind in KINDS}
    for kind, root in roots.items():
        assert root == tmp_path / f"llmmultichat-scaf-{kind}"
    # one pip run for the three (each run costs seconds of resolving)
    subprocess.run(
        [*PIP, *(x for r in roots.values() for x in ("-e", str(r)))], check=True, timeout=300
    )
    try:
        listing = subprocess.run(
            [str(BIN), "plugins"], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
        )
        for kind in KINDS:
            assert any(x.startswith(f"scaf_{kind} ") for x in listing.stdout.splitlines()), listing
        for kind, root in roots.items():
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=str(root),
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"{KINDS[kind]} passed" in result.stdout, (kind, result.stdout)
    finally:
        names = [f"llmmultichat-scaf-{kind}" for kind in KINDS]
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", *names],
            check=False,
            timeout=120,
        )


def test_the_kind_defaults_to_routes_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    root = create_plugin("plain", tmp_path)
    assert "register_routes" in (root / "llmmc_plain" / "plugin.py").read_text()
    provider = create_plugin("talker", tmp_path, "provider")
    code = (provider / "llmmc_talker" / "plugin.py").read_text()
    assert "class TalkerProvider(LLMProvider):" in code and 'type = "talker"' in code
    tool = create_plugin("counter", tmp_path, "tool")
    assert "register_tools" in (tool / "llmmc_counter" / "plugin.py").read_text()
    with pytest.raises(ValueError, match="kind"):
        create_plugin("weird", tmp_path, "database")
    assert not (tmp_path / "llmmultichat-weird").exists()
