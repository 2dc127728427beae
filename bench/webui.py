"""The web client's weight and first screen: bytes of HTML, JS and CSS (raw and gzipped,
as served), and the time from navigation to a usable first screen in headless Chromium on
localhost, cold (a fresh browser context each time: nothing cached), for the login page
and for a signed-in user's chat page.

    .venv/bin/python bench/webui.py [--runs 10]

The budget (issue: under 200 KB of JS+CSS compressed, first screen under 1 s on
localhost) is measured here and printed, never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builtin_plugins.webui import assets
from builtin_plugins.webui.plugin import STATIC
from tests.serverproc import ServerProcess

CHROMIUM = os.environ.get("LLMMC_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def sizes() -> None:
    files = assets.load(STATIC)
    print(f"{'kind':<6} {'files':>5} {'raw KB':>8} {'gzip KB':>8}")
    for kind in (".html", ".js", ".css", ".svg"):
        chosen = [a for n, a in files.items() if n.endswith(kind)]
        raw = sum(len(a.body) for a in chosen) / 1024
        packed = assets.compressed_size({str(i): a for i, a in enumerate(chosen)}, (""))
        print(f"{kind:<6} {len(chosen):>5} {raw:>8.1f} {packed / 1024:>8.1f}")
    js_css = assets.compressed_size(files, (".js", ".css")) / 1024
    print(f"JS+CSS gzipped: {js_css:.1f} KB (budget 200 KB)")


def register(base: str) -> dict[str, object]:
    body = json.dumps(
        {"username": "bench", "email": "bench@example.com", "password": "Bench-Horse-12"}
    ).encode()
    req = urllib.request.Request(
        base + "/api/v1/auth/register", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def first_screens(base: str, runs: int) -> None:
    from playwright.sync_api import sync_playwright

    pair = register(base)
    tokens = {
        "llmmc.access": pair["access_token"],
        "llmmc.refresh": pair["refresh_token"],
        "llmmc.expires": str(int(time.time() * 1000) + 25 * 60 * 1000),
    }
    seed = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in tokens.items())
    results: dict[str, list[float]] = {"login page": [], "chat (signed in)": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for _ in range(runs):
            for label, url, ready, signed_in in (
                ("login page", "/app/", "#auth-title", False),
                ("chat (signed in)", "/app/#/chat", ".connection[data-state=open]", True),
            ):
                context = browser.new_context()
                if signed_in:
                    context.add_init_script(seed)
                page = context.new_page()
                start = time.perf_counter()
                page.goto(base + url)
                page.wait_for_selector(ready)
                results[label].append((time.perf_counter() - start) * 1000)
                context.close()
        browser.close()
    print(f"{'first screen (cold, ms)':<26} {'median':>7} {'p90':>7} {'max':>7}  runs={runs}")
    for label, values in results.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(f"{label:<26} {statistics.median(values):>7.0f} {p90:>7.0f} {values[-1]:>7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    sizes()
    config = {
        "plugins": {
            "enabled": ["auth", "chat", "webui"],
            "auth": {"bcrypt_rounds": 4},
            "chat": {
                "default_provider": "none",
                "providers": {"none": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                "characters": {"lumina": {"name": "Lumina", "provider": "none", "persona": "."}},
            },
        }
    }
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(config, Path(tmp)) as server:
        first_screens(server.url, args.runs)


if __name__ == "__main__":
    main()
