"""The compression plugin: answers of at least 1 KB in brotli or gzip for clients that
accept it (``middleware.py``); streams (SSE, WebSockets) pass untouched."""

from __future__ import annotations

from sdk import Middleware, Plugin, hookimpl

from .middleware import compression_middleware


class CompressionPlugin(Plugin):
    name = "compression"
    version = "0.1.0"
    description = "brotli or gzip for answers over 1 KB whose client accepts it"
    config_schema = {"type": "object", "additionalProperties": False}

    @hookimpl
    def register_middleware(self) -> list[Middleware]:
        return [Middleware(compression_middleware, order=50)]
