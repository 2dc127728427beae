"""A BERT encoder's ONNX graph, built from its safetensors weights with numpy and the
``onnx`` helper API (no PyTorch), and kept in a cache folder so it is built once.

The graph is the one ``torch.onnx.export`` gave for a sentence-transformers BERT model
(``BertModel`` -> ``last_hidden_state``), less the word embeddings' lookup: inputs
``words`` (float32, batch x tokens x hidden: :class:`WordTable` reads them from the
weights), ``mask``, ``types`` (int64, batch x tokens), output ``hidden`` (float32, batch x
tokens x hidden). Every linear layer
is a ``MatMul`` with its transposed weight followed by an ``Add`` of its bias, as in the
export, so that ONNX Runtime's dynamic int8 quantiser makes the same int8 copy of it (the
``-int8`` vector space stays the one it was).

Run as a module, it builds the cache of the packaged model (what ``scripts/setup.sh``
does after installing):  ``python -m builtin_plugins.memory.embedders.bert_onnx``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("llmmultichat.memory")

# Bump when the graph changes: cached files of another version are not used.
GRAPH_VERSION = 3
PRECISIONS = ("float32", "int8")
OPSET = 17
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


class UnsupportedModel(ValueError):
    """The folder's model is not a BERT encoder this builder knows (or has no
    safetensors weights)."""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file, as read-only arrays mapped from the file
    (nothing is read until used)."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    start = 8 + size
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise UnsupportedModel(f"tensor {name} has dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        raw = mapped[start + begin : start + end]
        tensors[name] = raw.view(dtype).reshape(info["shape"])
    return tensors


def model_config(folder: Path) -> dict[str, Any]:
    """The folder's ``config.json``, checked to be a BERT this builder can build."""
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UnsupportedModel(f"no readable config.json in {folder}") from exc
    if config.get("model_type") != "bert":
        raise UnsupportedModel(f"model_type {config.get('model_type')!r} is not bert")
    if config.get("hidden_act", "gelu") != "gelu":
        raise UnsupportedModel(f"activation {config.get('hidden_act')!r} is not gelu")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("position embeddings are not absolute")
    if not (folder / "model.safetensors").is_file():
        raise UnsupportedModel(f"no model.safetensors in {folder}")
    return config


def _weights(folder: Path) -> dict[str, np.ndarray]:
    tensors = read_safetensors(folder / "model.safetensors")
    # (some checkpoints name them "bert.embeddings...")
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class WordTable:
    """The word embeddings, read row by row from the weights' file when a text needs them
    (``os.pread``, through the page cache): the graph takes the words' vectors as an
    input, so the 47 MB table never sits in the process (a table in the graph, even mapped
    from a file, became resident a few pages around each row read: ~45 MB after a few
    hundred texts)."""

    def __init__(self, folder: Path) -> None:
        path = folder / "model.safetensors"
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        name = next(
            (
                k
                for k in (
                    "embeddings.word_embeddings.weight",
                    "bert.embeddings.word_embeddings.weight",
                )
                if k in header
            ),
            None,
        )
        if name is None or header[name]["dtype"] != "F32":
            raise UnsupportedModel(f"no float32 word embeddings in {path}")
        self.vocab, self.dim = (int(n) for n in header[name]["shape"])
        self._row = self.dim * 4
        self._start = 8 + size + int(header[name]["data_offsets"][0])
        self._fd = os.open(path, os.O_RDONLY)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of ``ids`` (any shape), shape ``ids.shape + (dim,)``."""
        unique, inverse = np.unique(ids, return_inverse=True)
        tokens = unique.tolist()
        if tokens and not (0 <= tokens[0] and tokens[-1] < self.vocab):
            raise ValueError("a token id is not in the vocabulary")
        fd, row, start = self._fd, self._row, self._start
        raw = b"".join([os.pread(fd, row, start + token * row) for token in tokens])
        rows = np.frombuffer(raw, dtype="<f4").reshape(len(tokens), self.dim)
        return rows[inverse.reshape(-1)].reshape(*ids.shape, self.dim)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            os.close(self._fd)


class _Graph:
    """The nodes and initialisers of the graph being built."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, *, transpose: bool = False) -> str:
        value = np.asarray(self.weights[name], dtype=np.float32)
        return self.const(name + (".T" if transpose else ""), value.T if transpose else value)

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._count}", **attrs)
        )
        return out

    def linear(self, x: str, prefix: str) -> str:
        product = self.op("MatMul", [x, self.weight(prefix + ".weight", transpose=True)])
        return self.op("Add", [self.weight(prefix + ".bias"), product])  # (the export's order)

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
            axis=-1,
            epsilon=eps,
        )


def build_graph(folder: Path) -> bytes:
    """The serialised ONNX model of the BERT encoder in ``folder``."""
    import onnx
    from onnx import TensorProto, helper

    config = model_config(folder)
    weights = _weights(folder)
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = _Graph(weights)
    i64 = lambda name, *v: g.const(name, np.array(v, dtype=np.int64))  # noqa: E731
    f32 = lambda name, v: g.const(name, np.array(v, dtype=np.float32))  # noqa: E731

    # Embeddings: words + positions (0..tokens-1) + token types, then LayerNorm.
    # (the words' vectors are an input: :class:`WordTable` reads them from the weights'
    # file, so the 47 MB table is never in memory)
    words = "words"
    shape = g.op("Shape", ["mask"])
    tokens = g.op("Gather", [shape, i64("one", 1)], axis=0)
    positions = g.op(
        "Slice",
        [g.weight("embeddings.position_embeddings.weight"), i64("zero_1d", 0), tokens],
    )
    types = g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), "types"], axis=0)
    x = g.op("Add", [g.op("Add", [words, types]), positions])
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    # The attention mask as transformers' SDPA attention makes it: 0 where attended,
    # -inf where padded, shape batch x 1 x 1 x tokens.
    attended = g.op(
        "Unsqueeze", [g.op("Cast", ["mask"], to=TensorProto.BOOL), i64("axes_1_2", 1, 2)]
    )
    mask = g.op("Where", [attended, f32("zero_f", [0.0]), f32("minus_inf", [-np.inf])])

    heads_shape = i64("heads_shape", 0, 0, heads, head_dim)  # batch, tokens, heads, head
    # The heads merged again: batch x tokens x -1, from the input's shape as the export
    # computes it. (With a constant shape, ONNX Runtime would fuse each attention block's
    # residual Add and LayerNorm, which the export's graph never had: the float results are
    # the same, but the int8 copy's are not quite, and its vectors must stay as they were.)
    merged_shape = g.op("Concat", [shape, i64("minus_one", -1)], axis=0)
    # q and k are each scaled by head^-1/4 (SDPA's way; the product is scaled by head^-1/2)
    scale = f32("scale", head_dim**-0.25)
    half, one, root2 = f32("half", 0.5), f32("one_f", 1.0), f32("root2", np.sqrt(2.0))

    def split(t: str, perm: list[int]) -> str:
        return g.op("Transpose", [g.op("Reshape", [t, heads_shape])], perm=perm)

    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}."
        q = split(g.linear(x, p + "attention.self.query"), [0, 2, 1, 3])
        k = split(g.linear(x, p + "attention.self.key"), [0, 2, 3, 1])
        v = split(g.linear(x, p + "attention.self.value"), [0, 2, 1, 3])
        q, k = g.op("Mul", [q, scale]), g.op("Mul", [k, scale])
        scores = g.op("Add", [g.op("MatMul", [q, k]), mask])
        probs = g.op("Softmax", [scores], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merged_shape])
        attended = g.linear(context, p + "attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x]), p + "attention.output.LayerNorm", eps)
        # GELU, exact (erf), written as the export writes it: x * 0.5 * (1 + erf(x / √2))
        h = g.linear(x, p + "intermediate.dense")
        erf = g.op("Erf", [g.op("Div", [h, root2])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, one])]), half])
        out = g.linear(h, p + "output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), p + "output.LayerNorm", eps)
    g.nodes.append(helper.make_node("Identity", [x], ["hidden"], name="hidden"))

    axes = ["batch", "tokens"]
    graph = helper.make_graph(
        g.nodes,
        "bert_last_hidden_state",
        [
            helper.make_tensor_value_info("words", TensorProto.FLOAT, [*axes, hidden]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, axes),
            helper.make_tensor_value_info("types", TensorProto.INT64, axes),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [*axes, hidden])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="llmmultichat",
        producer_version=str(GRAPH_VERSION),
    )
    model.ir_version = 8  # (what every ONNX Runtime since 1.10 reads)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


class _QuietQuantizer(logging.Filter):
    """The quantiser logs a line per tensor, and advice, on the root logger: while it
    runs, the root logger's own records are dropped (ours have names)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root"


def quantized(model: bytes) -> bytes:
    """``model`` with the weights of its matrix products in int8 (per output channel; the
    activations are scaled at each call): a quarter of the bytes to read per call. ONNX
    Runtime's quantiser writes its result to a file: a temporary folder, removed at once."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="llmmc-int8-") as tmp:
            target = Path(tmp) / "model-int8.onnx"
            quantize_dynamic(
                onnx.load_from_string(model),
                target,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
            )
            return target.read_bytes()
    finally:
        root.removeFilter(quiet)


# ---- the cache ----------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$LLMMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmmultichat``, else
    ``~/.cache/llmmultichat``."""
    explicit = os.environ.get("LLMMC_CACHE_DIR", "")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "llmmultichat"


def fingerprint(folder: Path) -> str:
    """Names the weights (their file's size and tensor table, the model's config) and
    this builder's version: a cached graph is used only for the same of all of them."""
    digest = hashlib.sha256(f"v{GRAPH_VERSION}|".encode())
    weights = folder / "model.safetensors"
    with weights.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        digest.update(f.read(size))
    digest.update(str(weights.stat().st_size).encode())
    digest.update((folder / "config.json").read_bytes())
    return digest.hexdigest()[:16]


def cached_path(folder: Path, precision: str, cache_dir: Path | None = None) -> Path:
    base = cache_dir if cache_dir is not None else default_cache_dir()
    return (
        base
        / "embedders"
        / f"{folder.parent.name}-{folder.name}-{fingerprint(folder)}-{precision}.onnx"
    )


def _write_atomically(path: Path, model: bytes) -> None:
    """``model`` saved as ``path``, with its tensors of 1 MB and more in ``path`` +
    ``.data`` beside it (ONNX Runtime maps that file into memory instead of copying it,
    and sessions share its pages; loading by path, the graph is not held in Python).
    Both are written in a temporary folder beside them, then renamed, the data first:
    another process (a second worker building at the same time) never reads half a
    graph."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    with tempfile.TemporaryDirectory(prefix=path.name, dir=path.parent) as tmp:
        onnx.save_model(
            onnx.load_from_string(model),
            Path(tmp) / path.name,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1 << 20,
        )
        for item in Path(tmp).iterdir():
            os.chmod(item, 0o644)  # (readable by the server's user too)
        if (Path(tmp) / data.name).exists():  # (no tensor of the int8 graph is that large)
            os.replace(Path(tmp) / data.name, data)
        os.replace(Path(tmp) / path.name, path)


def load_or_build(
    folder: Path, precision: str, cache_dir: Path | None = None
) -> tuple[str | bytes, bool]:
    """The graph of ``folder``'s model in ``precision`` ("float32" or "int8"), for
    ``onnxruntime.InferenceSession``: the cached file's path (the graph is built and
    cached on a miss), or the serialised graph when the cache folder is not writable;
    and whether it came from the cache. The int8 copy is quantised from the float graph
    (built in memory for it, not cached) and checked against it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    path = cached_path(folder, precision, cache_dir)
    if path.is_file():
        return str(path), True
    model = build_graph(folder)
    if precision == "int8":
        exact, model = model, quantized(model)
        check_near(exact, model, folder)
        del exact
    try:
        _write_atomically(path, model)
    except OSError as exc:
        log.warning("memory: cannot cache the ONNX graph in %s (%s); built in memory", path, exc)
        return model, False
    log.info("memory: built the ONNX graph of %s (%s) into %s", folder, precision, path)
    # Graphs of earlier weights or builder versions of this folder are not used again.
    for stale in path.parent.glob(f"{folder.parent.name}-{folder.name}-*-{precision}.onnx*"):
        if not stale.name.startswith(path.name):
            with contextlib.suppress(OSError):
                stale.unlink()
    return str(path), False


# The int8 copy is a vector space of its own, near the float one: the lowest cosine between
# their mean-pooled vectors on a probe (measured: 0.97 for "ok" and 0.985 and more on 300
# sentences); below it the copy is broken.
NEAR_VECTORS = 0.95


def check_near(exact: bytes, copy: bytes, folder: Path) -> None:
    """Raise :class:`UnsupportedModel` when ``copy`` does not give vectors near
    ``exact``'s on probes (token ids drawn from the vocabulary: 3, 20 and 256 tokens)."""
    import onnxruntime

    rng = np.random.default_rng(7)
    sessions = [
        onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (exact, copy)
    ]
    table = WordTable(folder)
    for length in (3, 20, 256):
        ids = rng.integers(1000, table.vocab, size=(1, length), dtype=np.int64)
        ids[0, 0], ids[0, -1] = 101, 102  # ([CLS] and [SEP] in BERT's vocabularies)
        inputs = {
            "words": table.lookup(ids),
            "mask": np.ones_like(ids),
            "types": np.zeros_like(ids),
        }
        a, b = (s.run(None, inputs)[0].mean(axis=1)[0] for s in sessions)
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        if cos < NEAR_VECTORS:
            raise UnsupportedModel(f"the int8 copy is off (cosine {cos:.4f} on {length} tokens)")
