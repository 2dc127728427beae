"""The web client's weight, first screen and Enter-to-first-token: bytes of HTML, JS and
CSS (raw and gzipped, as served); the time from navigation to a usable first screen in
headless Chromium on localhost, cold (a fresh browser context each time: nothing cached),
for the login page and for a signed-in user's chat page; and, with the characters talking
to a fake OpenAI server on 127.0.0.1 that answers at once, the time from the Enter key in
the composer to the first token painted in the reply's bubble (measured in the page:
keydown to the first mutation that puts text in the streaming bubble).

    .venv/bin/python bench/webui.py [--runs 10] [--turns 20]

The budget (under 200 KB of JS+CSS compressed, first screen under 1 s, Enter-to-first-
token under 100 ms on localhost) is measured here and printed, never asserted in a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builtin_plugins.webui import assets
from builtin_plugins.webui.plugin import STATIC
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess

# Set in the page: the Enter key's time, then the first time a new reply's bubble has text.
WATCH_FIRST_TOKEN = """() => {
  const box = document.querySelector('.composer textarea');
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      window.__before = new Set(document.querySelectorAll('li.msg.assistant'));
      window.__enter = performance.now();
      window.__first = null;
    }
  }, true);
  // a reply's bubble that was not there at Enter, with text (streaming or, when the whole
  // reply came within one frame, already settled)
  new MutationObserver(() => {
    if (window.__enter == null || window.__first != null) return;
    for (const li of document.querySelectorAll('li.msg.assistant')) {
      if (!window.__before.has(li) && li.querySelector('.body').textContent) {
        window.__first = performance.now();
        return;
      }
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

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


def first_tokens(base: str, turns: int) -> None:
    """Enter in the composer to the first token painted, ``turns`` times in one page."""
    from playwright.sync_api import sync_playwright

    pair = login(base)
    tokens = {
        "llmmc.access": pair["access_token"],
        "llmmc.refresh": pair["refresh_token"],
        "llmmc.expires": str(int(time.time() * 1000) + 25 * 60 * 1000),
    }
    seed = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in tokens.items())
    times: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context()
        context.add_init_script(seed)
        page = context.new_page()
        page.goto(base + "/app/#/chat")
        page.wait_for_selector(".connection[data-state=open]")
        page.evaluate(WATCH_FIRST_TOKEN)
        box = page.locator(".composer textarea")
        for i in range(turns + 1):
            box.fill(f"turn {i}")
            box.press("Enter")
            try:
                page.wait_for_function("() => window.__first != null", timeout=10_000)
            except Exception:
                print("no first token; the page shows:", page.locator(".messages").inner_text())
                raise
            page.wait_for_selector("li.msg.assistant.streaming", state="detached")
            page.wait_for_selector(".conversation[aria-busy=false]")
            if i:  # the first turn makes the conversation: not counted
                times.append(page.evaluate("window.__first - window.__enter"))
        browser.close()
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(f"{'Enter to first token (ms)':<26} {'median':>7} {'p90':>7} {'max':>7}  turns={turns}")
    print(
        f"{'chat (fake upstream)':<26} {statistics.median(times):>7.0f} {p90:>7.0f} {times[-1]:>7.0f}"
    )


def login(base: str) -> dict[str, object]:
    body = json.dumps({"email": "bench@example.com", "password": "Bench-Horse-12"}).encode()
    req = urllib.request.Request(
        base + "/api/v1/auth/login", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    sizes()
    # the fake upstream on its own loop in a thread: it answers at once, a word a delta
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    llm = FakeOpenAI(default_reply="Hello from the fake upstream, answering at once.")
    asyncio.run_coroutine_threadsafe(llm.start(), loop).result(30)
    config = {
        "plugins": {
            "enabled": ["auth", "chat", "webui"],
            "auth": {"bcrypt_rounds": 4},
            "chat": {
                "default_provider": "fake",
                "max_retries": 0,
                "providers": {"fake": {"type": "openai", "base_url": llm.url, "model": "fake"}},
                "characters": {
                    "lumina": {
                        "name": "Lumina",
                        "provider": "fake",
                        "persona": ".",
                        "talkativeness": 0.0,
                    }
                },
            },
        }
    }
    try:
        with tempfile.TemporaryDirectory() as tmp, ServerProcess(config, Path(tmp)) as server:
            first_screens(server.url, args.runs)
            first_tokens(server.url, args.turns)
    finally:
        asyncio.run_coroutine_threadsafe(llm.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
