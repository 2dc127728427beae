"""A fake Google Cloud Translation API v2 (Basic): ``POST /language/translate/v2``,
``POST /language/translate/v2/detect``, ``GET /language/translate/v2/languages``; the key
goes in ``?key=`` (or ``X-Goog-Api-Key``).

    async with FakeGoogleTranslate(api_key="g-key") as fake:
        config = {"provider": "google", "base_url": fake.url, "api_key": "g-key"}

Errors are spelled like Google's: ``{"error": {"code", "message", "errors": [...], "status"}}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import phrasebook
from .upstream import FakeUpstream

__all__ = ["GOOGLE_LANGUAGES", "FakeGoogleTranslate"]

GOOGLE_LANGUAGES = {
    "en": "en",
    "de": "de",
    "es": "es",
    "fr": "fr",
    "ja": "ja",
    "pt": "pt",
    "zh-CN": "zh",
}
STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
REASON = {
    400: "badRequest",
    403: "forbidden",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}


class FakeGoogleTranslate(FakeUpstream):
    url_suffix = "/language/translate/v2"

    def __init__(self, *, api_key: str | None = "test-google-key", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.languages = dict(GOOGLE_LANGUAGES)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/language/translate/v2", self._translate)
        app.router.add_post("/language/translate/v2/detect", self._detect)
        app.router.add_get("/language/translate/v2/languages", self._languages)

    def error_response(self, status: int, message: str, reason: str | None = None) -> web.Response:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "errors": [
                {
                    "message": message,
                    "domain": "global",
                    "reason": reason or REASON.get(status, "backendError"),
                }
            ],
        }
        if status in STATUS:
            error["status"] = STATUS[status]
        return web.json_response({"error": error}, status=status)

    def hostile_body(self, path: str) -> Any:
        if path.endswith("/languages"):
            return {"data": {"languages": "all of them"}}
        if path.endswith("/detect"):
            return {"data": {"detections": [[{"language": None, "confidence": "high"}]]}}
        return {"data": {"translations": []}}

    def _args(self, request: web.Request) -> dict[str, Any]:
        body = self.received[-1].body
        args: dict[str, Any] = dict(request.query)
        if isinstance(body, dict):
            args.update(body)
        return args

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        key = request.query.get("key") or request.headers.get("X-Goog-Api-Key")
        if not key:
            return self.error_response(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
                "forbidden",
            )
        if key != self.api_key:
            return self.error_response(400, "API key not valid. Please pass a valid API key.")
        return None

    async def _languages(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        items: list[dict[str, str]] = []
        for code, base in self.languages.items():
            item = {"language": code}
            if request.query.get("target"):
                item["name"] = phrasebook.NAMES[base]
            items.append(item)
        return web.json_response({"data": {"languages": items}})

    async def _detect(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        q = self._args(request).get("q")
        if not isinstance(q, str) or not q:
            return self.error_response(400, "Required Text", "required")
        lang, confidence = phrasebook.detect(q)
        code = next((c for c, b in self.languages.items() if b == lang), lang)
        return web.json_response(
            {
                "data": {
                    "detections": [
                        [{"language": code, "isReliable": False, "confidence": confidence}]
                    ]
                }
            }
        )

    async def _translate(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        args = self._args(request)
        q, target, source = args.get("q"), args.get("target"), args.get("source")
        if not isinstance(q, str) or not q:
            return self.error_response(400, "Required Text", "required")
        if not target:
            return self.error_response(400, "Required Target", "required")
        if target not in self.languages or (source and source not in self.languages):
            return self.error_response(400, "Invalid Value", "invalid")
        src = self.languages[source] if source else None
        text, used = phrasebook.translate(q, self.languages[target], src)
        item: dict[str, Any] = {"translatedText": text}
        if not source:
            item["detectedSourceLanguage"] = next(
                (c for c, b in self.languages.items() if b == used), used
            )
        return web.json_response({"data": {"translations": [item]}})
