"""Helpers for the ratelimit tests: a tiny plugin with a chat-class route and a route that
asks the ratelimit service like the chat plugin's WebSocket does for each message."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sdk import Plugin, Request, Route, errors, hookimpl, services

GENEROUS = "100000/minute"


class ChatLikePlugin(Plugin):
    """``POST /test/chat`` is a chat route (limits + token quota); ``POST /test/ws-message``
    is exempt from route limits and counts through the ``ratelimit`` service instead."""

    name = "chatlike"
    config_schema = {"type": "object"}

    @hookimpl
    def register_routes(self) -> list[Route]:
        async def chat(req: Request) -> Any:
            return {"ok": True}

        async def ws_message(req: Request) -> Any:
            limiter = self.context.services.get(services.RATELIMIT)
            if limiter is None:
                raise errors.ServiceUnavailable("no limiter")
            assert isinstance(limiter, services.RateLimiter)
            headers = await limiter.check(
                "POST /api/v1/chat", req.identity, req.client_ip, quota=True
            )
            return {"ok": True, "headers": headers}

        async def quota(req: Request) -> Any:
            service = self.context.services.get(services.QUOTA)
            return await service.usage(req.require_identity())

        return [
            Route("GET", "/test/quota", quota, auth="user", rate_limit=None),
            Route("POST", "/test/chat", chat, auth="user", rate_limit="chat"),
            Route("POST", "/test/ws-message", ws_message, auth="user", rate_limit=None),
        ]


def rl_config(
    ratelimit: dict[str, Any] | None = None,
    kernel: dict[str, Any] | None = None,
    enabled: tuple[str, ...] = ("ratelimit", "chatlike"),
) -> dict[str, Any]:
    rl: dict[str, Any] = {"default": GENEROUS, "routes": {}}
    rl.update(ratelimit or {})
    cfg: dict[str, Any] = {"plugins": {"enabled": list(enabled), "required": [], "ratelimit": rl}}
    if kernel:
        cfg["kernel"] = kernel
    return cfg


def unique_prefix() -> str:
    return f"llmmc-test:{uuid.uuid4().hex}:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@pytest.fixture
def throwaway_redis():
    redis = ThrowawayRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class ServerProcess:
    """``llmmultichat serve --config PATH --port P`` in a subprocess of its own."""

    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cli = Path(sys.executable).parent / "llmmultichat"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(cli), "serve", "--config", str(self.config_path), "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    async def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
                try:
                    async with session.get(self.base_url + "/ping") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready: {self.log_path.read_text()[-3000:]}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if hasattr(self, "_log"):
            self._log.close()


def two_server_toml(
    data_dir: Path, *, jwt_secret: str, prefix: str, redis_url: str, routes: dict[str, str]
) -> str:
    route_lines = "\n".join(f'"{k}" = "{v}"' for k, v in routes.items())
    return f"""
[kernel]
data_dir = "{data_dir}"

[kernel.bus]
backend = "redis"
redis_url = "{redis_url}"
channel_prefix = "{prefix}events:"

[plugins]
enabled = ["auth", "ratelimit"]
required = ["auth", "ratelimit"]

[plugins.auth]
jwt_secret = "{jwt_secret}"
bcrypt_rounds = 4
redis_prefix = "{prefix}auth:"

[plugins.ratelimit]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}rl:"
default = "100000/minute"

[plugins.ratelimit.routes]
{route_lines}
"""


@pytest.fixture
async def two_servers(tmp_path):
    """Two server processes sharing the Redis at 127.0.0.1:6379 (DB 9, a unique prefix):
    its bus, its rate limits and its token revocations; each has its own DuckDB file."""
    from tests.auth.conftest import JWT_SECRET

    prefix = unique_prefix()
    servers = []
    for i in range(2):
        config = tmp_path / f"plugins{i}.toml"
        config.write_text(
            two_server_toml(
                tmp_path / f"data{i}",
                jwt_secret=JWT_SECRET,
                prefix=prefix,
                redis_url="redis://127.0.0.1:6379/9",
                routes={
                    "POST /api/v1/auth/login": "10/hour",
                    "POST /api/v1/auth/register": "100000/minute",
                },
            )
        )
        servers.append(ServerProcess(config, free_port(), tmp_path / f"server{i}.log"))
    try:
        for s in servers:
            s.start()
        await asyncio.gather(*(s.wait_ready() for s in servers))
        yield servers
    finally:
        for s in servers:
            s.stop()
