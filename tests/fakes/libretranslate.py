"""A fake LibreTranslate: ``POST /translate``, ``POST /detect``, ``GET /languages``
(JSON or form bodies, like the real server), optional API keys.

    async with FakeLibreTranslate() as fake:                 # no key needed
    async with FakeLibreTranslate(api_key="k") as fake:      # key required
        config = {"provider": "libretranslate", "base_url": fake.url, "api_key": "k"}

Errors are spelled like the real service: ``{"error": "..."}`` with 400, 403, 429 or 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import phrasebook
from .upstream import FakeUpstream

__all__ = ["LIBRE_LANGUAGES", "FakeLibreTranslate"]

# code as LibreTranslate spells it -> phrasebook language
LIBRE_LANGUAGES = {
    "en": "en",
    "de": "de",
    "es": "es",
    "fr": "fr",
    "ja": "ja",
    "pt": "pt",
    "zh-Hans": "zh",
}


class FakeLibreTranslate(FakeUpstream):
    def __init__(self, *, char_limit: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.languages = dict(LIBRE_LANGUAGES)
        self.char_limit = char_limit

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/translate", self._translate)
        app.router.add_post("/detect", self._detect)
        app.router.add_get("/languages", self._languages)

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def hostile_body(self, path: str) -> Any:
        if path == "/languages":
            return [{"code": 7, "name": None}, "en"]
        if path == "/detect":
            return {"language": "en"}
        return {"translatedText": ["not", "a", "string"], "detectedLanguage": "en"}

    def _args(self) -> dict[str, Any]:
        body = self.received[-1].body
        return body if isinstance(body, dict) else {}

    def _denied(self, args: dict[str, Any]) -> web.Response | None:
        if self.api_key is None:
            return None
        key = args.get("api_key")
        if not key:
            return self.error_response(400, "Please contact the server operator to get an API key")
        if key != self.api_key:
            return self.error_response(403, "Invalid API key")
        return None

    async def _languages(self, request: web.Request) -> web.Response:
        codes = list(self.languages)
        return web.json_response(
            [
                {"code": code, "name": phrasebook.NAMES[base], "targets": codes}
                for code, base in self.languages.items()
            ]
        )

    async def _detect(self, request: web.Request) -> web.Response:
        args = self._args()
        if (denied := self._denied(args)) is not None:
            return denied
        q = args.get("q")
        if not isinstance(q, str) or not q:
            return self.error_response(400, "Invalid request: missing q parameter")
        lang, confidence = phrasebook.detect(q)
        code = next((c for c, b in self.languages.items() if b == lang), "en")
        return web.json_response([{"confidence": round(confidence * 100, 1), "language": code}])

    async def _translate(self, request: web.Request) -> web.Response:
        args = self._args()
        if (denied := self._denied(args)) is not None:
            return denied
        q, source, target = args.get("q"), args.get("source"), args.get("target")
        if not isinstance(q, str) or not q:
            return self.error_response(400, "Invalid request: missing q parameter")
        if not source:
            return self.error_response(400, "Invalid request: missing source parameter")
        if not target:
            return self.error_response(400, "Invalid request: missing target parameter")
        if 0 < self.char_limit < len(q):
            return self.error_response(
                400, f"Invalid request: request ({len(q)}) exceeds text limit ({self.char_limit})"
            )
        if source != "auto" and source not in self.languages:
            return self.error_response(400, f"{source} is not supported")
        if target not in self.languages:
            return self.error_response(400, f"{target} is not supported")
        src = None if source == "auto" else self.languages[source]
        text, used = phrasebook.translate(q, self.languages[target], src)
        body: dict[str, Any] = {"translatedText": text}
        if source == "auto":
            _, confidence = phrasebook.detect(q)
            code = next((c for c, b in self.languages.items() if b == used), used)
            body["detectedLanguage"] = {"confidence": round(confidence * 100, 1), "language": code}
        return web.json_response(body)
