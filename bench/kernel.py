"""Kernel overhead: the kernel serving a plugin's trivial JSON route, beside a bare
aiohttp app with the same handler, measured in the same run by a load generator in a
separate process. Target: the kernel keeps at least 80% of bare aiohttp's throughput.

    .venv/bin/python bench/kernel.py [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_seconds, free_port, load, row, rss_mb, start

PAYLOAD = {"hello": "world", "n": 1}


def serve_bare(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.json_response(PAYLOAD)

    app = web.Application()
    app.router.add_get("/bench/hello", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_kernel(port: int) -> None:
    from aiohttp import web

    from kernel.app import build_kernel
    from kernel.config import from_dict
    from sdk import Plugin, Request, Route, hookimpl

    class BenchPlugin(Plugin):
        name = "bench"

        @hookimpl
        def register_routes(self) -> list[Route]:
            async def hello(req: Request) -> dict[str, Any]:
                return PAYLOAD

            return [Route("GET", "/bench/hello", hello, auth="public")]

    config = from_dict(
        {
            "kernel": {"data_dir": tempfile.mkdtemp(prefix="llmmc-bench-")},
            "plugins": {"enabled": ["bench"]},
        }
    )

    async def factory() -> web.Application:
        _, app = await build_kernel(config, extra_plugins={"bench": BenchPlugin})
        return app

    web.run_app(factory(), host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", choices=["bare", "kernel"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.serve:
        (serve_bare if a.serve == "bare" else serve_kernel)(a.port)
        return
    # Interleave the two servers over several rounds and keep each one's median round, so
    # a burst of other work on the machine does not favour either side.
    rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "kernel": []}
    for _ in range(a.rounds):
        for kind in ("bare", "kernel"):
            port = free_port()
            proc = start([__file__, "--serve", kind, "--port", str(port)], port)
            try:
                url = f"http://127.0.0.1:{port}/bench/hello"
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
        f"kernel benchmark: GET /bench/hello, {a.concurrency} connections, {a.seconds:.0f} s x {a.rounds} interleaved rounds each (median), load from a separate process ({results['kernel']['tool']})"
    )
    for kind, label in (
        ("bare", "bare aiohttp (same handler)"),
        ("kernel", "LlmMultiChat kernel + plugin route"),
    ):
        r = results[kind]
        print(row(label, r, f"server CPU {r['cpu_us']:.1f} us/request, RSS {r['rss']:.0f} MB"))
    ratio = results["kernel"]["rps"] / results["bare"]["rps"]
    cpu_ratio = results["bare"]["cpu_us"] / results["kernel"]["cpu_us"]
    print(f"kernel/bare throughput ratio: {ratio:.1%} (target >= 80%)")
    print(
        f"kernel/bare by server CPU per request: {cpu_ratio:.1%} "
        f"(+{results['kernel']['cpu_us'] - results['bare']['cpu_us']:.1f} us of kernel work per request)"
    )
    print(
        f"added latency at p50: {results['kernel']['p50_ms'] - results['bare']['p50_ms']:+.2f} ms"
    )


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
