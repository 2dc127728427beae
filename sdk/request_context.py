"""The request being served, as seen from anywhere below its handler.

The kernel sets the request id when a request arrives; everything that runs for that
request (hooks, services, tasks it spawns, which copy the context) reads it back here.
Upstream calls made through :func:`sdk.http.client_session` send it as ``X-Request-ID``,
and the kernel's log handler puts it on every log line written meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"

_request_id: ContextVar[str] = ContextVar("llmmc_request_id", default="")


def current_request_id() -> str:
    """The id of the request being served, or "" outside any request."""
    return _request_id.get()


def set_request_id(request_id: str) -> None:
    """Make ``request_id`` current for the rest of this task (the kernel does this)."""
    _request_id.set(request_id)


@contextlib.contextmanager
def request_id_scope(request_id: str) -> Iterator[None]:
    """Work done for one message of a long-lived connection (a WebSocket chat message
    with its own ``request_id``) carries that id, then the previous one is restored."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)
