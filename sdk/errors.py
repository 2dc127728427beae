"""Problem Details (RFC 9457) errors.

Raise any of these from a handler, hook or tool; the kernel renders them as
``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``, ``code``
and, for validation failures, ``errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://llmmultichat.dev/problems/"


class Problem(Exception):
    """An error a client may see. Subclasses fix the status and the default code."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        title: str | None = None,
        status: int | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.detail = detail or self.title
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code.lower().replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(Problem):
    status, code, title = 400, "BAD_REQUEST", "Bad Request"


class Unauthorized(Problem):
    status, code, title = 401, "UNAUTHORIZED", "Unauthorized"

    def __init__(self, detail: str = "", **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class InvalidCredentials(Unauthorized):
    """Raised by an ``authenticate`` hook for a token that is present but not valid."""

    code = "INVALID_TOKEN"


class Forbidden(Problem):
    status, code, title = 403, "FORBIDDEN", "Forbidden"


class NotFound(Problem):
    status, code, title = 404, "NOT_FOUND", "Not Found"


class MethodNotAllowed(Problem):
    status, code, title = 405, "METHOD_NOT_ALLOWED", "Method Not Allowed"


class Conflict(Problem):
    status, code, title = 409, "CONFLICT", "Conflict"


class RequestTimeout(Problem):
    status, code, title = 408, "REQUEST_TIMEOUT", "Request Timeout"


class PayloadTooLarge(Problem):
    status, code, title = 413, "PAYLOAD_TOO_LARGE", "Payload Too Large"


class UnsupportedMediaType(Problem):
    status, code, title = 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported Media Type"


class ValidationFailed(Problem):
    status, code, title = 422, "VALIDATION_FAILED", "Unprocessable Content"


class TooManyRequests(Problem):
    status, code, title = 429, "RATE_LIMITED", "Too Many Requests"

    def __init__(self, detail: str = "", *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", str(max(1, int(retry_after))))


class BadGateway(Problem):
    status, code, title = 502, "UPSTREAM_ERROR", "Bad Gateway"


class ServiceUnavailable(Problem):
    status, code, title = 503, "SERVICE_UNAVAILABLE", "Service Unavailable"


class GatewayTimeout(Problem):
    status, code, title = 504, "UPSTREAM_TIMEOUT", "Gateway Timeout"


STATUS_PROBLEMS: dict[int, type[Problem]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        RequestTimeout,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        TooManyRequests,
        BadGateway,
        ServiceUnavailable,
        GatewayTimeout,
    )
}


def problem_for_status(status: int, detail: str = "") -> Problem:
    """A Problem for a bare HTTP status (used for aiohttp's own 404/405/413)."""
    cls = STATUS_PROBLEMS.get(status)
    if cls is None:
        return Problem(detail, status=status, code=f"HTTP_{status}", title=f"HTTP {status}")
    return cls(detail)


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """How a route's clients expect its errors when not as Problem Details (an
    OpenAI-compatible door answers ``{"error": {...}}``). Set on a :class:`Route` as
    ``error_shape``: every error of that route, the kernel's own (401, 422, 429, ...)
    included, keeps its status and headers and gets ``render(problem)`` as its JSON body;
    ``schema`` documents that body in OpenAPI."""

    render: Callable[[Problem], Any]
    schema: dict[str, Any] = field(default_factory=dict)
