"""Translation by an LLM: the ``"llm"`` service the chat plugin publishes (its default
provider, or ``llm_provider``), so translation works on the embedded defaults with no
translation service. Needs the chat plugin enabled; without it, calls answer 503."""

from __future__ import annotations

import re
from typing import Any

from sdk import Identity, LLMService, errors, services

from ..languages import LLM_LANGUAGES, Language
from . import Detection, Translation

TRANSLATE_PROMPT = (
    "You are a translation engine. Translate the user's message {source}into {target}. "
    "Reply with the translation only: no quotes, notes, explanations or transliteration."
)
DETECT_PROMPT = (
    "Identify the language of the user's message. Reply with its ISO 639-1 code only, "
    "for example: en"
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "「": "」", "«": "»"}


class LLMTranslator:
    name = "llm"

    def __init__(self, context: Any, llm_provider: str) -> None:
        self.context = context
        self.llm_provider = llm_provider or None

    def service(self) -> LLMService | None:
        llm = self.context.services.get(services.LLM)
        return llm if isinstance(llm, LLMService) else None

    def _require(self) -> LLMService:
        llm = self.service()
        if llm is None:
            raise errors.ServiceUnavailable(
                "The translate provider 'llm' uses the chat plugin's LLM: add \"chat\" to "
                "plugins.enabled (or choose another plugins.translate.provider)",
                code="LLM_UNAVAILABLE",
                extra={"setting": "plugins.enabled"},
            )
        return llm

    async def _complete(
        self, messages: list[dict[str, Any]], max_tokens: int, identity: Identity | None
    ) -> str:
        llm = self._require()
        try:
            answer = await llm.complete(
                messages,
                provider=self.llm_provider,
                max_tokens=max_tokens,
                temperature=0.0,
                identity=identity,
            )
        except errors.Problem:
            raise
        except Exception as exc:  # the chat plugin's failure must not become our 500
            raise errors.BadGateway(f"The LLM service failed: {type(exc).__name__}") from exc
        if not isinstance(answer, str) or not answer.strip():
            raise errors.BadGateway("The LLM returned an empty answer")
        return answer.strip()

    async def languages(self) -> list[Language]:
        return [Language(code=code, name=name) for code, name in LLM_LANGUAGES.items()]

    async def translate(
        self, text: str, target: Language, source: Language | None, identity: Identity | None
    ) -> Translation:
        prompt = TRANSLATE_PROMPT.format(
            source=f"from {source.name} " if source else "", target=target.name
        )
        messages = [{"role": "system", "content": prompt}, {"role": "user", "content": text}]
        answer = await self._complete(messages, min(4096, 64 + 3 * len(text)), identity)
        return Translation(_unquote(answer, text), None)

    async def detect(self, text: str, identity: Identity | None) -> Detection:
        messages = [
            {"role": "system", "content": DETECT_PROMPT},
            {"role": "user", "content": text},
        ]
        answer = await self._complete(messages, 8, identity)
        code = parse_language(answer)
        if code is None:
            raise errors.BadGateway(
                "The LLM's answer named no supported language: " + " ".join(answer.split())[:80]
            )
        return Detection(code, None)


def parse_language(answer: str) -> str | None:
    """The first supported ISO code (``"en"``, ``"Language: fr."``) or language name
    (``"Japanese"``) in a model's answer."""
    for word in re.findall(r"[A-Za-z]+", answer):
        if word.lower() in LLM_LANGUAGES and (len(word) == 2 or word.islower()):
            return str(word).lower()
    names = {name.lower(): code for code, name in LLM_LANGUAGES.items()}
    for word in re.findall(r"[A-Za-z]+", answer):
        if word.lower() in names:
            return str(names[word.lower()])
    return None


def _unquote(answer: str, original: str) -> str:
    """Drop quotes a model wrapped around the translation (unless the text had them)."""
    if len(answer) >= 2 and _QUOTES.get(answer[0]) == answer[-1]:
        if not (original.strip()[:1] == answer[0]):
            return answer[1:-1].strip() or answer
    return answer
