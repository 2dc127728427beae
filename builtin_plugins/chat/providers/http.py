"""The HTTP plumbing the remote providers share: timeouts, retries with backoff on
429/5xx, errors as Problems, no secret in logs. The provider contract itself
(``LLMProvider``, ``StreamEvent``, ...) is ``sdk.llm``."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from sdk import LLMProvider, errors
from sdk.http import client_session

log = logging.getLogger("llmmultichat.chat.providers")


RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class HTTPProvider(LLMProvider):
    """Shared HTTP client for remote providers: one connection pool per provider,
    total timeout per call, retries with exponential backoff (honouring Retry-After) on
    429/5xx and connection errors before any output has been received."""

    def __init__(self, name: str, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, settings, **kwargs)
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return str(self.settings.get("base_url") or "").rstrip("/")

    def secrets(self) -> list[str]:
        return [str(self.settings[k]) for k in ("api_key",) if self.settings.get(k)]

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    async def start(self) -> None:
        self._http()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = client_session(
                connector=aiohttp.TCPConnector(
                    limit=int(self.settings.get("max_connections", 100))
                ),
                headers={"User-Agent": "llmmultichat"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def headers(self) -> dict[str, str]:
        return {}

    async def post_json(self, url: str, payload: dict[str, Any]) -> Any:
        """POST with retries and return the parsed JSON answer (a non-streaming call)."""
        resp = await self.post(url, payload)
        try:
            return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise upstream_stream_error(self.name, exc, self.timeout) from exc
        except ValueError as exc:
            raise errors.BadGateway(f"provider {self.name!r} answered something not JSON") from exc
        finally:
            resp.release()

    async def post(self, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST with retries; returns a 2xx response (the caller reads and releases it)."""
        self.check_available()
        attempt = 0
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(10.0, self.timeout))
        while True:
            failure: errors.Problem
            retry_after: float | None = None
            try:
                resp = await self._http().post(
                    url, json=payload, headers=self.headers(), timeout=timeout
                )
            except TimeoutError:
                failure = errors.GatewayTimeout(
                    f"provider {self.name!r} did not answer within {self.timeout:g} s"
                )
            except aiohttp.ClientError as exc:
                failure = errors.BadGateway(
                    f"provider {self.name!r} could not be reached ({type(exc).__name__})"
                )
            else:
                if resp.status < 400:
                    return resp
                detail = await self._error_detail(resp)
                resp.release()
                log.warning(
                    "provider %r answered HTTP %s: %s", self.name, resp.status, self.redact(detail)
                )
                failure = errors.BadGateway(
                    f"provider {self.name!r} answered HTTP {resp.status}"
                    + (f" ({detail})" if detail else ""),
                    extra={"upstream_status": resp.status},
                )
                if resp.status not in RETRYABLE:
                    raise failure
                retry_after = _retry_after(resp.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise failure
            delay = self.retry_backoff * (2**attempt) * (0.75 + random.random() / 2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 30.0))
            if delay > 0:
                await asyncio.sleep(delay)
            attempt += 1

    async def _error_detail(self, resp: aiohttp.ClientResponse) -> str:
        """The upstream's error *type* only: never its message, which may echo our key."""
        try:
            raw = await resp.content.read(16384)
            body = json.loads(raw)
        except Exception:
            return ""
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            kind = err.get("type") or err.get("code")
            return str(kind)[:80] if kind else ""
        return ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def iter_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """Yield ``(event, data)`` pairs of a text/event-stream body."""
    event = ""
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            event = value
        elif key == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


def upstream_stream_error(provider: str, exc: BaseException, timeout: float) -> errors.Problem:
    """Map an exception raised while reading a stream to the Problem a client sees."""
    if isinstance(exc, TimeoutError):
        return errors.GatewayTimeout(f"provider {provider!r} did not finish within {timeout:g} s")
    return errors.BadGateway(f"provider {provider!r} broke off the answer ({type(exc).__name__})")
