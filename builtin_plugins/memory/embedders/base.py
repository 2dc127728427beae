"""The embedder interface and the micro-batcher every embedder shares.

An embedder turns texts into L2-normalised float32 vectors (one row per text). All work
that blocks (model inference, hashing a large batch) runs in a worker thread; concurrent
callers are gathered into one batch, so ten chat turns arriving together cost one model
call, not ten.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np


def normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)


class Embedder:
    """Base class. Subclasses set ``name`` and implement :meth:`_embed_batch`.

    ``model_id`` names the vector space (stored next to every vector, so vectors of two
    models are never compared); ``dim`` is known once the model is loaded or answered.
    """

    name: str = ""
    max_batch: int = 32

    def __init__(self) -> None:
        self.model_id: str = self.name
        self.dim: int | None = None
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    # -- what callers use ---------------------------------------------------------------
    async def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for ``texts`` (shape ``(len(texts), dim)``, unit rows)."""
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name=f"embedder-{self.name}")
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((list(texts), fut))
        return await fut

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def load(self) -> None:
        """Make the embedder ready (load a model, probe a server). Default: nothing."""

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError("embedder closed"))
            self._queue = None

    def describe(self) -> dict[str, Any]:
        return {"embedder": self.name, "model": self.model_id, "dim": self.dim}

    # -- what subclasses implement ------------------------------------------------------
    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch (at most ``max_batch`` texts); must not block the loop."""
        raise NotImplementedError

    # -- the batcher ---------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            jobs = [await queue.get()]
            # Gather whatever else is already waiting, up to max_batch texts.
            count = len(jobs[0][0])
            while not queue.empty() and count < self.max_batch:
                job = queue.get_nowait()
                jobs.append(job)
                count += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            try:
                parts = []
                for start in range(0, len(texts), self.max_batch):
                    parts.append(await self._embed_batch(texts[start : start + self.max_batch]))
                vectors = normalize(np.concatenate(parts, axis=0))
                if self.dim is None:
                    self.dim = int(vectors.shape[1])
            except asyncio.CancelledError:
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(RuntimeError("embedder closed"))
                raise
            except Exception as exc:
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            offset = 0
            for job_texts, fut in jobs:
                n = len(job_texts)
                if not fut.done():
                    fut.set_result(vectors[offset : offset + n])
                offset += n
