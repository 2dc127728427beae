"""Which embedder the memory plugin uses: the type ``[plugins.memory] embedder`` names,
among the types plugins register (``register_embedders``; ours come the same way),
built from its settings."""

from __future__ import annotations

import logging
from typing import Any

from sdk.embedder import Embedder

from .hashing import HashingEmbedder
from .local import LocalEmbedder, local_model_available
from .openai import OpenAIEmbedder

BUILTIN_EMBEDDERS: tuple[type[Embedder], ...] = (LocalEmbedder, OpenAIEmbedder, HashingEmbedder)
# The keys of [plugins.memory] every embedder type's settings start from.
EMBEDDER_KEYS = (
    "base_url",
    "api_key",
    "model",
    "model_path",
    "local_runtime",
    "local_precision",
    "embed_timeout_seconds",
    "hashing_dim",
)


def choose_embedder(
    types: dict[str, type[Embedder]], config: dict[str, Any], log: logging.Logger
) -> tuple[Embedder, str, list[str]]:
    """``(embedder, why it cannot serve or "", degradations)``. An embedder that cannot
    serve makes the plugin unavailable (503 naming why; a hashing embedder stands in so
    the plugin still starts); ``local`` without its model falls back to ``hashing``
    (degraded)."""
    kind = str(config["embedder"])
    settings = {k: config[k] for k in EMBEDDER_KEYS}
    settings.update(config.get("embedder_settings") or {})
    degraded: list[str] = []
    cls = types.get(kind)
    if kind == "local" and cls is LocalEmbedder:
        ok, why = local_model_available(str(config["model_path"] or ""))
        if not ok:
            note = f"local embedding model not available ({why}); using the hashing embedder"
            log.warning("memory: %s: search quality is much lower", note)
            degraded.append(note)
            cls = HashingEmbedder
    reason: str | None = None
    embedder: Embedder | None = None
    if cls is None:
        known = ", ".join(sorted(types)) or "none"
        reason = f"no embedder type {kind!r} is registered (known: {known})"
    else:
        try:
            embedder = cls.from_settings(settings)
            if not isinstance(embedder, Embedder):
                raise TypeError(f"{cls.__qualname__}.from_settings gave no sdk.Embedder")
            reason = embedder.unavailable_reason()
        except Exception as exc:
            log.exception("memory: the embedder %r could not be built", kind)
            reason = f"embedder {kind!r} could not be built: {exc}"
            embedder = None
    if reason:
        log.warning("memory: %s; searching and storing answer 503", reason)
    if embedder is None:
        embedder = HashingEmbedder(int(config["hashing_dim"]))
    return embedder, reason or "", degraded
