"""A fake DeepL API v2: ``POST /v2/translate`` (JSON or form, ``text`` a list) and
``GET /v2/languages?type=source|target``, authenticated with
``Authorization: DeepL-Auth-Key KEY``.

    async with FakeDeepL(api_key="d-key:fx") as fake:
        config = {"provider": "deepl", "base_url": fake.url, "api_key": "d-key:fx"}

Errors are spelled like DeepL's: ``{"message": "..."}`` with 400, 403, 429, 456 (quota
exceeded) or 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import phrasebook
from .upstream import FakeUpstream

__all__ = ["DEEPL_SOURCE", "DEEPL_TARGET", "FakeDeepL"]

DEEPL_SOURCE = {"DE": "de", "EN": "en", "ES": "es", "FR": "fr", "JA": "ja", "PT": "pt", "ZH": "zh"}
DEEPL_TARGET = {
    "DE": "de",
    "EN-GB": "en",
    "EN-US": "en",
    "ES": "es",
    "FR": "fr",
    "JA": "ja",
    "PT-BR": "pt",
    "PT-PT": "pt",
    "ZH-HANS": "zh",
}


class FakeDeepL(FakeUpstream):
    url_suffix = "/v2"

    def __init__(self, *, api_key: str | None = "test-deepl-key:fx", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.characters = 0  # billed characters, like /v2/usage would count

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/translate", self._translate)
        app.router.add_get("/v2/languages", self._languages)

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)

    def hostile_body(self, path: str) -> Any:
        if path == "/v2/languages":
            return [{"language": "DE"}, {"name": "no code"}]
        return {"translations": [{"detected_source_language": 3, "text": None}]}

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        if header != f"DeepL-Auth-Key {self.api_key}":
            return self.error_response(
                403, "Authorization failed. Please supply a valid auth_key parameter."
            )
        return None

    async def _languages(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        kind = request.query.get("type", "source")
        if kind not in ("source", "target"):
            return self.error_response(400, "Value for 'type' not supported.")
        table = DEEPL_SOURCE if kind == "source" else DEEPL_TARGET
        items = []
        for code, base in table.items():
            name = phrasebook.NAMES[base]
            if "-" in code:
                name += f" ({code.split('-')[1]})"
            item: dict[str, Any] = {"language": code, "name": name}
            if kind == "target":
                item["supports_formality"] = base in ("de", "es", "fr", "pt", "ja")
            items.append(item)
        return web.json_response(items)

    async def _translate(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = self.received[-1].body
        args = body if isinstance(body, dict) else {}
        texts = args.get("text")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self.error_response(400, "Parameter 'text' not specified.")
        target = str(args.get("target_lang") or "").upper()
        source = str(args.get("source_lang") or "").upper() or None
        if not target:
            return self.error_response(400, "Value for 'target_lang' not supported.")
        if target not in DEEPL_TARGET:
            return self.error_response(400, "Value for 'target_lang' not supported.")
        if source is not None and source not in DEEPL_SOURCE:
            return self.error_response(400, "Value for 'source_lang' not supported.")
        self.characters += sum(len(t) for t in texts)
        out = []
        for text in texts:
            translated, used = phrasebook.translate(
                text, DEEPL_TARGET[target], DEEPL_SOURCE[source] if source else None
            )
            out.append({"detected_source_language": used.upper(), "text": translated})
        return web.json_response({"translations": out})
