"""Google Cloud Translation API v2 (Basic): ``POST {base}``, ``POST {base}/detect``,
``GET {base}/languages``; the key in ``?key=``. Needs ``api_key``."""

from __future__ import annotations

from typing import Any

from sdk import Identity
from sdk.http import Upstream

from ..languages import Language, canonical
from . import _CODE, _NAME, Detection, Translation, auth_failed, rate_limited, upstream_failed

SERVICE = "Google Translation"
DEFAULT_BASE_URL = "https://translation.googleapis.com/language/translate/v2"


def _data(inner: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "object", **inner}},
    }


LANGUAGES_SCHEMA = _data(
    {
        "required": ["languages"],
        "properties": {
            "languages": {
                "type": "array",
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["language"],
                    "properties": {"language": _CODE, "name": _NAME},
                },
            }
        },
    }
)
TRANSLATE_SCHEMA = _data(
    {
        "required": ["translations"],
        "properties": {
            "translations": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "required": ["translatedText"],
                    "properties": {
                        "translatedText": {"type": "string"},
                        "detectedSourceLanguage": _CODE,
                    },
                },
            }
        },
    }
)
DETECT_SCHEMA = _data(
    {
        "required": ["detections"],
        "properties": {
            "detections": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100,
                    "items": {
                        "type": "object",
                        "required": ["language"],
                        "properties": {
                            "language": _CODE,
                            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        },
                    },
                },
            }
        },
    }
)
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded"}


class GoogleTranslate:
    name = "google"

    def __init__(self, upstream: Upstream, base_url: str, api_key: str) -> None:
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def _raise_for(self, status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        raw = error.get("message")
        message = " ".join(raw.split())[:200] if isinstance(raw, str) else ""
        reasons = {
            e.get("reason")
            for e in error.get("errors") or []
            if isinstance(e, dict) and isinstance(e.get("reason"), str)
        }
        if status == 429 or reasons & RATE_REASONS:
            raise rate_limited(SERVICE)
        if status in (401, 403) or "API key" in message:
            raise auth_failed(SERVICE)
        raise upstream_failed(SERVICE, status, message)

    async def _call(
        self, method: str, path: str, params: dict[str, str] | None = None, json_body: Any = None
    ) -> Any:
        status, body = await self.upstream.request(
            method,
            self.base_url + path,
            params={"key": self.api_key, **(params or {})},
            json_body=json_body,
        )
        if status != 200:
            self._raise_for(status, body)
        return body

    async def languages(self) -> list[Language]:
        body = await self._call("GET", "/languages", params={"target": "en"})
        items = self.upstream.check(body, LANGUAGES_SCHEMA, "language list")["data"]["languages"]
        return [
            Language(
                code=canonical(item["language"]),
                name=item.get("name") or item["language"],
                upstream=item["language"],
            )
            for item in items
        ]

    async def translate(
        self, text: str, target: Language, source: Language | None, identity: Identity | None
    ) -> Translation:
        payload: dict[str, Any] = {"q": text, "target": target.provider_code, "format": "text"}
        if source is not None:
            payload["source"] = source.provider_code
        body = await self._call("POST", "", json_body=payload)
        item = self.upstream.check(body, TRANSLATE_SCHEMA, "translation")["data"]["translations"][0]
        detected = item.get("detectedSourceLanguage")
        return Translation(item["translatedText"], canonical(detected) if detected else None)

    async def detect(self, text: str, identity: Identity | None) -> Detection:
        body = await self._call("POST", "/detect", json_body={"q": text})
        candidates = self.upstream.check(body, DETECT_SCHEMA, "detection")["data"]["detections"][0]
        best = max(candidates, key=lambda c: c.get("confidence", 0))
        return Detection(canonical(best["language"]), best.get("confidence"))
