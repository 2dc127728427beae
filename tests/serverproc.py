"""Real ``llmmultichat serve`` processes for tests that need more than one server
(Redis-shared bus, limits and revocation) or the real command line."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from kernel.testing import missing_requirements

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "llmmultichat"


def redis_available(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else toml_value(key)


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for test configs: nested tables, scalars, lists and inline tables."""
    lines: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{toml_key(k)} = {toml_value(v)}")
        for k, v in subs.items():
            table(f"{prefix}.{toml_key(k)}" if prefix else toml_key(k), v)

    table("", config)
    return "\n".join(lines) + "\n"


class ServerProcess:
    """``llmmultichat serve`` in a subprocess, on a free port."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        name: str = "server",
        args: tuple[str, ...] = (),
    ) -> None:
        self.args = args  # more ``serve`` arguments, e.g. ("--workers", "2")
        self.port = free_port()
        config = {**config, "kernel": {**config.get("kernel", {}), "port": self.port}}
        if "plugins" in config:  # what the enabled plugins require (the storage plugin)
            plugins = config["plugins"] = dict(config["plugins"])
            enabled = plugins["enabled"] = list(plugins.get("enabled", []))
            enabled[:0] = missing_requirements(enabled)
        config["kernel"].setdefault("data_dir", str(workdir / f"{name}-data"))
        config["kernel"].setdefault("shutdown_timeout_seconds", 5)
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = workdir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url

    def start(self, wait: bool = True, timeout: float = 60) -> ServerProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--config", str(self.config_path), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(self.config_path.parent),
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the server has started: its port answers and /readyz no longer says
        "starting" (the port opens before the plugins start); with ``--workers N``, until
        /metrics counts N ready workers (any one worker may answer /readyz)."""
        workers = (
            int(self.args[self.args.index("--workers") + 1]) if "--workers" in self.args else 1
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            answer = self.get_sync("/readyz")
            if answer is not None and not starting(*answer):
                if workers <= 1 or self.ready_workers() >= workers:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"server did not start:\n{self.output()}")

    def get_sync(self, path: str) -> tuple[int, bytes] | None:
        """``GET path`` without an event loop; None when nothing answers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError:
            return None
        finally:
            conn.close()

    def ready_workers(self) -> float:
        """``llmmc_ready`` summed over the workers (/metrics), or infinity when /metrics
        is not served to the tests (then /readyz alone has to do)."""
        answer = self.get_sync("/metrics")
        if answer is None or answer[0] != 200:  # 403 not allowed, 404 metrics not enabled
            return float("inf") if answer is not None and answer[0] in (403, 404) else 0
        found = re.search(rb"^llmmc_ready ([0-9.e+-]+)$", answer[1], re.MULTILINE)
        return float(found.group(1)) if found else 0

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def request(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        async with aiohttp.ClientSession() as s, s.request(method, self.url + path, **kwargs) as r:
            try:
                body: Any = await r.json(content_type=None)
            except ValueError:
                body = await r.text()
            return r.status, body, dict(r.headers)


def starting(status: int, body: bytes) -> bool:
    """Whether a /readyz answer says the server is still starting."""
    if status != 503:
        return False
    try:
        reasons = json.loads(body).get("reasons", [])
    except (ValueError, AttributeError):
        return True
    return any(str(r).startswith("starting:") for r in reasons)


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(interval)
    return await predicate()


def unique_prefix() -> str:
    """A Redis key prefix no other test (or concurrent test run) uses."""
    return f"llmmc-test:{uuid.uuid4().hex}:"


class ThrowawayRedis:
    """A private redis-server on a free port, to stop and restart without disturbing the
    shared Redis that other tests use."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
