"""Benchmark: one server on the embedded defaults vs the shared deployment (PostgreSQL +
Redis), and ``serve --workers 2`` vs one worker.

    .venv/bin/python bench/scaleout.py [--seconds 6] [--rounds 3] [--concurrency 32]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--redis-url URL]

Every server is the real ``llmmultichat serve`` command. Two measures:

1. ``GET /api/v1/auth/me`` (authenticated: JWT, revocation check, rate limit, user,
   quota) against the bare aiohttp + PyJWT endpoint of bench/auth.py, each server pinned
   to CPU 0 and the load generator (bench/auth.py's raw keep-alive client) to CPU 1,
   targets interleaved in rounds: the embedded defaults (DuckDB, in-process bus, limits
   and revocations) and the shared deployment (PostgreSQL; Redis for bus, limits,
   revocations). The target: shared /me at least 80 % of the bare endpoint.
2. A chat turn (``POST /api/v1/chat`` in a session, against a fake OpenAI upstream that
   answers at once) and /me on the shared deployment with one worker and with
   ``--workers 2``, nothing pinned (the machine's CPUs are shared by the workers, the
   load generator and the upstream alike).

A fresh PostgreSQL database is made for the run and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import auth as authbench  # noqa: E402  (bench/auth.py: the floor and the load generator)
from common import load  # noqa: E402

from tests.serverproc import free_port, to_toml  # noqa: E402

BIN = Path(sys.executable).parent / "llmmultichat"
HUGE = "100000000/minute"


def server_config(
    data_dir: Path,
    port: int,
    upstream: str,
    database: str,
    redis_url: str,
    prefix: str,
    chat: bool = True,
) -> dict[str, Any]:
    ratelimit: dict[str, Any] = {
        "default": HUGE,
        "routes": {
            "POST /api/v1/auth/login": HUGE,
            "POST /api/v1/auth/register": HUGE,
            "POST /api/v1/chat": HUGE,
            "POST /api/v1/chat/stream": HUGE,
        },
        "quotas": {"tokens_per_day": {"user": 0, "admin": 0}},
    }
    kernel: dict[str, Any] = {"data_dir": str(data_dir), "port": port, "log_level": "WARNING"}
    if database:
        kernel["database"] = {"url": database}
        kernel["bus"] = {
            "backend": "redis",
            "redis_url": redis_url,
            "channel_prefix": prefix + "events:",
        }
        ratelimit.update(backend="redis", redis_url=redis_url, key_prefix=prefix + "rl:")
    plugins = ["auth", "ratelimit", "chat"] if chat else ["auth", "ratelimit"]
    return {
        "kernel": kernel,
        "plugins": {
            "enabled": plugins,
            "required": plugins,
            "auth": {
                "jwt_secret": authbench.SECRET,
                "bcrypt_rounds": 4,
                "redis_prefix": prefix + "auth:",
            },
            "ratelimit": ratelimit,
            "chat": {
                "default_provider": "fake",
                "memory": False,
                "providers": {"fake": {"type": "openai", "base_url": upstream, "model": "m"}},
                "characters": {
                    "lumina": {"name": "Lumina", "provider": "fake", "persona": "You are Lumina."}
                },
            },
        },
    }


class Serve(authbench.Server):
    """``llmmultichat serve`` (optionally pinned to some CPUs, optionally N workers);
    stopped like bench/auth.py's servers."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        name: str,
        workers: int = 1,
        cpus: str | None = None,
    ) -> None:
        self.port = int(config["kernel"]["port"])
        path = workdir / f"{name}.toml"
        path.write_text(to_toml(config))
        cmd = [str(BIN), "serve", "--config", str(path), "--workers", str(workers)]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus, *cmd]
        self.log = (workdir / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        self.workers = workers

    async def ready(self) -> None:
        # The port opens before the plugins start (a starting worker answers 503), and
        # any one worker may answer: wait until /metrics counts every worker ready.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} ({self.log.name})")
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{self.port}/metrics") as r,
                ):
                    body = await r.read()
                found = re.search(rb"^llmmc_ready ([0-9.e+-]+)$", body, re.MULTILINE)
                if r.status == 200 and found and float(found.group(1)) >= self.workers:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("server did not get ready")


async def fresh_database(admin_url: str) -> tuple[str, str]:
    import asyncpg

    name = f"llmmc_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, admin_url.rsplit("/", 1)[0] + "/" + name


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def fmt(name: str, r: dict[str, Any]) -> str:
    return (
        f"  {name:<40} {r['rps']:>7,.0f} req/s   p50 {r['p50_ms']:6.2f} ms   "
        f"p99 {r['p99_ms']:6.2f} ms"
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakes.openai_server import FakeOpenAI

    out: dict[str, Any] = {"loadavg_before": list(os.getloadavg()[:2])}
    workdir = Path(tempfile.mkdtemp(prefix="llmmc-scaleout-"))
    prefix = f"llmmc-bench:{uuid.uuid4().hex}:"
    db_name, db_url = await fresh_database(args.postgres)
    print(
        f"Load average before: {out['loadavg_before'][0]:.2f}, {out['loadavg_before'][1]:.2f} "
        f"({os.cpu_count()} CPUs); database {db_name} (dropped after)."
    )
    servers: dict[str, Serve] = {}
    bare: authbench.Server | None = None
    try:
        async with FakeOpenAI(default_reply="Hello there.") as fake:

            def make(name: str, shared: bool, workers: int = 1, cpus: str | None = None) -> Serve:
                cfg = server_config(
                    workdir / f"{name}-data",
                    free_port(),
                    fake.url,
                    db_url if shared else "",
                    args.redis_url,
                    prefix,
                    chat=not args.no_chat,
                )
                return Serve(cfg, workdir, name, workers, cpus)

            # -- 1. /me against the floor, pinned, interleaved ------------------------------
            os.sched_setaffinity(0, {1})
            bare = authbench.Server(["--serve-bare"], "0")
            servers["embedded"] = make("embedded", False, cpus="0")
            servers["shared"] = make("shared", True, cpus="0")
            await asyncio.gather(bare.ready(), *(s.ready() for s in servers.values()))
            tokens = {}
            for name in ("embedded", "shared"):
                _, tokens[name] = await authbench.register(servers[name].port)
            targets = {"bare": (bare.port, authbench.request_bytes("/me", tokens["shared"]))}
            for name in ("embedded", "shared"):
                targets[f"{name}_me"] = (
                    servers[name].port,
                    authbench.request_bytes("/api/v1/auth/me", tokens[name]),
                )
            me = await authbench.interleaved(targets, args.seconds, args.rounds, args.concurrency)
            out["me"] = me
            print("GET /api/v1/auth/me, server on CPU 0, load generator on CPU 1, interleaved:")
            print(fmt("bare aiohttp + PyJWT (the floor)", me["bare"]))
            for name in ("embedded", "shared"):
                share = me[f"{name}_me"]["rps"] / me["bare"]["rps"] * 100
                out[f"{name}_me_share_pct"] = share
                print(fmt(f"{name}: /me  ({share:.0f}% of the floor)", me[f"{name}_me"]))

            # chat turns, same pinned servers
            if not args.no_chat:
                out["chat_pinned"] = {}
                for name in ("embedded", "shared"):
                    out["chat_pinned"][name] = await chat_load(
                        servers[name].port, tokens[name], args
                    )
                print("POST /api/v1/chat (instant fake upstream), server on CPU 0:")
                for name in ("embedded", "shared"):
                    print(fmt(f"{name}: chat turn", out["chat_pinned"][name]))
            bare.stop()
            bare = None
            for s in servers.values():
                s.stop()
            servers.clear()

            # -- 2. one worker vs two, nothing pinned ----------------------------------------
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            servers["1 worker"] = make("one", True, workers=1)
            servers["2 workers"] = make("two", True, workers=2)
            await asyncio.gather(*(s.ready() for s in servers.values()))
            out["workers"] = {}
            for name, server in servers.items():
                _, token = await authbench.register(server.port)
                me_targets = {
                    name: (server.port, authbench.request_bytes("/api/v1/auth/me", token))
                }
                me_r = await authbench.interleaved(
                    me_targets, args.seconds, args.rounds, args.concurrency
                )
                out["workers"][name] = {"me": me_r[name]}
                if not args.no_chat:
                    out["workers"][name]["chat"] = await chat_load(server.port, token, args)
            print("shared deployment, nothing pinned (2 CPUs shared with the load generator):")
            for name, r in out["workers"].items():
                print(fmt(f"{name}: GET /api/v1/auth/me", r["me"]))
                if "chat" in r:
                    print(fmt(f"{name}: chat turn", r["chat"]))
    finally:
        if bare is not None:
            bare.stop()
        for s in servers.values():
            s.stop()
        await drop_database(args.postgres, db_name)
    out["loadavg_after"] = list(os.getloadavg()[:2])
    print(f"Load average after: {out['loadavg_after'][0]:.2f}, {out['loadavg_after'][1]:.2f}")
    return out


async def chat_load(port: int, token: str, args: argparse.Namespace) -> dict[str, Any]:
    """Chat turns, each starting a session (turns of one session are taken one at a time)."""
    r = await asyncio.to_thread(
        load,
        f"http://127.0.0.1:{port}/api/v1/chat",
        args.seconds,
        args.chat_concurrency,
        {"Authorization": f"Bearer {token}"},
        "POST",
        {"user_input": "hello"},
    )
    if r.get("errors") or set(r.get("statuses", {"200": 0})) - {200, "200"}:
        raise RuntimeError(f"chat turns failed: {r}")
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per target, in total")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (/me)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--chat-concurrency", type=int, default=8)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "LLMMC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--no-chat", action="store_true", help="only /me (no chat plugin)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    out = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
