from __future__ import annotations

import os
from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"
ENTRY_POINTS = """[llmmultichat.plugins]
crasher = llmmc_samples:Crasher
echoer = llmmc_samples:Echoer
needs_crasher = llmmc_samples:NeedsCrasher
slowstart = llmmc_samples:SlowStart
broken = llmmc_samples_not_there:Plugin
"""


@pytest.fixture(scope="session")
def samples_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for subprocesses in which the sample plugins are installed: a real
    ``.dist-info`` with entry points on PYTHONPATH, as pip would leave it."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "llmmc_samples-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llmmc-samples\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    path = os.pathsep.join([str(SAMPLES), str(site), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep)}
