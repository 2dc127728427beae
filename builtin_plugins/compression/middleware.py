"""Response compression: brotli (when the ``brotli`` package is installed) or gzip, for
answers of at least ``MIN_BYTES`` whose client accepts it.

Only whole bodies are compressed: a response the handler prepared itself (SSE, a
WebSocket, any stream) is already on its way and passes untouched, so no event chunk
ever waits in a compressor's buffer. Static files are gzipped by aiohttp as they stream.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

try:
    import brotli
except ImportError:  # optional: gzip alone then
    brotli = None

MIN_BYTES = 1024
# Compressing more than this on the event loop would stall other requests for a few ms.
IN_THREAD_BYTES = 256 * 1024
GZIP_LEVEL = 6
BROTLI_QUALITY = 4  # brotli's fast end: smaller than gzip -6 at about the same speed
STATIC_SUFFIXES = (".js", ".css", ".html", ".json", ".svg", ".map", ".txt", ".xml")


def compressible(content_type: str) -> bool:
    if content_type == "text/event-stream":
        return False
    return (
        content_type.startswith("text/")
        or content_type.endswith(("json", "xml", "javascript"))
        or content_type == "image/svg+xml"
    )


def accepted_encoding(accept_encoding: str) -> str | None:
    """The best coding we offer that the ``Accept-Encoding`` header allows (q > 0):
    brotli first on a tie, then gzip; None for identity."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.strip()] = q
    star = weights.get("*", 0.0)
    offered = ("br", "gzip") if brotli is not None else ("gzip",)
    best, best_q = None, 0.0
    for coding in offered:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


def _compress(body: bytes, coding: str) -> bytes:
    if coding == "br":
        assert brotli is not None
        return bytes(brotli.compress(body, quality=BROTLI_QUALITY))
    gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
    return gz.compress(body) + gz.flush()


def _add_vary(response: web.StreamResponse) -> None:
    vary = response.headers.get(hdrs.VARY, "")
    if "accept-encoding" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"


async def _compress_body(request: web.Request, response: web.Response) -> None:
    body = response.body
    if not isinstance(body, bytes | bytearray) or len(body) < MIN_BYTES:
        return
    if not compressible(response.content_type) or hdrs.CONTENT_ENCODING in response.headers:
        return
    _add_vary(response)
    coding = accepted_encoding(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    if coding is None:
        return
    data = bytes(body)
    if len(data) >= IN_THREAD_BYTES:
        packed = await asyncio.get_running_loop().run_in_executor(None, _compress, data, coding)
    else:
        packed = _compress(data, coding)
    response.body = packed
    response.headers[hdrs.CONTENT_ENCODING] = coding


@web.middleware
async def compression_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if response.prepared or request.method == "HEAD" or response.status in (204, 304):
        return response
    if isinstance(response, web.FileResponse):
        if request.path.endswith(STATIC_SUFFIXES) and hdrs.RANGE not in request.headers:
            _add_vary(response)
            if accepted_encoding(request.headers.get(hdrs.ACCEPT_ENCODING, "")) is not None:
                # aiohttp streams files through gzip itself; it skips files already
                # sent pre-compressed (a .gz beside the file)
                response.enable_compression(web.ContentCoding.gzip)
    elif isinstance(response, web.Response):
        await _compress_body(request, response)
    return response
