"""The three tools' logic: limits, language matching (with the provider's list cached),
and results in the SPEC's shape."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sdk import Identity, errors
from sdk.metrics import CounterMetric

from .languages import CODE_PATTERN, SOURCE_PATTERN, Language, match, same_language
from .providers import Provider

_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}

TRANSLATE_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {**_TEXT, "description": "The text to translate."},
        "target_lang": {
            "type": "string",
            "maxLength": 35,
            "pattern": CODE_PATTERN,
            "description": 'Language code to translate into, e.g. "en", "ja", "pt-BR".',
        },
        "source_lang": {
            "type": "string",
            "maxLength": 35,
            "pattern": SOURCE_PATTERN,
            "description": 'Language code of the text; omit (or "auto") to detect it.',
        },
    },
    "required": ["text", "target_lang"],
    "additionalProperties": False,
}
TRANSLATE_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "original_text": {"type": "string"},
        "translated_text": {"type": "string"},
        "source_lang": {
            "type": "string",
            "description": 'The source language asked for, or "auto" when none was given.',
        },
        "target_lang": {"type": "string"},
        "detected_source_lang": {
            "type": ["string", "null"],
            "description": "The source language the provider detected; null when "
            "source_lang was given or the provider does not say.",
        },
        "provider": {"type": "string"},
    },
    "required": [
        "original_text",
        "translated_text",
        "source_lang",
        "target_lang",
        "detected_source_lang",
        "provider",
    ],
    "additionalProperties": False,
}
DETECT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {**_TEXT, "description": "The text whose language is wanted."}},
    "required": ["text"],
    "additionalProperties": False,
}
DETECT_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "language": {"type": "string"},
        "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "provider": {"type": "string"},
    },
    "required": ["language", "confidence", "provider"],
    "additionalProperties": False,
}
LANGUAGES_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}
LANGUAGES_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "provider": {"type": "string"},
        "languages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "name": {"type": "string"},
                    "source": {"type": "boolean"},
                    "target": {"type": "boolean"},
                },
                "required": ["code", "name", "source", "target"],
            },
        },
    },
    "required": ["provider", "languages"],
    "additionalProperties": False,
}


class TranslateService:
    def __init__(
        self,
        provider: Provider,
        max_text_chars: int,
        languages_ttl: float,
        cache_lookups: CounterMetric,
    ) -> None:
        self.provider = provider
        self.cache_hits = cache_lookups.labels(result="hit")
        self.cache_misses = cache_lookups.labels(result="miss")
        self.max_text_chars = max_text_chars
        self.languages_ttl = languages_ttl
        self._languages: list[Language] | None = None
        self._languages_at = 0.0
        self._lock = asyncio.Lock()

    def _check_length(self, text: str) -> None:
        if len(text) > self.max_text_chars:
            raise errors.PayloadTooLarge(
                f"The text has {len(text)} characters; at most {self.max_text_chars} are "
                "translated at once (setting plugins.translate.max_text_chars)",
                code="TEXT_TOO_LONG",
                extra={"max_text_chars": self.max_text_chars},
            )

    async def languages(self) -> list[Language]:
        """The provider's list, fetched once per ``languages_cache_seconds``; failures are
        not cached."""
        async with self._lock:
            fresh = time.monotonic() - self._languages_at < self.languages_ttl
            if self._languages is None or not fresh:
                self.cache_misses.inc()
                self._languages = await self.provider.languages()
                self._languages_at = time.monotonic()
            else:
                self.cache_hits.inc()
            return self._languages

    async def translate(
        self, text: str, target_lang: str, source_lang: str | None, identity: Identity | None
    ) -> dict[str, Any]:
        self._check_length(text)
        langs = await self.languages()
        target = match(target_lang, langs, "target", self.provider.name)
        source = None
        if source_lang and source_lang.lower() != "auto":
            source = match(source_lang, langs, "source", self.provider.name)
        if source is not None and same_language(source, target):
            translated, detected = text, None
        else:
            result = await self.provider.translate(text, target, source, identity)
            translated, detected = result.text, result.detected
        return {
            "original_text": text,
            "translated_text": translated,
            "source_lang": source.code if source else "auto",
            "target_lang": target.code,
            "detected_source_lang": detected if source is None else None,
            "provider": self.provider.name,
        }

    async def detect(self, text: str, identity: Identity | None) -> dict[str, Any]:
        self._check_length(text)
        found = await self.provider.detect(text, identity)
        return {
            "language": found.language,
            "confidence": found.confidence,
            "provider": self.provider.name,
        }

    async def list_languages(self) -> dict[str, Any]:
        langs = await self.languages()
        return {
            "provider": self.provider.name,
            "languages": [lang.to_dict() for lang in sorted(langs, key=lambda x: x.code)],
        }
