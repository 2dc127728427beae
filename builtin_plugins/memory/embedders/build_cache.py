"""``python -m builtin_plugins.memory.embedders.build_cache [int8|float32 ...]``: build the
ONNX graph of the packaged all-MiniLM-L6-v2 now (``scripts/setup.sh`` does), so that the
first start finds it cached. Beside ``local.py`` and ``bert_onnx.py``, which it uses, so
neither has to import the other."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from .bert_onnx import PRECISIONS, cached_path, load_or_build
from .local import LocalModelMissing, find_model_dir


def _packaged_folders() -> Iterator[Path]:
    with contextlib.suppress(LocalModelMissing):
        yield find_model_dir()


def main(argv: list[str] | None = None) -> int:
    """Build the cache of the packaged model (int8, the default precision; name others as
    arguments: ``float32``); print where it is."""
    logging.basicConfig(level=logging.WARNING)
    precisions = (argv if argv is not None else sys.argv[1:]) or ["int8"]
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        print(f"build_cache: unknown precision {', '.join(unknown)} (one of {PRECISIONS})")
        return 2
    folders = list(_packaged_folders())
    if not folders:
        print("bert_onnx: the packaged model is not installed; nothing to build")
        return 0
    for folder in folders:
        for precision in precisions:
            _, hit = load_or_build(folder, precision)
            state = "cached" if hit else "built"
            print(f"build_cache: {state} {cached_path(folder, precision)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
