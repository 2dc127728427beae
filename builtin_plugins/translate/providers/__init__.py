"""Translation providers. Each speaks one upstream and maps its codes to :class:`Language`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sdk import Identity, errors

from ..languages import Language


@dataclass(frozen=True, slots=True)
class Translation:
    text: str
    detected: str | None = None  # the source language the provider detected (our spelling)


@dataclass(frozen=True, slots=True)
class Detection:
    language: str
    confidence: float | None = None  # 0..1, None when the provider gives none


class Provider(Protocol):
    name: str

    async def languages(self) -> list[Language]: ...

    async def translate(
        self, text: str, target: Language, source: Language | None, identity: Identity | None
    ) -> Translation: ...

    async def detect(self, text: str, identity: Identity | None) -> Detection: ...


def auth_failed(service: str) -> errors.Problem:
    return errors.BadGateway(
        f"{service} rejected the API key (setting plugins.translate.api_key)",
        code="UPSTREAM_AUTH_FAILED",
    )


def rate_limited(service: str) -> errors.Problem:
    return errors.BadGateway(
        f"{service} refused the request: rate limit or quota exhausted",
        code="UPSTREAM_RATE_LIMITED",
    )


def upstream_failed(service: str, status: int, message: str) -> errors.Problem:
    return errors.BadGateway(
        f"{service} answered HTTP {status}" + (f": {message}" if message else "")
    )


def unsupported_by_upstream(service: str, message: str) -> errors.Problem:
    return errors.ValidationFailed(
        f"{service} does not support this language pair: {message}",
        code="UNSUPPORTED_LANGUAGE",
    )


_CODE = {"type": "string", "minLength": 1, "maxLength": 20}
_NAME = {"type": "string", "maxLength": 100}
