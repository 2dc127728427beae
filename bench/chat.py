"""Chat benchmark: the platform's own cost per chat turn, measured against a zero-latency
fake OpenAI upstream, and the embedded model's speed.

    .venv/bin/python bench/chat.py                 # everything (the model part if installed)
    .venv/bin/python bench/chat.py --turns 500 --sockets 1000 --skip-model

Three processes: the fake upstream, the server (the real kernel with the chat plugin,
DuckDB store, test identities), and this client. For each measure the same requests go
once straight to the fake and once through the server; the platform's overhead is the
difference of the medians (p50) and of the 99th percentiles (p99).

- REST: ``POST /api/v1/chat`` turn latency (sequential), and turns/s at a concurrency.
- SSE: time to first token through ``POST /api/v1/chat/stream`` minus the fake's own.
- WebSocket: N concurrent sockets each sending one chat message; round trip from send to
  ``complete``, and completed turns/s.
- Embedded model: tokens/s of SmolLM2-135M through llama-cpp-python (--skip-model to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPLY = "The quick brown fox jumps over the lazy dog and keeps running far away."


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def ms(v: float) -> str:
    return f"{v * 1000:7.2f} ms"


# ---- the processes ---------------------------------------------------------------------
def run_fake(port_q: Any, stop_ev: Any) -> None:
    from tests.fakes.openai_server import FakeOpenAI

    async def main() -> None:
        async with FakeOpenAI(default_reply=REPLY) as fake:
            port_q.put(fake.url)
            await asyncio.to_thread(stop_ev.wait)

    asyncio.run(main())


def run_server(fake_url: str, port_q: Any, stop_ev: Any, cpu_conn: Any) -> None:
    import logging
    import threading

    def answer_cpu() -> None:  # the client asks for this process's CPU seconds
        while True:
            try:
                cpu_conn.recv()
            except EOFError:
                return
            cpu_conn.send(time.process_time())

    threading.Thread(target=answer_cpu, daemon=True).start()

    logging.disable(logging.WARNING)
    from sdk.testing import start_kernel

    config = {
        "kernel": {"log_level": "WARNING"},
        "plugins": {
            "enabled": ["chat"],
            "chat": {
                "default_provider": "fake",
                "memory": False,
                "providers": {"fake": {"type": "openai", "base_url": fake_url, "model": "m"}},
                "characters": {
                    "lumina": {"name": "Lumina", "provider": "fake", "persona": "You are Lumina."}
                },
                "websocket": {"max_in_flight": 64},
            },
        },
    }

    async def main() -> None:
        client = await start_kernel(config, data_dir=Path(tempfile.mkdtemp(prefix="llmmc-bench-")))
        port_q.put(client.base_url)
        await asyncio.to_thread(stop_ev.wait)
        await client.close()

    asyncio.run(main())


# ---- measurements ----------------------------------------------------------------------
HEADERS = {"Authorization": "Bearer test:bench"}


async def direct_turn(http: aiohttp.ClientSession, fake_url: str) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    t = time.perf_counter()
    async with http.post(fake_url + "/chat/completions", json=body) as r:
        await r.read()
    return time.perf_counter() - t


async def platform_turn(
    http: aiohttp.ClientSession, base: str, session_id: str | None
) -> tuple[float, str]:
    body: dict[str, Any] = {"user_input": "hello"}
    if session_id:
        body["session_id"] = session_id
    t = time.perf_counter()
    async with http.post(base + "/api/v1/chat", json=body, headers=HEADERS) as r:
        data = await r.json()
        assert r.status == 200, data
    return time.perf_counter() - t, data["session_id"]


async def direct_ttft(http: aiohttp.ClientSession, fake_url: str) -> float:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    t = time.perf_counter()
    first = None
    async with http.post(fake_url + "/chat/completions", json=body) as r:
        async for line in r.content:
            if first is None and b'"content": "' in line and b'"content": ""' not in line:
                first = time.perf_counter() - t
    assert first is not None
    return first


async def platform_ttft(http: aiohttp.ClientSession, base: str, session_id: str) -> float:
    t = time.perf_counter()
    first = None
    async with http.post(
        base + "/api/v1/chat/stream",
        json={"user_input": "hello", "session_id": session_id},
        headers=HEADERS,
    ) as r:
        async for line in r.content:
            if first is None and line.startswith(b"event: chunk"):
                first = time.perf_counter() - t
    assert first is not None
    return first


async def throughput(http: aiohttp.ClientSession, base: str, turns: int, concurrency: int) -> float:
    sessions: list[str | None] = [None] * concurrency
    done = 0

    async def worker(i: int) -> None:
        nonlocal done
        while done < turns:
            done += 1
            _, sessions[i] = await platform_turn(http, base, sessions[i])

    t = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - t)


async def websockets(base: str, sockets: int) -> tuple[list[float], float, int]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        ws_url = "ws" + base[len("http") :] + "/ws/chat"
        conns = []
        for i in range(0, sockets, 100):
            conns += await asyncio.gather(
                *(
                    http.ws_connect(ws_url, headers=HEADERS, heartbeat=None)
                    for _ in range(min(100, sockets - i))
                )
            )
        rtts: list[float] = []
        failures = 0

        async def one(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal failures
            t = time.perf_counter()
            await ws.send_str(json.dumps({"type": "chat", "message": "hello", "request_id": "r"}))
            while True:
                frame = json.loads((await ws.receive()).data)
                if frame["type"] in ("complete", "error"):
                    break
            if frame["type"] == "error":
                failures += 1
            rtts.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(ws) for ws in conns))
        rate = len(conns) / (time.perf_counter() - t0)
        # then a protocol ping/pong on every socket at once
        pings: list[float] = []

        async def ping(ws: aiohttp.ClientWebSocketResponse) -> None:
            t = time.perf_counter()
            await ws.send_str('{"type": "ping"}')
            assert json.loads((await ws.receive()).data)["type"] == "pong"
            pings.append(time.perf_counter() - t)

        await asyncio.gather(*(ping(ws) for ws in conns))
        await asyncio.gather(*(ws.close() for ws in conns))
        return rtts, rate, failures, pings


def model_speed(tokens: int) -> str:
    try:
        from builtin_plugins.chat.providers.llama_cpp import LlamaCppProvider
    except Exception as exc:  # pragma: no cover
        return f"unavailable ({exc})"
    provider = LlamaCppProvider("local", {"max_tokens": tokens, "temperature": 0.0})
    reason = provider.unavailable_reason()
    if reason:
        return f"unavailable: {reason}"

    async def run() -> str:
        t = time.perf_counter()
        await provider._model()
        load = time.perf_counter() - t
        msgs = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
        t = time.perf_counter()
        async for _ev in provider.stream(msgs, max_tokens=4, temperature=0.0):
            pass
        warm = time.perf_counter() - t
        results = []
        for _ in range(3):
            t = time.perf_counter()
            first = None
            usage = None
            async for ev in provider.stream(msgs, max_tokens=tokens, temperature=0.0):
                if ev.type == "delta" and first is None:
                    first = time.perf_counter() - t
                if ev.type == "usage":
                    usage = ev.usage
            total = time.perf_counter() - t
            assert usage is not None
            gen = total - (first or 0)
            results.append(
                (
                    usage.completion_tokens,
                    first or 0,
                    total,
                    usage.completion_tokens / max(gen, 1e-9),
                )
            )
        mid = sorted(results, key=lambda r: r[3])[1]
        return (
            f"load {load:.2f} s, first generation {warm:.2f} s (warm-up); then {mid[0]} tokens, "
            f"first token {mid[1] * 1000:.0f} ms, {mid[3]:.1f} tokens/s "
            f"(median of 3, {os.cpu_count()} CPUs)"
        )

    return asyncio.run(run())


def server_cpu(conn: Any) -> float:
    conn.send("cpu")
    return float(conn.recv())


async def client_main(fake_url: str, base: str, args: argparse.Namespace, cpu: Any) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        # warm up both paths
        sid = None
        for _ in range(50):
            await direct_turn(http, fake_url)
            _, sid = await platform_turn(http, base, sid)
        assert sid is not None
        direct = [await direct_turn(http, fake_url) for _ in range(args.turns)]
        platform = []
        cpu0 = server_cpu(cpu)
        for _ in range(args.turns):
            dt, sid = await platform_turn(http, base, sid)
            platform.append(dt)
        cpu_per_turn = (server_cpu(cpu) - cpu0) / args.turns
        d_ttft = [await direct_ttft(http, fake_url) for _ in range(args.turns)]
        p_ttft = [await platform_ttft(http, base, sid) for _ in range(args.turns)]
        rate = await throughput(http, base, args.turns, args.concurrency)

    print(f"\nREST turn (sequential, {args.turns} turns, zero-latency upstream)")
    print(f"  upstream alone     p50 {ms(statistics.median(direct))}   p99 {ms(pct(direct, 99))}")
    print(
        f"  through platform   p50 {ms(statistics.median(platform))}   p99 {ms(pct(platform, 99))}"
    )
    print(
        f"  platform overhead  p50 {ms(statistics.median(platform) - statistics.median(direct))}"
        f"   p99 {ms(pct(platform, 99) - pct(direct, 99))}"
    )
    print(f"  server CPU per turn (all threads, incl. its HTTP client): {ms(cpu_per_turn)}")
    print(f"  throughput at concurrency {args.concurrency}: {rate:8.1f} turns/s")
    print(f"\nSSE time to first token ({args.turns} turns)")
    print(f"  upstream alone     p50 {ms(statistics.median(d_ttft))}   p99 {ms(pct(d_ttft, 99))}")
    print(f"  through platform   p50 {ms(statistics.median(p_ttft))}   p99 {ms(pct(p_ttft, 99))}")
    print(f"  added by platform  p50 {ms(statistics.median(p_ttft) - statistics.median(d_ttft))}")

    if args.sockets:
        rtts, ws_rate, failures, pings = await websockets(base, args.sockets)
        print(f"\nWebSocket: {args.sockets} concurrent sockets, one chat turn each")
        print(
            f"  round trip (send → complete) p50 {ms(statistics.median(rtts))}   p99 {ms(pct(rtts, 99))}"
        )
        print(f"  {ws_rate:8.1f} turns/s, {failures} errors")
        print(
            f"  ping/pong on all {args.sockets} at once: p50 {ms(statistics.median(pings))}"
            f"   p99 {ms(pct(pings, 99))}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sockets", type=int, default=1000)
    ap.add_argument("--model-tokens", type=int, default=64)
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    q: Any = ctx.Queue()
    fake = ctx.Process(target=run_fake, args=(q, stop), daemon=True)
    fake.start()
    fake_url = q.get(timeout=30)
    cpu_parent, cpu_child = ctx.Pipe()
    server = ctx.Process(target=run_server, args=(fake_url, q, stop, cpu_child), daemon=True)
    server.start()
    base = q.get(timeout=60)
    print(
        f"fake upstream {fake_url}; server {base}; CPUs: {os.cpu_count()}; Python {sys.version.split()[0]}"
    )
    try:
        asyncio.run(client_main(fake_url, base, args, cpu_parent))
    finally:
        stop.set()
        server.join(10)
        fake.join(10)
    if not args.skip_model:
        print(
            f"\nEmbedded model (SmolLM2-135M-Instruct, llama.cpp): {model_speed(args.model_tokens)}"
        )


if __name__ == "__main__":
    main()
