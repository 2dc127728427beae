"""Bag of words: an embedder type written the way any third party would, with only the SDK.

It needs no model and no network: each lower-cased word of a text counts once in one of
``dim`` buckets (chosen by the word's CRC-32, so every process agrees), and the memory
plugin normalises the counts to unit length. Texts that share words are close; a
paraphrase with other words is not (a real model's vectors carry meaning). Small,
deterministic and fast: for tests, demos, and as a pattern for a real embedder.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk import Embedder, Plugin, hookimpl

_WORD = re.compile(r"\w+", re.UNICODE)


def bag_of_words(texts: list[str], dim: int) -> np.ndarray:
    """One row of word counts per text, each word in bucket ``crc32(word) % dim``."""
    matrix = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            matrix[row, zlib.crc32(word.encode("utf-8")) % dim] += 1.0
    return matrix


class BowEmbedder(Embedder):
    """``[plugins.memory] embedder = "bow"``; settings (``[plugins.memory.embedder_settings]``):
    ``dim``, the number of buckets (default 64, 8 to 4096)."""

    type = "bow"
    max_batch = 256

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        dim = int(self.settings.get("dim", 64))
        if not 8 <= dim <= 4096:
            raise ValueError(f"dim must be from 8 to 4096, not {dim}")
        self.dim = dim
        # the vector space: vectors of another dim (or another embedder) are never compared
        self.model_id = f"bow-{dim}"

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        # Counting words blocks (a little): it runs in the embedder's worker thread.
        assert self.dim is not None
        return await self.run_blocking(bag_of_words, texts, self.dim)


class BowPlugin(Plugin):
    name = "bow"
    version = "1.0.0"
    description = "A bag-of-words embedder type (bow) for the memory plugin"
    config_schema = {"type": "object", "additionalProperties": False}

    @hookimpl
    def register_embedders(self) -> list[type[Embedder]]:
        return [BowEmbedder]
