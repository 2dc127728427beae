"""DeepL API v2: ``POST {base}/translate``, ``GET {base}/languages?type=source|target``,
``Authorization: DeepL-Auth-Key``. Needs ``api_key``. DeepL has no detection endpoint:
``detect`` translates the text and reads ``detected_source_language`` (billed like a
translation)."""

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

SERVICE = "DeepL"
FREE_BASE_URL = "https://api-free.deepl.com/v2"
PRO_BASE_URL = "https://api.deepl.com/v2"
LANGUAGES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": 1000,
    "items": {
        "type": "object",
        "required": ["language", "name"],
        "properties": {"language": _CODE, "name": _NAME},
    },
}
TRANSLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["translations"],
    "properties": {
        "translations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}, "detected_source_language": _CODE},
            },
        }
    },
}
# The target DeepL is asked for when only detection is wanted.
DETECT_TARGET = "EN-US"


def default_base_url(api_key: str) -> str:
    """DeepL Free keys end in ``:fx`` and have their own host."""
    return FREE_BASE_URL if api_key.endswith(":fx") else PRO_BASE_URL


class DeepL:
    name = "deepl"

    def __init__(self, upstream: Upstream, base_url: str, api_key: str) -> None:
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"DeepL-Auth-Key {self.api_key}"}

    def _raise_for(self, status: int, body: Any) -> None:
        message = error_message(body, "message", "detail")
        if status in (401, 403):
            raise auth_failed(SERVICE)
        if status in (429, 456):
            raise rate_limited(SERVICE)
        if status == 400 and "not supported" in message:
            raise unsupported_by_upstream(SERVICE, message)
        raise upstream_failed(SERVICE, status, message)

    async def _list(self, kind: str) -> list[dict[str, Any]]:
        status, body = await self.upstream.request(
            "GET", f"{self.base_url}/languages", params={"type": kind}, headers=self._headers
        )
        if status != 200:
            self._raise_for(status, body)
        return list(self.upstream.check(body, LANGUAGES_SCHEMA, "language list"))

    async def languages(self) -> list[Language]:
        merged: dict[str, dict[str, Any]] = {}
        for kind in ("source", "target"):
            for item in await self._list(kind):
                entry = merged.setdefault(
                    item["language"].upper(),
                    {"name": item["name"], "source": False, "target": False},
                )
                entry[kind] = True
        return [
            Language(
                code=canonical(code),
                name=entry["name"],
                source=entry["source"],
                target=entry["target"],
                upstream=code,
            )
            for code, entry in merged.items()
        ]

    async def _translate(self, text: str, target: str, source: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"text": [text], "target_lang": target}
        if source is not None:
            payload["source_lang"] = source
        status, body = await self.upstream.request(
            "POST", f"{self.base_url}/translate", json_body=payload, headers=self._headers
        )
        if status != 200:
            self._raise_for(status, body)
        return dict(self.upstream.check(body, TRANSLATE_SCHEMA, "translation")["translations"][0])

    async def translate(
        self, text: str, target: Language, source: Language | None, identity: Identity | None
    ) -> Translation:
        item = await self._translate(
            text, target.provider_code, source.provider_code if source else None
        )
        detected = item.get("detected_source_language") if source is None else None
        return Translation(item["text"], canonical(detected) if detected else None)

    async def detect(self, text: str, identity: Identity | None) -> Detection:
        item = await self._translate(text, DETECT_TARGET, None)
        detected = item.get("detected_source_language")
        if not detected:
            raise upstream_failed(SERVICE, 200, "no detected_source_language in the answer")
        return Detection(canonical(detected), None)
