"""Keyword evidence: the words a memory is indexed under, and how hybrid search ranks.

Terms (``terms``): the text is NFKC-normalised and lower-cased (full-width letters become
ASCII ones). Runs of letters or digits become words; English stop words are dropped and a
light suffix stripping makes "paintings", "painting" and "painted" one term. Runs of CJK
characters (kanji, hiragana, katakana, hangul), which are written without spaces, become
overlapping character bigrams ("東京タワー" → 東京, 京タ, タワ, ワー), the usual way to
search Japanese, Chinese and Korean without a dictionary; a lone CJK character is a term
of its own.

The index itself (``memory_terms``: one row per memory and term, with its count and the
memory's length) lives in SQL on both engines (store.py) and is scored with BM25
(Robertson & Zaragoza's k1 = 1.2, b = 0.75).

Hybrid ranking (``fuse``): reciprocal rank fusion (Cormack et al., SIGIR 2009) of the
semantic ranking (cosine of the embeddings) and the keyword ranking (BM25):
``Σ weight / (RRF_K + rank)`` over the lists a memory appears in.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

BM25_K1 = 1.2
BM25_B = 0.75
RRF_K = 5  # small: first places weigh much more than the tail (see docs/memory.md, LoCoMo)
MAX_TERMS = 2000  # terms kept per memory (a long knowledge chunk), the most frequent
MAX_QUERY_TERMS = 64
MAX_TERM_CHARS = 64

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"  # hangul
    "\uff66-\uff9f"  # half-width katakana (NFKC makes them full-width anyway)
)
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:'[^\W_{_CJK}]+)*")
_IS_CJK = re.compile(rf"[{_CJK}]")

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves s t d ll m re ve don didn doesn isn wasn aren weren won
    shouldn couldn wouldn hasn haven hadn also yeah yes oh hey hi wow""".split()
)


def _stem(word: str) -> str:
    """A light English suffix stripping (plural, -ing, -ed, -ly): enough to tie word forms
    together without a stemmer's dictionary; words of other languages are left alone
    unless they happen to end the same way."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) <= 3 or not word.isascii():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    elif word.endswith("ly") and len(word) > 4:
        return word[:-2]
    else:
        return word
    # painting -> paint, stopped -> stopp -> stop; "baked" -> "bak" stays apart from "bake"
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The terms of ``text``, in order, repeats kept (see the module's docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if _IS_CJK.match(token):
            if len(token) == 1:
                out.append(token)
            else:
                out.extend(token[i : i + 2] for i in range(len(token) - 1))
            continue
        if token in STOP_WORDS:
            continue
        stem = _stem(token)
        if stem and stem not in STOP_WORDS:
            out.append(stem[:MAX_TERM_CHARS])
    return out


def term_counts(text: str) -> tuple[Counter[str], int]:
    """``(count of each term, length in terms)`` of a memory's text, at most MAX_TERMS
    distinct terms (the most frequent)."""
    found = terms(text)
    counts = Counter(found)
    if len(counts) > MAX_TERMS:
        counts = Counter(dict(counts.most_common(MAX_TERMS)))
    return counts, len(found)


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, at most MAX_QUERY_TERMS."""
    return list(dict.fromkeys(terms(text)))[:MAX_QUERY_TERMS]


def fuse(
    rankings: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion of several rankings of ``(id, score)``, best first: each
    id's ``Σ weight / (RRF_K + rank)``, scaled so that first place in every ranking is
    1.0. Equal scores share a rank (the first of them), so ties do not depend on the
    order a store returned them in."""
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    total = sum(w / (RRF_K + 1) for w in weights) or 1.0
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        rank, previous = 0, None
        for position, (memory_id, score) in enumerate(ranking, start=1):
            score = round(score, 9)
            if score != previous:
                rank, previous = position, score
            fused[memory_id] = fused.get(memory_id, 0.0) + weight / (RRF_K + rank)
    return {k: v / total for k, v in fused.items()}
