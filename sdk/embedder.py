"""The embedder contract: what a plugin implements to add a way of turning texts into vectors.

An embedder *type* is a subclass of :class:`Embedder` that sets ``type`` and implements
:meth:`Embedder._embed_batch`. A plugin offers its types through the
``register_embedders`` hook (a list of classes); the memory plugin builds the one that
``[plugins.memory] embedder`` names, from the settings of ``[plugins.memory]`` (see
:meth:`Embedder.from_settings`)::

    import numpy as np
    from sdk import Embedder, Plugin, hookimpl

    class CountEmbedder(Embedder):
        type = "count"

        def __init__(self, settings=None):
            super().__init__(settings)
            self.dim = 4
            self.model_id = "count-4"

        async def _embed_batch(self, texts):
            # anything that blocks goes through run_blocking (a worker thread)
            return await self.run_blocking(
                lambda: np.array([[len(t), t.count(" "), 1, 0] for t in texts], np.float32)
            )

    class CountPlugin(Plugin):
        name = "count"

        @hookimpl
        def register_embedders(self):
            return [CountEmbedder]

What an embedder gives: L2-normalised float32 vectors, one row per text, all of ``dim``
numbers; ``model_id`` names the vector space (stored next to every vector, so vectors of
two models are never compared: change it when the vectors change). The base class
batches and caches for every type; a subclass sees only batches of at most ``max_batch``
texts, and must not block the event loop: blocking work (a model's inference, hashing a
large batch) runs through :meth:`Embedder.run_blocking`, in a worker thread of the
current lane; network calls simply await.

How the base class runs it: all work that blocks runs in a worker thread; concurrent
callers are gathered into one batch, so ten chat turns arriving together cost one model
call, not ten.

Two lanes: the foreground lane serves what a reply waits for (the query of a chat turn, a
search); the background lane serves what nobody waits for (storing turns, extraction,
re-embedding). Each lane has its own batcher and its own worker thread, the background
one at a lower CPU priority, so a query never queues behind a batch of stored turns. A
foreground call that finds its lane idle is embedded in the caller's own task (the
worker task would start a loop turn later); calls arriving meanwhile are batched.

Recent texts' vectors are kept (``cache_size`` texts of at most ``CACHE_MAX_CHARS``
characters, least recently used dropped first): the message a turn searched with is the
message memory then stores, and greetings repeat.

Failures: raise ``sdk.errors`` Problems (``BadGateway``, ``GatewayTimeout``,
``ServiceUnavailable``) for an upstream that fails; anything else is reported by the
memory plugin as ``503 EMBEDDER_UNAVAILABLE`` naming the embedder type.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import numpy as np

from .threads import lower_thread_priority

T = TypeVar("T")
CACHE_MAX_CHARS = 2000
# Which lane the running batch belongs to, for run_blocking.
_LANE: contextvars.ContextVar[str] = contextvars.ContextVar("embed_lane", default="foreground")


def normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: np.ndarray = (matrix / norms).astype(np.float32, copy=False)
    return out


class Embedder:
    """Base class of embedder types.

    Subclasses set ``type`` and implement :meth:`_embed_batch`; they may override
    :meth:`from_settings`, :meth:`load`, :meth:`close`, :meth:`describe` and
    :meth:`unavailable_reason`. ``model_id`` names the vector space (stored next to every
    vector, so vectors of two models are never compared; default: ``type``); ``dim`` is
    known once the model is loaded or has answered (None until then).
    """

    # The name ``[plugins.memory] embedder`` gives to choose this type.
    type: ClassVar[str] = ""
    # The most texts one call of _embed_batch gets.
    max_batch: ClassVar[int] = 32
    # Recent texts whose vectors are kept (0: none).
    cache_size: ClassVar[int] = 4096

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings: dict[str, Any] = dict(settings or {})
        self.model_id: str = self.type
        self.dim: int | None = None
        self._queues: dict[str, asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._lane_pools: dict[str, ThreadPoolExecutor] = {}
        self._busy: dict[str, int] = {}  # lane -> embeddings under way (worker or callers)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Embedder:
        """The embedder the memory plugin uses, built from ``settings``: the keys of the
        table ``[plugins.memory.embedder_settings]`` (free-form: each type reads its own)
        over the embedder keys of ``[plugins.memory]`` (``base_url``, ``api_key``,
        ``model``, ``model_path``, ``embed_timeout_seconds``, ``hashing_dim``,
        ``local_runtime``, ``local_precision``). Default: ``cls(settings)``. Raise
        ``ValueError`` for settings that cannot work (the plugin reports the message in
        ``/health`` and its routes answer 503)."""
        return cls(settings)

    @property
    def name(self) -> str:
        """The embedder's type (what ``describe()`` reports as ``embedder``)."""
        return self.type

    def unavailable_reason(self) -> str | None:
        """Why this embedder cannot serve with its settings (None when it can): the memory
        plugin then reports ``unavailable`` and its routes answer 503."""
        return None

    # -- what callers use ---------------------------------------------------------------
    async def embed(self, texts: list[str], *, background: bool = False) -> np.ndarray:
        """Vectors for ``texts`` (shape ``(len(texts), dim)``, unit rows).
        ``background``: nobody is waiting for the answer (it yields to foreground work)."""
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        held = [self._cached(t) for t in texts]
        missing = [t for t, v in zip(texts, held, strict=True) if v is None]
        found: dict[str, np.ndarray] = {}
        if missing:
            fresh = iter(await self._submit(list(dict.fromkeys(missing)), background))
            found = dict(zip(dict.fromkeys(missing), fresh, strict=False))
            for t, v in found.items():
                self._remember(t, v)
        rows = [v if v is not None else found[t] for t, v in zip(texts, held, strict=True)]
        out: np.ndarray = np.stack(rows).astype(np.float32, copy=False)
        return out

    async def embed_one(self, text: str) -> np.ndarray:
        vector: np.ndarray = (await self.embed([text]))[0]
        return vector

    async def load(self) -> None:
        """Make the embedder ready (load a model, probe a server); the memory plugin calls
        it once at start, in the background. Default: nothing."""

    async def close(self) -> None:
        """Release what the embedder holds (an override calls ``super().close()``)."""
        for worker in self._workers.values():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        self._workers.clear()
        for queue in self._queues.values():
            while not queue.empty():
                _, fut = queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError("embedder closed"))
        self._queues.clear()
        for pool in self._lane_pools.values():
            pool.shutdown(wait=False)
        self._lane_pools.clear()
        self._cache.clear()

    def describe(self) -> dict[str, Any]:
        """What ``/health`` and ``GET /api/v1/memory/stats`` show of the embedder."""
        return {"embedder": self.name, "model": self.model_id, "dim": self.dim}

    # -- what subclasses implement ------------------------------------------------------
    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch (at most ``max_batch`` texts); must not block the loop: run
        blocking work through :meth:`run_blocking`."""
        raise NotImplementedError

    def _init_lane_thread(self, background: bool) -> None:
        """Runs first in each lane's worker thread."""
        if background:
            lower_thread_priority()

    @staticmethod
    def in_foreground() -> bool:
        """Whether the batch being embedded belongs to the foreground lane."""
        return _LANE.get() == "foreground"

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the current lane's worker thread."""
        lane = _LANE.get()
        pool = self._lane_pools.get(lane)
        if pool is None:
            pool = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"embed-{lane}",
                initializer=self._init_lane_thread,
                initargs=(lane == "background",),
            )
            self._lane_pools[lane] = pool
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    # -- the cache ------------------------------------------------------------------------
    def _cached(self, text: str) -> np.ndarray | None:
        vector = self._cache.get(text)
        if vector is not None:
            self._cache.move_to_end(text)
        return vector

    def _remember(self, text: str, vector: np.ndarray) -> None:
        if len(text) > CACHE_MAX_CHARS or self.cache_size <= 0:
            return
        self._cache[text] = vector.copy()  # not a view that would keep its whole batch alive
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- the batchers ----------------------------------------------------------------------
    async def _submit(self, texts: list[str], background: bool) -> np.ndarray:
        lane = "background" if background else "foreground"
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = asyncio.Queue()
            self._workers[lane] = asyncio.create_task(
                self._run(queue, lane), name=f"embedder-{self.name}-{lane}"
            )
        if not background and not self._busy.get(lane) and queue.empty():
            # Nothing in the lane's way: embed in the caller's task, as the worker task
            # would only start a loop turn later (a reply waits for this). Callers arriving
            # meanwhile queue, and the worker batches them.
            self._busy[lane] = self._busy.get(lane, 0) + 1
            token = _LANE.set(lane)
            try:
                return await self._embed_texts(texts)
            finally:
                _LANE.reset(token)
                self._busy[lane] -= 1
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await queue.put((texts, fut))
        return await fut

    async def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` in batches of at most ``max_batch``, in the current lane."""
        parts = []
        for start in range(0, len(texts), self.max_batch):
            parts.append(await self._embed_batch(texts[start : start + self.max_batch]))
        vectors = normalize(np.concatenate(parts, axis=0))
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        return vectors

    async def _run(
        self, queue: asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]], lane: str
    ) -> None:
        _LANE.set(lane)
        while True:
            jobs = [await queue.get()]
            # Gather whatever else is already waiting, up to max_batch texts.
            count = len(jobs[0][0])
            while not queue.empty() and count < self.max_batch:
                job = queue.get_nowait()
                jobs.append(job)
                count += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            self._busy[lane] = self._busy.get(lane, 0) + 1
            try:
                vectors = await self._embed_texts(texts)
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
            finally:
                self._busy[lane] -= 1
            offset = 0
            for job_texts, fut in jobs:
                n = len(job_texts)
                if not fut.done():
                    fut.set_result(vectors[offset : offset + n])
                offset += n


def embedder_class_problem(value: object) -> str | None:
    """Why ``value`` cannot be an embedder type (None when it can): what the memory plugin
    checks of every class a ``register_embedders`` hook returns."""
    if not (isinstance(value, type) and issubclass(value, Embedder)):
        return f"{value!r} is not a subclass of sdk.Embedder"
    if value is Embedder or not value.type:
        return f"{value.__qualname__} sets no embedder type (the class attribute 'type')"
    if value._embed_batch is Embedder._embed_batch:
        return f"{value.__qualname__} does not implement _embed_batch()"
    return None


def collect_embedder_classes(
    contributed: list[tuple[str, Any]],
) -> tuple[dict[str, type[Embedder]], list[str]]:
    """The embedder types that plugins' ``register_embedders`` returned (``(plugin,
    answer)`` pairs, as ``HookCaller.results`` gives them): ``type -> class``, the first
    plugin to register a type keeping it, and a message for each answer refused (naming
    its plugin)."""
    types: dict[str, type[Embedder]] = {}
    owners: dict[str, str] = {}
    problems: list[str] = []
    for plugin, classes in contributed:
        if not isinstance(classes, list | tuple):
            problems.append(
                f"register_embedders of plugin {plugin!r} returned {type(classes).__name__}, "
                "not a list of sdk.Embedder subclasses"
            )
            continue
        for cls in classes:
            problem = embedder_class_problem(cls)
            if problem:
                problems.append(f"register_embedders of plugin {plugin!r}: {problem}")
                continue
            owner = owners.setdefault(cls.type, plugin)
            if owner != plugin:
                problems.append(
                    f"plugin {plugin!r} registers embedder type {cls.type!r}, "
                    f"which plugin {owner!r} already registered"
                )
                continue
            types.setdefault(cls.type, cls)
    return types, problems
