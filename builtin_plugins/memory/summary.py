"""Summaries for the mid-term tier.

``summarize`` asks, in order: any plugin's ``summarize_text`` hook (the chat plugin
answers with its LLM), the ``llm`` service directly, and finally the extractive summary
below (no model: the sentences with the most frequent content words, in their order).
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from sdk import HookCaller, Identity, Services
from sdk.services import LLM

_STOPWORDS = set(
    """a an the and or but if then so to of in on at by for with from as is are was were be
    been being it its this that these those i you he she we they me him her us them my your
    his our their what which who whom do does did have has had not no yes just very can could
    would should will shall may might must about into over than too also there here when where
    how why all any some more most other such only own same s t don ok okay""".split()
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?。！？])\s+|\n+", text) if s.strip()]


def extractive_summary(text: str, max_words: int) -> str:
    sentences = _sentences(text)
    if not sentences:
        return ""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS and len(w) > 2]
    freq = Counter(words)
    scored = []
    for i, sentence in enumerate(sentences):
        tokens = [w for w in re.findall(r"\w+", sentence.lower()) if w in freq]
        score = sum(freq[w] for w in set(tokens)) / (1 + len(tokens)) ** 0.5
        scored.append((score, i))
    chosen: list[int] = []
    count = 0
    for _, i in sorted(scored, key=lambda x: (-x[0], x[1])):
        n = len(sentences[i].split())
        if count + n > max_words and chosen:
            continue
        chosen.append(i)
        count += n
        if count >= max_words:
            break
    out = " ".join(sentences[i] for i in sorted(chosen))
    words_out = out.split()
    if len(words_out) > max_words:
        out = " ".join(words_out[:max_words]) + " …"
    return out


async def summarize(
    hooks: HookCaller,
    services: Services,
    identity: Identity | None,
    text: str,
    max_words: int,
    log: logging.Logger,
) -> tuple[str, str]:
    """``(summary, method)`` with method ``hook``, ``llm`` or ``extractive``."""
    try:
        answer = await hooks.first(
            "summarize_text", identity=identity, text=text, max_words=max_words
        )
        if isinstance(answer, str) and answer.strip():
            return answer.strip(), "hook"
    except Exception as exc:  # another plugin's failure must not lose the summary
        log.warning("summarize_text hook failed: %s", exc)
    llm = services.get(LLM)
    if llm is not None:
        try:
            answer = await llm.complete(
                [
                    {
                        "role": "system",
                        "content": (
                            f"Summarize the conversation below in at most {max_words} words. "
                            "Keep names, facts, decisions and open questions. Answer with the summary only."
                        ),
                    },
                    {"role": "user", "content": text},
                ],
                max_tokens=max_words * 2,
                temperature=0.2,
                identity=identity,
            )
            if isinstance(answer, str) and answer.strip():
                words = answer.split()
                if len(words) > max_words * 2:
                    answer = " ".join(words[: max_words * 2])
                return answer.strip(), "llm"
        except Exception as exc:
            log.warning("LLM summary failed, using the extractive one: %s", exc)
    return extractive_summary(text, max_words), "extractive"
