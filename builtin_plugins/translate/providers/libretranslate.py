"""LibreTranslate (self-hostable): ``POST /translate``, ``POST /detect``, ``GET /languages``;
``api_key`` optional (sent in the body when set)."""

from __future__ import annotations

from typing import Any

from sdk import Identity
from sdk.http import Upstream, error_message

from ..languages import Language, canonical
from . import (
    _CODE,
    _NAME,
    Detection,
    Translation,
    auth_failed,
    rate_limited,
    unsupported_by_upstream,
    upstream_failed,
)

SERVICE = "LibreTranslate"
LANGUAGES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": 1000,
    "items": {
        "type": "object",
        "required": ["code", "name"],
        "properties": {
            "code": _CODE,
            "name": _NAME,
            "targets": {"type": "array", "maxItems": 1000, "items": _CODE},
        },
    },
}
DETECTED = {
    "type": "object",
    "required": ["language"],
    "properties": {
        "language": _CODE,
        "confidence": {"type": "number", "minimum": 0, "maximum": 100},
    },
}
TRANSLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["translatedText"],
    "properties": {"translatedText": {"type": "string"}, "detectedLanguage": DETECTED},
}
DETECT_SCHEMA: dict[str, Any] = {"type": "array", "minItems": 1, "maxItems": 100, "items": DETECTED}


class LibreTranslate:
    name = "libretranslate"

    def __init__(self, upstream: Upstream, base_url: str, api_key: str) -> None:
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def _with_key(self, body: dict[str, Any]) -> dict[str, Any]:
        return body | {"api_key": self.api_key} if self.api_key else body

    def _raise_for(self, status: int, body: Any) -> None:
        message = error_message(body, "error")
        if status == 403 or (status == 400 and "api key" in message.lower()):
            raise auth_failed(SERVICE)
        if status == 429:
            raise rate_limited(SERVICE)
        if status == 400 and "not supported" in message:
            raise unsupported_by_upstream(SERVICE, message)
        raise upstream_failed(SERVICE, status, message)

    async def languages(self) -> list[Language]:
        status, body = await self.upstream.request("GET", f"{self.base_url}/languages")
        if status != 200:
            self._raise_for(status, body)
        items = self.upstream.check(body, LANGUAGES_SCHEMA, "language list")
        targets: set[str] | None = None
        if all("targets" in item for item in items):
            targets = {t for item in items for t in item["targets"]}
        return [
            Language(
                code=canonical(item["code"]),
                name=item["name"],
                source=True,
                target=targets is None or item["code"] in targets,
                upstream=item["code"],
            )
            for item in items
        ]

    async def translate(
        self, text: str, target: Language, source: Language | None, identity: Identity | None
    ) -> Translation:
        payload = {
            "q": text,
            "source": source.provider_code if source else "auto",
            "target": target.provider_code,
            "format": "text",
        }
        status, body = await self.upstream.request(
            "POST", f"{self.base_url}/translate", json_body=self._with_key(payload)
        )
        if status != 200:
            self._raise_for(status, body)
        body = self.upstream.check(body, TRANSLATE_SCHEMA, "translation")
        detected = (body.get("detectedLanguage") or {}).get("language")
        return Translation(body["translatedText"], canonical(detected) if detected else None)

    async def detect(self, text: str, identity: Identity | None) -> Detection:
        status, body = await self.upstream.request(
            "POST", f"{self.base_url}/detect", json_body=self._with_key({"q": text})
        )
        if status != 200:
            self._raise_for(status, body)
        candidates = self.upstream.check(body, DETECT_SCHEMA, "detection")
        best = max(candidates, key=lambda c: c.get("confidence", 0))
        confidence = best.get("confidence")
        return Detection(
            canonical(best["language"]),
            round(confidence / 100, 4) if confidence is not None else None,
        )
