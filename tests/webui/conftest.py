"""The web client in real headless Chromium (Debian's ``chromium``, driven by Playwright
for Python) against a real ``llmmultichat serve`` process whose characters talk to a fake
OpenAI server, whose weather tool talks to a fake Open-Meteo and whose translate tool
talks to a fake LibreTranslate, all on 127.0.0.1.

Every page records what it asked for: a request to any host other than 127.0.0.1 is
refused and fails the test, and so does any console error or uncaught exception.
Screenshots go to ``SCREENSHOTS`` (``build/webui-screenshots`` unless
``$LLMMC_SCREENSHOTS`` names another folder).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.libretranslate import FakeLibreTranslate
from tests.fakes.llm_common import ScriptedReply
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import BIN, ROOT, ServerProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
# a loaded CI machine can take seconds to answer; waits end as soon as the page is ready
playwright_sync.expect.set_options(timeout=20_000)

CHROMIUM = os.environ.get("LLMMC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("LLMMC_SCREENSHOTS") or ROOT / "build" / "webui-screenshots")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 780}
ADMIN = {"email": "root@example.com", "username": "root", "password": "Admin-Horse-42"}
XSS = '<img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> **still bold**'


class ScriptedOpenAI(FakeOpenAI):
    """Answers by what was asked, so the order in which tests (and memory's background
    summaries) call it does not matter:

    - a conversation whose last message is a tool result: a sentence about that weather
      or translation;
    - a user message about the weather, with tools offered: a ``weather`` call for Tokyo;
    - "translate", with tools offered: a ``translate`` call of "Thank you" into Japanese;
    - "xss please": a reply full of HTML that must show as text;
    - "reconnect": a reply streamed over about six seconds (time to drop the socket);
    - "code please": a reply with a code block and a table;
    - "slowly": a reply streamed word by word for a minute (Stop ends it long before);
    - anything else: "Hello! You said: ..." streamed a word at a time.
    """

    def _next_reply(self, body: dict[str, Any]) -> ScriptedReply:
        if self._script:
            return self._script.popleft()
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text = str(user.get("content") or "")
        if last.get("role") == "tool":
            data = json.loads(last.get("content") or "{}")
            if "translated_text" in data:
                said = f"In Japanese that is {data['translated_text']}."
            else:
                said = f"It is {data.get('temperature')} degrees in {data.get('city')}."
            return ScriptedReply(content=said, chunk_delay=0.02)
        if ("weather" in text.lower() or "天気" in text) and body.get("tools"):
            return ScriptedReply(tool_calls=[{"name": "weather", "arguments": {"city": "Tokyo"}}])
        if "translate" in text.lower() and body.get("tools"):
            call = {"name": "translate", "arguments": {"text": "Thank you", "target_lang": "ja"}}
            return ScriptedReply(tool_calls=[call])
        if "xss please" in text.lower():
            return ScriptedReply(content=XSS, chunk_delay=0.01)
        if "reconnect" in text.lower():
            words = f"Hello! You said: {text} " + " ".join(["again"] * 40)
            return ScriptedReply(content=words, chunk_delay=0.15)
        if "code please" in text.lower():
            code = "Here it is:\n\n```python\nprint('hi')\n```\n\n| City | Weather |\n| --- | --- |\n| Tokyo | Sunny |"
            return ScriptedReply(content=code, chunk_delay=0.01)
        if "slowly" in text.lower():
            return ScriptedReply(content=" ".join(["word"] * 1200), chunk_delay=0.05)
        return ScriptedReply(content=self._default_text(body), chunk_delay=0.03)


class Upstreams:
    """The fakes on their own event loop in a thread (the browser tests are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.llm = ScriptedOpenAI()
        self.weather = FakeOpenMeteo()
        self.translate = FakeLibreTranslate()
        self._run(self.llm.start())
        self._run(self.weather.start())
        self._run(self.translate.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self._run(self.llm.close())
        self._run(self.weather.close())
        self._run(self.translate.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def server_config(ups: Upstreams, access_token_minutes: int = 30) -> dict[str, Any]:
    character = {"provider": "fake", "talkativeness": 0.0}
    return {
        "kernel": {"trusted_proxies": ["127.0.0.1/32"]},
        "plugins": {
            "enabled": ["auth", "ratelimit", "chat", "memory", "weather", "translate", "webui"],
            "required": ["auth", "webui"],
            "auth": {"bcrypt_rounds": 4, "access_token_minutes": access_token_minutes},
            "ratelimit": {
                "default": "100000/minute",
                "routes": {"POST /api/v1/auth/login": "5/minute"},
            },
            "chat": {
                "default_provider": "fake",
                "max_retries": 0,
                "providers": {"fake": {"type": "openai", "base_url": ups.llm.url, "model": "fake"}},
                "characters": {
                    "lumina": {
                        **character,
                        "name": "Lumina",
                        "aliases": ["ルミナ"],
                        "persona": "Host.",
                    },
                    "claris": {
                        **character,
                        "name": "Claris",
                        "aliases": ["クラリス"],
                        "persona": "Explains.",
                    },
                    "nox": {
                        **character,
                        "name": "Nox",
                        "aliases": ["ノクス"],
                        "persona": "Checks.",
                        "keywords": ["weather", "天気"],
                    },
                },
            },
            "memory": {"embedder": "hashing"},
            "weather": {"base_url": ups.weather.url, "geocoding_url": ups.weather.url},
            "translate": {"provider": "libretranslate", "base_url": ups.translate.url},
        },
    }


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    try:
        yield ups
    finally:
        ups.close()


def server_with_admin(config: dict[str, Any], workdir: Path) -> Iterator[ServerProcess]:
    """A real server on ``config`` whose administrator ``ADMIN`` was made with
    ``users create-admin`` before it started; stopped when the caller is done."""
    proc = ServerProcess(config, workdir)
    made = subprocess.run(
        [
            str(BIN),
            *("users", "create-admin", "--config", str(proc.config_path)),
            *("--email", ADMIN["email"], "--username", ADMIN["username"]),
        ],
        env={**proc.env, "LLMMC_ADMIN_PASSWORD": ADMIN["password"]},
        cwd=str(workdir),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def server(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from server_with_admin(server_config(upstreams), tmp_path_factory.mktemp("webui"))


@pytest.fixture(scope="module")
def short_token_server(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server whose access tokens last one minute (the shortest auth allows)."""
    proc = ServerProcess(
        server_config(upstreams, access_token_minutes=1), tmp_path_factory.mktemp("short")
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `bash scripts/browser.sh` "
            "(apt-get install chromium) or set LLMMC_CHROMIUM"
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page and everything it did that a test must not allow."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.offsite: list[str] = []
        self.errors: list[str] = []
        # resource paths a test expects to fail (Chromium logs every 4xx as a console error)
        self.expected_failures: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("websocket", lambda ws: self._check(ws.url))

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and any(
            part in url for part in self.expected_failures
        ):
            return
        self.errors.append(f"console: {msg.text} ({url})")

    def _check(self, url: str) -> bool:
        host = urlsplit(url).hostname
        if url.startswith(("data:", "blob:", "about:")) or host == "127.0.0.1":
            return True
        self.offsite.append(url)
        return False

    def route(self, route: Any) -> None:
        if self._check(route.request.url):
            route.continue_()
        else:
            route.abort()

    def assert_clean(self) -> None:
        assert self.offsite == [], f"requests left 127.0.0.1: {self.offsite}"
        assert self.errors == [], f"the page logged errors: {self.errors}"


@pytest.fixture
def open_page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """``open_page(viewport=..., locale=..., color_scheme=...)`` → a Watched page; checked
    when the test ends."""
    watched: list[Watched] = []
    contexts: list[Any] = []

    def factory(
        viewport: dict[str, int] | None = None,
        locale: str = "en-US",
        client_ip: str | None = None,
        color_scheme: str = "light",
    ) -> Watched:
        # the server trusts 127.0.0.1 as a proxy: a page can stand for another client
        headers = {"X-Forwarded-For": client_ip} if client_ip else None
        context = browser.new_context(
            viewport=viewport or DESKTOP,
            locale=locale,
            color_scheme=color_scheme,
            extra_http_headers=headers,
            reduced_motion="reduce",  # no transitions half-way through a screenshot
        )
        contexts.append(context)
        page = context.new_page()
        w = Watched(page, server.url)
        context.route("**/*", w.route)
        watched.append(w)
        return w

    yield factory
    try:
        for w in watched:
            w.assert_clean()
    finally:
        for c in contexts:
            c.close()


def shot(page: Any, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
