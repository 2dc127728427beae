"""Kernel overhead: ``GET /ping`` on the kernel with the shipped ``plugins.toml``'s
kernel settings and its request-wrapping plugins as they ship (access log, metrics,
compression) plus only ``auth`` and ``ratelimit`` (and the ``storage`` auth needs),
beside a bare aiohttp app answering the same JSON, and the same kernel without the
request-wrapping plugins; measured in the same run by a load generator in a separate
process (wrk when installed), rounds interleaved. Target: at least 75% of bare aiohttp.

    .venv/bin/python bench/kernel.py [--seconds 5] [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_seconds, free_port, load, row, rss_mb, start

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "bare": "bare aiohttp, the same JSON",
    "kernel": "kernel, as shipped (+ accesslog, metrics, compression)",
    "lean": "kernel without accesslog, metrics, compression",
}


def serve_bare(port: int) -> None:
    from aiohttp import web

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app = web.Application()
    app.router.add_get("/ping", ping)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_kernel(port: int, lean: bool) -> None:
    from kernel.config import load_config
    from kernel.server import run_app

    shipped = load_config(ROOT / "plugins.toml")
    data = tempfile.mkdtemp(prefix="llmmc-bench-")
    kernel = {**shipped.kernel, "data_dir": data, "host": "127.0.0.1", "port": port}
    ops = [] if lean else ["accesslog", "metrics", "compression"]
    plugins: dict[str, Any] = {
        "enabled": ["storage", *ops, "auth", "ratelimit"],
        "required": ["auth"],
        "auth": {"jwt_secret": "bench-" + "k" * 40, "bcrypt_rounds": 4},
        # the access log goes to a file, as a deployment's would
        "accesslog": {"path": str(Path(data) / "access.log")},
    }
    if lean:
        del plugins["accesslog"]
    from kernel.app import build_kernel
    from kernel.config import from_dict

    config = from_dict({"kernel": kernel, "plugins": plugins})
    run_app(
        lambda: build_kernel(config),
        kernel_config=config.kernel,
        host="127.0.0.1",
        port=port,
        print=lambda _: None,
    )


def wait_ready(port: int, timeout: float = 60) -> None:
    """Until /ping is 200 (the kernel answers 503 until every plugin has started)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError("the server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", choices=list(SERVERS))
    ap.add_argument("--port", type=int)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--me",
        action="store_true",
        help="also GET /api/v1/auth/me against a minimal aiohttp + PyJWT endpoint, embedded "
        "and on PostgreSQL + Redis (bench/auth.py's measurement, in the same run)",
    )
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    a = ap.parse_args()
    if a.serve:
        if a.serve == "bare":
            serve_bare(a.port)
        else:
            serve_kernel(a.port, lean=a.serve == "lean")
        return
    # Interleave the two servers over several rounds and keep each one's median round, so
    # a burst of other work on the machine does not favour either side.
    # servers on CPU 0, the load generator (this process and wrk) on CPU 1
    os.sched_setaffinity(0, {1})
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in SERVERS}
    for _ in range(a.rounds):
        for kind in SERVERS:
            port = free_port()
            proc = start([__file__, "--serve", kind, "--port", str(port)], port)
            os.sched_setaffinity(proc.pid, {0})
            try:
                url = f"http://127.0.0.1:{port}/ping"
                wait_ready(port)
                load(url, seconds=1, concurrency=a.concurrency)  # warm up
                cpu0 = cpu_seconds(proc.pid)
                result = load(url, seconds=a.seconds, concurrency=a.concurrency)
                result["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / result["requests"] * 1e6
                result["rss"] = rss_mb(proc.pid)
                rounds[kind].append(result)
            finally:
                proc.terminate()
                proc.wait(30)
            time.sleep(0.3)
    results = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in rounds.items()}
    print(
        f"kernel benchmark: GET /ping, {a.concurrency} connections, {a.seconds:.0f} s x "
        f"{a.rounds} interleaved rounds each (median), load from a separate process "
        f"({results['kernel']['tool']})"
    )
    for kind, label in SERVERS.items():
        r = results[kind]
        print(row(label, r, f"server CPU {r['cpu_us']:.1f} us/request, RSS {r['rss']:.0f} MB"))
    bare = results["bare"]
    for kind in ("kernel", "lean"):
        r = results[kind]
        print(
            f"{kind}/bare: throughput {r['rps'] / bare['rps']:.1%}"
            + (" (target >= 75%)" if kind == "kernel" else "")
            + f", by server CPU per request {bare['cpu_us'] / r['cpu_us']:.1%}"
            f" (+{r['cpu_us'] - bare['cpu_us']:.1f} us a request)"
        )
    per_line = results["kernel"]["cpu_us"] - results["lean"]["cpu_us"]
    print(
        f"accesslog + metrics + compression cost {per_line:.1f} us of server CPU a request "
        f"({per_line / bare['cpu_us']:.1%} of a bare request)"
    )
    if a.me:
        import auth as auth_bench  # bench/auth.py

        print()
        asyncio.run(
            auth_bench.bench(
                argparse.Namespace(
                    seconds=a.seconds,
                    concurrency=a.concurrency,
                    rounds=a.rounds,
                    redis_url=a.redis_url,
                    postgres=a.postgres,
                    log_level="INFO",
                    only_stall=False,
                    skip_stall=True,
                )
            )
        )
    print(
        json.dumps(
            {
                k: {"rps": round(r["rps"]), "cpu_us": round(r["cpu_us"], 1)}
                for k, r in results.items()
            }
        )
    )


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
