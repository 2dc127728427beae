"""How the webui plugin serves the app: a strict CSP on every answer, gzip, ETags, no
file outside the app, the redirect of browsers from /, and the size budget. (Named to run
before the browser tests: sync Playwright keeps an event loop in the main thread.)"""

from __future__ import annotations

import gzip
import re
from typing import Any

from builtin_plugins.webui import assets
from builtin_plugins.webui.plugin import STATIC

CONFIG = {"plugins": {"enabled": ["webui"]}}
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_the_page_and_its_files(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    r = await client.get("/app/", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Encoding"] == "gzip"
    html = await r.text()
    # no inline script or style anywhere: everything is a file of the app
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
        if ref.startswith("/"):
            continue
        f = await client.get("/app/" + ref)
        assert f.status == 200, ref
        assert "Content-Security-Policy" in f.headers

    js = await client.get("/app/js/main.js")
    assert js.headers["Content-Type"].startswith("text/javascript")
    etag = js.headers["ETag"]
    again = await client.get("/app/js/main.js", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_nothing_outside_the_app(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    for path in (
        "/app/nope.js",
        "/app/../plugin.py",
        "/app/%2e%2e/plugin.py",
        "/app/..%2fplugin.py",
        "/app/js/../../plugin.py",
        "/app/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/app/.hidden",
    ):
        r = await client.get(path)
        assert r.status == 404, path
        assert r.headers["Content-Type"].startswith("application/problem+json")


async def test_browsers_are_sent_to_the_app(llmmc: Any) -> None:
    client = await llmmc(CONFIG)
    r = await client.get("/", headers={"Accept": BROWSER}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/app/"
    r = await client.get("/app", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/app/"
    r = await client.get("/", headers={"Accept": "application/json"})
    assert (await r.json())["name"] == "LlmMultiChat"

    quiet = await llmmc({"plugins": {"enabled": ["webui"], "webui": {"redirect_root": False}}})
    r = await quiet.get("/", headers={"Accept": BROWSER}, allow_redirects=False)
    assert r.status == 200


def test_javascript_and_css_stay_small() -> None:
    files = assets.load(STATIC)
    size = assets.compressed_size(files, (".js", ".css"))
    assert size < 200 * 1024, f"{size} bytes of JS+CSS gzipped"
    for name, asset in files.items():
        if asset.gzipped is not None:
            assert gzip.decompress(asset.gzipped) == asset.body, name
