"""Benchmark: the cost of authentication and rate limiting on ``GET /api/v1/auth/me``.

    .venv/bin/python bench/auth.py [--seconds 5] [--concurrency 32] [--redis-url URL]
        [--postgres URL] [--log-level INFO|WARNING]

In one run, each server pinned to CPU 0 and this load generator (a minimal keep-alive
HTTP/1.1 client) pinned to CPU 1:

1. a bare aiohttp app whose only route verifies the same JWT with PyJWT (the floor);
2. the real server, embedded defaults (DuckDB, in-process limits and revocations):
   ``GET /ping`` (the kernel's trivial route) and ``GET /api/v1/auth/me`` (JWT
   verification, revocation check, rate-limit check, user lookup, quota);
3. the same on PostgreSQL (a fresh database, dropped at the end; ``--postgres ''``: DuckDB)
   with Redis: rate limits, quotas and revocations in Redis;
4. the event loop's worst stall while 20 logins (bcrypt, cost 12) run at once, measured by
   a probe plugin inside the server (server on one CPU, then on every CPU).

Prints requests/s, p50/p99 latency, auth's per-request cost (CPU time per request of /me
minus /ping at saturation) and /me as a share of the bare endpoint's requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-" + "s" * 51
PASSWORD = "Bench-passw0rd"
ISSUER, AUDIENCE = "llmmultichat", "llmmultichat-api"
HUGE = "100000000/minute"


# --------------------------------------------------------------------------- servers


def kernel_config(
    data_dir: str, redis_url: str | None, prefix: str, log_level: str, database_url: str = ""
) -> dict[str, Any]:
    ratelimit: dict[str, Any] = {
        "default": HUGE,
        "routes": {"POST /api/v1/auth/login": HUGE, "POST /api/v1/auth/register": HUGE},
    }
    auth: dict[str, Any] = {"jwt_secret": SECRET, "bcrypt_rounds": 12}
    if redis_url:
        ratelimit.update(backend="redis", redis_url=redis_url, key_prefix=prefix + "rl:")
        auth.update(redis_url=redis_url, redis_prefix=prefix + "auth:")
    kernel: dict[str, Any] = {"data_dir": data_dir, "log_level": log_level}
    return {
        "kernel": kernel,
        "plugins": {
            # as shipped: the request-wrapping plugins on (the access log to a file)
            "enabled": [
                "storage",
                "accesslog",
                "metrics",
                "compression",
                "auth",
                "ratelimit",
                "loopprobe",
            ],
            "required": ["auth", "ratelimit"],
            "storage": {"url": database_url},
            "accesslog": {"path": str(Path(data_dir) / "access.log")},
            "auth": auth,
            "ratelimit": ratelimit,
        },
    }


def serve_kernel(config_json: str, port: int) -> None:
    from aiohttp import web

    from kernel.app import build_kernel
    from kernel.config import from_dict
    from sdk import Plugin, Request, Route, hookimpl

    class LoopProbe(Plugin):
        """Measures how late the event loop wakes a 1 ms sleep, between start and read."""

        name = "loopprobe"
        config_schema = {"type": "object"}
        task: asyncio.Task[None] | None = None
        worst = 0.0
        samples = 0

        async def _probe(self) -> None:
            loop = asyncio.get_running_loop()
            while True:
                t0 = loop.time()
                await asyncio.sleep(0.001)
                lag = loop.time() - t0 - 0.001
                self.worst = max(self.worst, lag)
                self.samples += 1

        @hookimpl
        def register_routes(self) -> list[Route]:
            async def start(req: Request) -> Any:
                self.worst, self.samples = 0.0, 0
                self.task = asyncio.create_task(self._probe())
                return {"started": True}

            async def read(req: Request) -> Any:
                if self.task is not None:
                    self.task.cancel()
                    self.task = None
                return {"worst_ms": self.worst * 1000, "samples": self.samples}

            return [
                Route("POST", "/bench/probe", start, auth="public", rate_limit=None),
                Route("GET", "/bench/probe", read, auth="public", rate_limit=None),
            ]

    loaded = from_dict(json.loads(config_json), "<bench>")
    # as `llmmultichat serve` does: the access log is written at INFO (the default)
    from kernel.logs import configure_logging

    configure_logging(loaded.kernel["log_level"], loaded.kernel["log_format"])

    async def factory() -> web.Application:
        _, app = await build_kernel(loaded, extra_plugins={"loopprobe": LoopProbe})
        return app

    web.run_app(factory(), host="127.0.0.1", port=port, access_log=None, print=None)


def serve_bare(port: int) -> None:
    import jwt
    from aiohttp import web

    decoder = jwt.PyJWT()

    async def me(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        try:
            claims = decoder.decode(
                header[7:],
                SECRET,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat"]},
            )
        except jwt.InvalidTokenError:
            return web.json_response({"detail": "bad token"}, status=401)
        return web.json_response({"user_id": claims["sub"]})

    app = web.Application()
    app.router.add_get("/me", me)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class Server:
    def __init__(self, args: list[str], cpus: str | None, log: Path | None = None) -> None:
        self.port = free_port()
        cmd = [sys.executable, __file__, *args, str(self.port)]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus, *cmd]
        # the server's log (the access log at INFO) goes to a file, as under a supervisor
        out = open(log, "ab") if log is not None else None
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        if out is not None:
            out.close()

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (as bench/common.py measures it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


# --------------------------------------------------------------------------- client


async def call(
    port: int, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", json=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


async def _worker(
    port: int, raw: bytes, until: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    perf = time.perf_counter
    try:
        while perf() < until:
            t0 = perf()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            i = lower.index(b"content-length:") + 15
            length = int(lower[i : lower.index(b"\r\n", i)])
            await reader.readexactly(length)
            latencies.append(perf() - t0)
            if head[9:12] != b"200":
                errors.append(int(head[9:12]))
    finally:
        writer.close()


def request_bytes(path: str, token: str) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()


async def load_once(
    port: int, raw: bytes, seconds: float, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(_worker(port, raw, start + seconds, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} non-200 answers, e.g. {errors[:3]}")
    return latencies, elapsed


async def interleaved(
    targets: dict[str, tuple[int, bytes, int]], seconds: float, rounds: int, concurrency: int
) -> dict[str, dict[str, float]]:
    """Load each target for seconds/rounds at a time, rotating through the targets, so that
    the load of a shared machine, which drifts, weighs on every target alike. Besides
    requests/s, the server's CPU time per request (steadier on a busy machine)."""
    for port, raw, _ in targets.values():  # warm-up
        await load_once(port, raw, 1.0, concurrency)
    names = list(targets)
    lat: dict[str, list[float]] = {n: [] for n in names}
    elapsed = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    round_rps: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            port, raw, pid = targets[name]
            cpu0 = cpu_seconds(pid)
            got, took = await load_once(port, raw, seconds / rounds, concurrency)
            cpu[name] += cpu_seconds(pid) - cpu0
            lat[name] += got
            elapsed[name] += took
            round_rps[name].append(len(got) / took)
    out = {}
    for name in names:
        q = statistics.quantiles(sorted(lat[name]), n=100)
        out[name] = {
            "requests": len(lat[name]),
            "rps": len(lat[name]) / elapsed[name],
            "median_round_rps": statistics.median(round_rps[name]),
            "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000,
            "cpu_us": cpu[name] / len(lat[name]) * 1e6,
        }
    return out


async def register(port: int) -> str:
    tag = uuid.uuid4().hex[:8]
    status, data = await call(
        port,
        "POST",
        "/api/v1/auth/register",
        {"username": f"bench_{tag}", "email": f"{tag}@bench.example", "password": PASSWORD},
    )
    if status != 201:
        raise RuntimeError(f"register failed: {status} {data}")
    return data["user"]["email"], data["access_token"]


async def idle_stall(port: int, seconds: float) -> float:
    """The same probe with nothing to do: this machine's noise floor."""
    await call(port, "POST", "/bench/probe")
    await asyncio.sleep(seconds)
    _, probe = await call(port, "GET", "/bench/probe")
    return float(probe["worst_ms"])


async def login_stall(port: int, email: str, logins: int = 20) -> dict[str, float]:
    await call(port, "POST", "/bench/probe")
    await asyncio.sleep(0.2)  # baseline samples before the burst
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(
            call(port, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
            for _ in range(logins)
        )
    )
    burst = time.perf_counter() - t0
    await asyncio.sleep(0.1)
    _, probe = await call(port, "GET", "/bench/probe")
    bad = [s for s, _ in results if s != 200]
    if bad:
        raise RuntimeError(f"logins failed: {bad[:3]}")
    idle = await idle_stall(port, burst + 0.3)
    return {
        "worst_stall_ms": probe["worst_ms"],
        "samples": probe["samples"],
        "burst_s": burst,
        "idle_worst_stall_ms": idle,
    }


# --------------------------------------------------------------------------- micro


async def micro(redis_url: str, postgres: str, n: int = 20000) -> dict[str, float]:
    """The auth plugin's own CPU time per request, without HTTP: the ``authenticate``
    hook with a token seen before, and the ``/me`` handler's part (the cached user and
    its JSON), in one process, on the embedded defaults and on PostgreSQL + Redis."""
    from builtin_plugins.auth.views import user_json
    from kernel.testing import start_kernel

    out: dict[str, float] = {}
    for label in ("memory", "redis"):
        if label == "redis" and not redis_url:
            continue
        prefix = f"llmmc-bench:{uuid.uuid4().hex}:"
        cfg = kernel_config(tempfile.mkdtemp(prefix="llmmc-bench-"), None, prefix, "WARNING")
        cfg["plugins"]["enabled"] = ["auth"]
        cfg["plugins"]["required"] = ["auth"]
        cfg["plugins"]["auth"]["bcrypt_rounds"] = 4
        pg_name = ""
        if label == "redis":
            cfg["plugins"]["auth"].update(redis_url=redis_url, redis_prefix=prefix + "auth:")
            if postgres:
                pg_name, url = await fresh_database(postgres)
                cfg["kernel"]["database"] = {"url": url}
        client = await start_kernel(cfg, test_auth=False)
        try:
            plugin = client.plugin("auth")
            tag = uuid.uuid4().hex[:8]
            r = await client.post(
                "/api/v1/auth/register",
                json={
                    "username": f"m_{tag}",
                    "email": f"{tag}@bench.example",
                    "password": PASSWORD,
                },
            )
            token = (await r.json())["access_token"]
            request = type("Req", (), {"headers": {"Authorization": f"Bearer {token}"}})()
            for _ in range(200):  # subscribed and cached
                identity = await plugin.authenticate(request)
                await asyncio.sleep(0.01) if label == "redis" else None
            t0 = time.process_time()
            for _ in range(n):
                identity = await plugin.authenticate(request)
            out[f"{label}_authenticate_us"] = (time.process_time() - t0) / n * 1e6
            t0 = time.process_time()
            for _ in range(n):
                user_json(await plugin.sessions.me(identity))
            out[f"{label}_me_handler_us"] = (time.process_time() - t0) / n * 1e6
            out[f"{label}_subscribed"] = float("subscribed" in plugin.revocations.status()[1])
        finally:
            await client.close()
            if pg_name:
                await drop_database(postgres, pg_name)
    return out


# --------------------------------------------------------------------------- main


def fmt(name: str, r: dict[str, float]) -> str:
    return (
        f"  {name:<30} {r['rps']:>7,.0f} req/s (median of rounds {r['median_round_rps']:>7,.0f})"
        f"   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
        f"   server CPU {r['cpu_us']:5.0f} µs/request"
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {1})  # the load generator on CPU 1; servers on CPU 0
    seconds, conc = args.seconds, args.concurrency
    out: dict[str, Any] = {"seconds": seconds, "concurrency": conc}
    tmp = Path(tempfile.mkdtemp(prefix="llmmc-bench-"))
    prefix = f"llmmc-bench:{uuid.uuid4().hex}:"

    load1, load5, _ = os.getloadavg()
    out["loadavg"] = [load1, load5]
    print(
        f"Each target: {seconds:g} s in {args.rounds} interleaved rounds after a 1 s warm-up, "
        f"{conc} keep-alive connections; "
        f"server on CPU 0, client on CPU 1. Load average before: {load1:.2f}, {load5:.2f} "
        f"({os.cpu_count()} CPUs)."
    )
    level = args.log_level
    print(f"[kernel] log_level = {level!r} (the access log is written at INFO)")
    out["log_level"] = level
    backends = [("memory", None)]
    if args.redis_url and not args.only_stall:
        backends.append(("redis", args.redis_url))
    servers: dict[str, Server] = {}
    pg_name = ""
    try:
        for label, url in backends:
            db_url = ""
            if label == "redis" and args.postgres:
                pg_name, db_url = await fresh_database(args.postgres)
            cfg = kernel_config(str(tmp / label), url, prefix, level, db_url)
            log = tmp / f"{label}.log"
            servers[label] = Server(["--serve-kernel", json.dumps(cfg)], "0", log)
        if not args.only_stall:
            servers["bare"] = Server(["--serve-bare"], "0")
        await asyncio.gather(*(s.ready() for s in servers.values()))
        accounts = {label: await register(servers[label].port) for label, _ in backends}
        email, token = accounts["memory"]
        if not args.only_stall:
            bare = servers["bare"]
            targets = {"bare": (bare.port, request_bytes("/me", token), bare.proc.pid)}
            for label, _ in backends:
                port, tok = servers[label].port, accounts[label][1]
                status, me = await call(port, "GET", "/api/v1/auth/me", token=tok)
                assert status == 200, me
                pid = servers[label].proc.pid
                targets[f"{label}_ping"] = (port, request_bytes("/ping", ""), pid)
                targets[f"{label}_me"] = (port, request_bytes("/api/v1/auth/me", tok), pid)
            out.update(await interleaved(targets, seconds, args.rounds, conc))
            print("bare aiohttp + PyJWT verify (the floor):")
            print(fmt("GET /me", out["bare"]))
            for label, _ in backends:
                where = "embedded defaults" if label == "memory" else "Redis"
                if label == "redis":
                    where = "PostgreSQL + Redis" if args.postgres else "DuckDB + Redis"
                print(f"server, {where}:")
                print(fmt("GET /ping (kernel, trivial)", out[f"{label}_ping"]))
                print(fmt("GET /api/v1/auth/me", out[f"{label}_me"]))
        if not args.skip_stall:
            out["stall_1cpu"] = await login_stall(servers["memory"].port, email)
    finally:
        for server in servers.values():
            server.stop()
        if pg_name:
            await drop_database(args.postgres, pg_name)

    if not args.skip_stall:
        cfg = kernel_config(str(tmp / "stall"), None, prefix, level)
        server = Server(["--serve-kernel", json.dumps(cfg)], None, tmp / "stall.log")
        try:
            await server.ready()
            email, _ = await register(server.port)
            out["stall_all_cpus"] = await login_stall(server.port, email)
        finally:
            server.stop()

    if not args.only_stall:
        print("per-request cost of auth on /me (CPU time per request at saturation, minus /ping):")
    for label, _ in backends if not args.only_stall else []:
        ping, me = out[f"{label}_ping"], out[f"{label}_me"]
        cost = (1 / me["rps"] - 1 / ping["rps"]) * 1e6
        share = me["rps"] / out["bare"]["rps"] * 100
        cpu_share = out["bare"]["cpu_us"] / me["cpu_us"] * 100
        out[f"{label}_auth_cost_us"] = cost
        out[f"{label}_share_of_bare_pct"] = share
        out[f"{label}_cpu_share_of_bare_pct"] = cpu_share
        print(
            f"  {label:<7} {cost:7.0f} µs/request;  /me = {share:5.1f}% of the bare endpoint's "
            f"req/s; by server CPU per request: {cpu_share:5.1f}%"
        )
    for key, where in (("stall_1cpu", "server on 1 CPU"), ("stall_all_cpus", "server on all CPUs")):
        if key not in out:
            continue
        s = out[key]
        print(
            f"event loop worst stall during 20 concurrent logins (bcrypt cost 12, {where}): "
            f"{s['worst_stall_ms']:.1f} ms ({s['samples']} probes; burst took {s['burst_s']:.2f} s; "
            f"idle control over as long: {s['idle_worst_stall_ms']:.1f} ms)"
        )
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-kernel":
        serve_kernel(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per target, in total")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per target")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/10",
        help="Redis for the redis-backend run ('' to skip it)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "LLMMC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL for the Redis run (a fresh database is made and dropped; '': DuckDB)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="[kernel] log_level of the servers (INFO, the default, writes the access log)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--only-stall", action="store_true", help="only the login-burst stall")
    parser.add_argument("--skip-stall", action="store_true", help="no login-burst stall")
    parser.add_argument(
        "--micro", action="store_true", help="only the auth plugin's own CPU per call (no HTTP)"
    )
    args = parser.parse_args()
    if args.micro:
        figures = asyncio.run(micro(args.redis_url, args.postgres))
        for label in ("memory", "redis"):
            if f"{label}_authenticate_us" in figures:
                print(
                    f"{label}: authenticate hook {figures[f'{label}_authenticate_us']:.1f} µs, "
                    f"/me's user and its JSON {figures[f'{label}_me_handler_us']:.1f} µs "
                    f"(CPU per call; subscribed: {bool(figures.get(f'{label}_subscribed'))})"
                )
        return
    out = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
