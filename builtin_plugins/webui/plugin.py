"""The webui plugin: serves the browser client at ``/app/`` and asks the kernel to send
browsers that open ``/`` there (the ``browser_home`` hook).

The client is plain JavaScript modules and CSS in ``static/`` (no build step), talking to
the server only through the public REST API and the ``/ws/chat`` WebSocket. Every answer
carries a strict Content-Security-Policy: scripts and styles only from this server, no
inline code, connections only to this server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from sdk import Plugin, Request, Route, errors, hookimpl

from . import assets

STATIC = Path(__file__).parent / "static"
PREFIX = "/app"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# The kernel adds nosniff, Referrer-Policy and X-Frame-Options to every answer and keeps
# a handler's own CSP: this one is stricter than its page default (no inline styles).
HEADERS = {
    "Content-Security-Policy": CSP,
    # revalidate every time: a 304 costs nothing on the same host, and an upgrade of the
    # server is never mixed with stale modules
    "Cache-Control": "no-cache",
    "Vary": "Accept-Encoding",
}


class WebUIPlugin(Plugin):
    name = "webui"
    version = "0.1.0"
    description = "Browser chat client at /app/"
    optional = ("auth", "chat", "memory")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "redirect_root": {
                "type": "boolean",
                "default": True,
                "description": "send a browser that opens / to /app/",
            },
        },
    }

    async def initialize(self) -> None:
        self.assets = assets.load(STATIC)
        if "index.html" not in self.assets:
            raise RuntimeError(f"the web client's files are missing from {STATIC}")

    @hookimpl
    def browser_home(self) -> str | None:
        return f"{PREFIX}/" if self.config["redirect_root"] else None

    @hookimpl
    def register_routes(self) -> list[Route]:
        common: dict[str, Any] = {
            "auth": "public",
            "rate_limit": None,
            "tags": ["webui"],
        }
        return [
            Route(
                "GET",
                PREFIX,
                self.to_app,
                summary="Redirect to /app/",
                status=302,
                response_content_type="text/html",
                operation_id="webui_redirect",
                **common,
            ),
            Route(
                "GET",
                f"{PREFIX}/",
                self.index,
                summary="The web client (HTML)",
                response_content_type="text/html",
                response_schema={"type": "string"},
                operation_id="webui_index",
                responses={304: "Not modified (If-None-Match)"},
                **common,
            ),
            Route(
                "GET",
                PREFIX + "/{path:.+}",
                self.file,
                summary="A file of the web client (JavaScript module, stylesheet, icon)",
                response_content_type="text/plain",
                response_schema={"type": "string"},
                operation_id="webui_file",
                responses={304: "Not modified (If-None-Match)", 404: "No such file"},
                **common,
            ),
        ]

    async def to_app(self, req: Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": f"{PREFIX}/"})

    async def index(self, req: Request) -> web.StreamResponse:
        return self.serve(req, "index.html")

    async def file(self, req: Request) -> web.StreamResponse:
        return self.serve(req, req.match_info["path"])

    def serve(self, req: Request, name: str) -> web.StreamResponse:
        asset = self.assets.get(name)
        if asset is None:
            raise errors.NotFound(f"The web client has no file {name[:100]!r}.", code="NOT_FOUND")
        headers = {**HEADERS, "ETag": asset.etag}
        if asset.etag in req.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in req.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = asset.content_type
        return web.Response(body=body, headers=headers)
