"""Calling upstream HTTP services from a plugin, safely.

One shared ``aiohttp.ClientSession`` per plugin (opened in ``start``, closed in ``stop``
with :func:`close_session`), bodies read up to a bound, strict JSON, every transport
failure turned into a Problem (502 ``BadGateway`` / 504 ``GatewayTimeout``) and every
body checked against a schema before use, so a broken or hostile upstream is never a
500. Redirects are not followed: an API has no reason to send one, and following it
could carry a key to another host.

Open sessions with :func:`client_session`: every request it sends carries the id of the
request being served (``X-Request-ID``), so an upstream's logs can be matched with ours.
Give :class:`Upstream` the histogram from :func:`upstream_latency` to measure each call.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import jsonschema
from yarl import URL

from . import errors
from .metrics import HistogramMetric, Metrics
from .request_context import REQUEST_ID_HEADER, current_request_id

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

# What :meth:`Upstream.request` returns in place of a body that is not JSON at all.
NOT_JSON: Any = object()


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no stack overflow on absurd nesting; NOT_JSON otherwise."""
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return NOT_JSON


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past ``limit`` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _send_request_id(
    session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams
) -> None:
    request_id = current_request_id()
    if request_id and REQUEST_ID_HEADER not in params.headers:
        params.headers[REQUEST_ID_HEADER] = request_id


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` (same arguments) whose requests carry ``X-Request-ID``."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_send_request_id)
    kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or []), trace]
    return aiohttp.ClientSession(**kwargs)


def upstream_latency(metrics: Metrics) -> HistogramMetric:
    """The plugin's ``upstream_request_duration_seconds{service, outcome}`` histogram."""
    return metrics.histogram(
        "upstream_request_duration_seconds",
        "Time of each call to an upstream service, by service and outcome",
        labels=("service", "outcome"),
    )


def _outcome(status: int) -> str:
    return "ok" if status < 400 else f"http_{status // 100}xx"


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Let the connector's transports finish closing (aiohttp's documented workaround).
    await asyncio.sleep(0)


class Upstream:
    """One upstream service (named in every error) reached through a shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        service: str,
        timeout: float,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        latency: HistogramMetric | None = None,
    ) -> None:
        self.session = session
        self.service = service
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.latency = latency

    def _observe(self, started: float, outcome: str) -> None:
        if self.latency is not None:
            self.latency.labels(service=self.service, outcome=outcome).observe(
                time.perf_counter() - started
            )

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return ``(status, parsed JSON or NOT_JSON)``."""
        host = URL(url).host or url
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, url, params=params, json=json_body, headers=headers, allow_redirects=False
            ) as resp:
                raw = await read_limited(resp, self.max_bytes)
                status = resp.status
        except TimeoutError as exc:
            self._observe(started, "timeout")
            raise errors.GatewayTimeout(
                f"{self.service} ({host}) did not answer within {self.timeout:g} seconds"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            self._observe(started, "error")
            raise errors.BadGateway(
                f"{self.service} ({host}) could not be reached: {type(exc).__name__}"
            ) from exc
        self._observe(started, _outcome(status))
        if raw is None:
            raise errors.BadGateway(
                f"{self.service} sent a response larger than {self.max_bytes} bytes"
            )
        return status, parse_json(raw)

    async def get(
        self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return await self.request("GET", url, params=params, headers=headers)

    def check(self, body: Any, schema: dict[str, Any], what: str) -> Any:
        """Validate an upstream body before use: the wrong shape is the upstream's fault (502)."""
        if body is NOT_JSON:
            raise errors.BadGateway(f"{self.service} sent a {what} that is not JSON")
        try:
            jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise errors.BadGateway(
                f"{self.service} sent an unexpected {what} (at {where}: {exc.validator} check failed)"
            ) from None
        return body


def error_message(body: Any, *keys: str) -> str:
    """A short, printable message from an upstream error body, if it has one."""
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return " ".join(value.split())[:200]
    return ""
