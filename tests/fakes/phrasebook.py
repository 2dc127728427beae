"""The "translation engine" behind the fake translation servers: a small phrasebook and
a naive language detector. Deterministic, so tests can assert exact translations.

Languages are named by their base code (``en``, ``de``, ``es``, ``fr``, ``ja``, ``pt``,
``zh``); each fake maps its own codes (``zh-Hans``, ``ZH-HANS``, ``zh-CN``, ``PT-BR``...)
onto these.
"""

from __future__ import annotations

import re

PHRASES: list[dict[str, str]] = [
    {
        "en": "Hello",
        "de": "Hallo",
        "es": "Hola",
        "fr": "Bonjour",
        "ja": "こんにちは",
        "pt": "Olá",
        "zh": "你好",
    },
    {
        "en": "Thank you",
        "de": "Danke",
        "es": "Gracias",
        "fr": "Merci",
        "ja": "ありがとう",
        "pt": "Obrigado",
        "zh": "谢谢",
    },
    {
        "en": "How is the weather today?",
        "de": "Wie ist das Wetter heute?",
        "es": "¿Qué tiempo hace hoy?",
        "fr": "Quel temps fait-il aujourd'hui ?",
        "ja": "今日の天気はどうですか？",
        "pt": "Como está o tempo hoje?",
        "zh": "今天天气怎么样？",
    },
]

NAMES = {
    "en": "English",
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "ja": "Japanese",
    "pt": "Portuguese",
    "zh": "Chinese",
}

_WORDS = {
    "en": {"the", "and", "is", "are", "you", "what", "this", "hello", "good", "weather"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "ich", "wie", "wetter"},
    "es": {"el", "la", "los", "y", "es", "que", "qué", "hace", "hoy"},
    "fr": {"le", "la", "les", "et", "est", "il", "quel", "fait", "bonjour"},
    "pt": {"o", "os", "e", "é", "está", "como", "tempo", "obrigado"},
}


def base(code: str) -> str:
    return code.split("-")[0].lower()


def find(text: str) -> tuple[dict[str, str], str] | None:
    folded = text.strip().casefold()
    for row in PHRASES:
        for lang, phrase in row.items():
            if phrase.casefold() == folded:
                return row, lang
    return None


def detect(text: str) -> tuple[str, float]:
    """(language, confidence 0..1)."""
    hit = find(text)
    if hit is not None:
        return hit[1], 0.95
    if re.search(r"[\u3040-\u30ff]", text):
        return "ja", 0.9
    if re.search(r"[\u4e00-\u9fff]", text):
        return "zh", 0.8
    words = set(re.findall(r"\w+", text.casefold()))
    scores = {lang: len(words & vocab) for lang, vocab in _WORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    if scores[best] == 0:
        return "en", 0.1
    return best, min(0.9, 0.3 + 0.2 * scores[best])


def translate(text: str, target: str, source: str | None = None) -> tuple[str, str]:
    """(translated text, source language used or detected)."""
    src = base(source) if source else detect(text)[0]
    tgt = base(target)
    hit = find(text)
    if hit is not None and tgt in hit[0]:
        return hit[0][tgt], src
    if src == tgt:
        return text, src
    return f"[{tgt}] {text}", src
