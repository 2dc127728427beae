"""``hashing``: no model at all. Character n-grams and words hashed into a fixed vector.

Feature hashing (the "hashing trick"): each feature goes to bucket ``crc32(f) % dim``
with a sign from another bit of the hash, so collisions cancel on average. Features are
the lower-cased words, and the character 3- to 5-grams of each word padded with spaces
(so "running" and "runs" share "run"). Deterministic across processes (crc32, not
Python's salted ``hash``). It captures spelling overlap, not meaning: paraphrases with
different words score low, which is why it is only the fallback.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.embedder import Embedder

_WORD = re.compile(r"\w+", re.UNICODE)


def features(text: str, ngram_range: tuple[int, int] = (3, 5)) -> list[tuple[str, float]]:
    words = _WORD.findall(text.lower())
    out: list[tuple[str, float]] = []
    for word in words:
        out.append(("w:" + word, 1.0))
        padded = f" {word} "
        lo, hi = ngram_range
        for n in range(lo, hi + 1):
            if len(padded) < n:
                continue
            for i in range(len(padded) - n + 1):
                out.append(("c:" + padded[i : i + n], 0.5))
    return out


def hash_vectors(texts: list[str], dim: int) -> np.ndarray:
    matrix = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for feature, weight in features(text):
            h = zlib.crc32(feature.encode("utf-8"))
            sign = 1.0 if (h >> 31) & 1 else -1.0
            matrix[row, h % dim] += sign * weight
    # Sub-linear term frequency keeps one repeated word from dominating.
    return np.sign(matrix) * np.sqrt(np.abs(matrix))


class HashingEmbedder(Embedder):
    type = "hashing"
    max_batch = 256

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.dim = dim
        self.model_id = f"hashing-ngram3-5-{dim}"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> HashingEmbedder:
        return cls(int(settings.get("hashing_dim") or 512))

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        assert self.dim is not None
        return await self.run_blocking(hash_vectors, texts, self.dim)
