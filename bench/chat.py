"""Chat benchmark: the platform's own cost per chat turn, measured against a zero-latency
fake OpenAI upstream, and the embedded model's speed.

    .venv/bin/python bench/chat.py                 # everything (the model part if installed)
    .venv/bin/python bench/chat.py --turns 500 --sockets 1000 --skip-model
    .venv/bin/python bench/chat.py --compare-only --profile /tmp/turn.txt

Four processes: the fake upstream, two servers (the real kernel with a DuckDB store each)
and this client. Server "chat alone" runs only the chat plugin with test identities;
server "all plugins" runs every default plugin (auth with a registered user's JWT,
ratelimit with limits raised above the load, chat, memory with the local embedder,
weather, translate), as a deployment does.

- Turn cost with every default plugin on against chat alone: sequential REST turns in
  interleaved rounds (so a drifting machine load weighs on both alike), p50/p99, server
  CPU per turn (every thread, background work included) and the ratio of the medians;
  once with the same message every turn and once with a new message every turn (a new
  text has to be embedded before memory can be searched).
- REST: ``POST /api/v1/chat`` turn latency (sequential), and turns/s at a concurrency.
- SSE: time to first token through ``POST /api/v1/chat/stream`` minus the fake's own.
- WebSocket: N concurrent sockets each sending one chat message; round trip from send to
  ``complete``, and completed turns/s.
- Embedded model: tokens/s of SmolLM2-135M through llama-cpp-python (--skip-model to skip).

For each measure against chat alone, the same requests go once straight to the fake and
once through the server; the platform's overhead is the difference of the medians (p50)
and of the 99th percentiles (p99). ``--profile FILE`` samples the
all-plugins server with py-spy during the comparison (``--profile-alone FILE`` the
chat-alone one) and prints where its busy samples went; the raw stacks stay in FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
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


def run_server(
    fake_url: str,
    port_q: Any,
    stop_ev: Any,
    all_plugins: bool = False,
    stats: str = "",
    memory: dict[str, Any] | None = None,
) -> None:
    """``stats``: a file where the server writes, every few seconds, what it holds in
    Python objects and in DuckDB's buffers (to tell the parts of its RSS apart)."""
    import logging

    logging.disable(logging.WARNING)
    from kernel.testing import start_kernel

    chat: dict[str, Any] = {
        "default_provider": "fake",
        "memory": all_plugins,
        "providers": {"fake": {"type": "openai", "base_url": fake_url, "model": "m"}},
        "characters": {
            "lumina": {"name": "Lumina", "provider": "fake", "persona": "You are Lumina."}
        },
        "websocket": {"max_in_flight": 64},
    }
    if all_plugins:
        high = "1000000/minute"
        config: dict[str, Any] = {
            "kernel": {"log_level": "WARNING"},
            "plugins": {
                "enabled": ["auth", "ratelimit", "chat", "memory", "weather", "translate"],
                "auth": {"bcrypt_rounds": 4},
                "ratelimit": {
                    "default": high,
                    "routes": {
                        "POST /api/v1/auth/register": high,
                        "POST /api/v1/auth/login": high,
                        "POST /api/v1/chat": high,
                        "POST /api/v1/chat/stream": high,
                    },
                    "quotas": {"tokens_per_day": {"user": 0, "admin": 0}},
                },
                "chat": chat,
                "memory": {"embedder": "local", **(memory or {})},
            },
        }
    else:
        config = {
            "kernel": {"log_level": "WARNING"},
            "plugins": {"enabled": ["chat"], "chat": chat},
        }

    async def main() -> None:
        client = await start_kernel(
            config,
            data_dir=Path(tempfile.mkdtemp(prefix="llmmc-bench-")),
            test_auth=not all_plugins,
        )
        port_q.put(client.base_url)
        task = asyncio.get_running_loop().create_task(write_stats(client.kernel, stats))
        await asyncio.to_thread(stop_ev.wait)
        task.cancel()
        await client.close()

    asyncio.run(main())


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_bytes() -> dict[str, int]:
    """What the C allocator (glibc, every arena) has handed out and holds free: a growth
    in use is live memory somewhere; a growth in free is fragmentation."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"malloc_in_use": info.uordblks + info.hblkhd, "malloc_free": info.fordblks}


def memory_plugin_bytes(kernel: Any) -> dict[str, int]:
    """The memory plugin's in-process stores: the users' index entries and the
    embedder's cache of recent texts (vectors), and the row cache (rows and links)."""
    record = kernel.records.get("memory")
    plugin = getattr(record, "instance", None)
    if plugin is None or plugin.index is None:
        return {}
    cache = getattr(plugin.embedder, "_cache", {})
    return {
        "index_bytes": int(plugin.index.nbytes()),
        "embed_cache_bytes": sum(int(v.nbytes) + len(k) for k, v in list(cache.items())),
        "row_cache_bytes": int(plugin.store.rows.nbytes()) if plugin.store is not None else 0,
    }


def object_counts() -> Counter[str]:
    """Objects the garbage collector tracks (containers, class instances), by type."""
    return Counter(type(o).__qualname__ for o in gc.get_objects())


async def write_stats(kernel: Any, path: str) -> None:
    # LLMMC_TRACEMALLOC=1: also trace Python allocations (large ones too, which the
    # block count misses) and write the lines that grew most since the second minute
    # (slow: on 2 cores the server stops keeping up). LLMMC_OBJECT_COUNTS=1: every minute
    # from the third, the object types whose count grew most since then (cheap: one pass).
    traced = os.environ.get("LLMMC_TRACEMALLOC") == "1"
    counted = os.environ.get("LLMMC_OBJECT_COUNTS") == "1"
    baseline: Any = None
    counts_then: Counter[str] | None = None
    started = last = last_count = time.monotonic()
    if traced and path:
        import tracemalloc

        tracemalloc.start(3)
    while path:
        if traced and time.monotonic() - started > 120 and time.monotonic() - last > 55:
            import tracemalloc

            last = time.monotonic()
            snap = tracemalloc.take_snapshot()
            if baseline is None:
                baseline = snap
            else:
                top = snap.compare_to(baseline, "traceback")[:15]
                lines = []
                for stat in top:
                    lines.append(f"{stat.size_diff / 1048576:+8.2f} MB {stat.count_diff:+8d}")
                    lines += ["      " + line for line in stat.traceback.format()[-6:]]
                await asyncio.to_thread(Path(path + ".growth").write_text, "\n".join(lines))
        if counted and time.monotonic() - started > 180 and time.monotonic() - last_count > 55:
            last_count = time.monotonic()
            counts = object_counts()
            if counts_then is None:
                counts_then = counts
            else:
                grown = (counts - counts_then).most_common(25)
                text = "\n".join(f"{n:+9d}  {name}" for name, n in grown)
                await asyncio.to_thread(Path(path + ".objects").write_text, text)
        duck = 0
        if kernel.database.engine == "duckdb":
            duck = await kernel.database.fetchval(
                "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"
            )
        stats = {
            "python_blocks": sys.getallocatedblocks(),
            "duckdb_bytes": int(duck or 0),
            **malloc_bytes(),
            **memory_plugin_bytes(kernel),
        }
        await asyncio.to_thread(Path(path).write_text, json.dumps(stats))
        await asyncio.sleep(5)


# ---- measurements ----------------------------------------------------------------------
HEADERS = {"Authorization": "Bearer test:bench"}


async def direct_turn(http: aiohttp.ClientSession, fake_url: str) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    t = time.perf_counter()
    async with http.post(fake_url + "/chat/completions", json=body) as r:
        await r.read()
    return time.perf_counter() - t


async def platform_turn(
    http: aiohttp.ClientSession,
    base: str,
    session_id: str | None,
    text: str = "hello",
    headers: dict[str, str] = HEADERS,
) -> tuple[float, str]:
    body: dict[str, Any] = {"user_input": text}
    if session_id:
        body["session_id"] = session_id
    t = time.perf_counter()
    async with http.post(base + "/api/v1/chat", json=body, headers=headers) as r:
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


# What a user of the all-plugins server says, one after another: facts, questions, small
# talk. With --vary each gets a number so no two turns carry the same text.
SAYINGS = [
    "My name is Ada and I live in Lyon.",
    "I work as a nurse at the city hospital.",
    "What should I cook tonight with leeks and potatoes?",
    "I like jazz, especially Bill Evans.",
    "Can you remind me what we said about my trip to Porto?",
    "My sister Marie has a dog called Pixel.",
    "I am learning Japanese, slowly.",
    "hello",
    "What's a good book for a long train ride?",
    "I prefer tea to coffee in the afternoon.",
    "thanks, that helps",
    "My favourite colour is green.",
]


async def register(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    body = {"username": "bench", "email": "bench@example.org", "password": "correct horse 42!"}
    async with http.post(base + "/api/v1/auth/register", json=body) as r:
        data = await r.json()
        assert r.status == 201, data
    return {"Authorization": "Bearer " + data["access_token"]}


def start_profile(pid: int, path: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling every thread of the all-plugins server (the embedding model and
    DuckDB work in threads, which an in-process profiler of the event loop misses)."""
    if not path:
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--output",
            path,
            "--rate",
            "200",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def print_profile(spy: subprocess.Popen[bytes], path: str, server: str = "all-plugins") -> None:
    """Share of the server's busy samples by what they were doing (collapsed stacks)."""
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    stacks: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stack = re.sub(r":\d+\)", ")", stack)  # one entry per function, not per line
        stacks[stack] = stacks.get(stack, 0) + int(count)
    total = sum(stacks.values()) or 1
    groups = {
        "memory: embedding model": "embedders/",
        "memory: SQL (DuckDB calls from memory/store.py)": "memory/store.py",
        "memory: everything": "builtin_plugins/memory",
        "chat: SQL (chat/store.py)": "chat/store.py",
        "chat: everything": "builtin_plugins/chat",
        "auth": "builtin_plugins/auth",
        "ratelimit": "builtin_plugins/ratelimit",
        "event loop: aiohttp, asyncio": "base_events.py",
    }
    print(f"\nProfile of the {server} server (py-spy, {total} busy samples, stacks in {path})")
    for label, needle in groups.items():
        n = sum(c for st, c in stacks.items() if needle in st)
        print(f"  {label:<52} {100 * n / total:5.1f} %")
    funcs: dict[str, int] = {}
    for st, c in stacks.items():
        for frame in set(st.split(";")):
            if "builtin_plugins/memory" in frame:
                funcs[frame] = funcs.get(frame, 0) + c
    print("  memory functions by share of samples (inclusive):")
    for frame, c in sorted(funcs.items(), key=lambda x: -x[1])[:14]:
        print(f"    {100 * c / total:5.1f} %  {frame}")


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def compare(
    http: aiohttp.ClientSession,
    targets: dict[str, tuple[str, dict[str, str], int]],
    turns: int,
    rounds: int,
    vary: bool,
) -> dict[str, tuple[list[float], float]]:
    """Sequential turns on each target in interleaved rounds: latencies and server CPU
    seconds per turn (CPU read from /proc for the whole server process)."""
    from bench.common import cpu_seconds

    lat: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
    sessions: dict[str, str | None] = dict.fromkeys(targets)
    per_round = max(1, turns // rounds)
    n = 0
    for r in range(rounds):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        for name in order:
            base, headers, pid = targets[name]
            c0 = cpu_seconds(pid)
            for i in range(per_round):
                text = SAYINGS[(n + i) % len(SAYINGS)]
                if vary:
                    text = f"{text} ({r}.{i})"
                dt, sessions[name] = await platform_turn(http, base, sessions[name], text, headers)
                lat[name].append(dt)
            cpu[name] += cpu_seconds(pid) - c0
        n += per_round
    return {name: (lat[name], cpu[name] / len(lat[name])) for name in targets}


def print_compare(title: str, results: dict[str, tuple[list[float], float]]) -> None:
    print(f"\n{title}  ({load_average()})")
    for name, (values, cpu) in results.items():
        print(
            f"  {name:<12} p50 {ms(statistics.median(values))}   p99 {ms(pct(values, 99))}"
            f"   server CPU per turn {ms(cpu)}"
        )
    (a, ca), (b, cb) = results["chat alone"], results["all plugins"]
    print(
        f"  all plugins / chat alone: p50 {statistics.median(b) / statistics.median(a):.2f}x"
        f"   p99 {pct(b, 99) / pct(a, 99):.2f}x   CPU {cb / ca:.2f}x"
    )


async def client_main(
    fake_url: str,
    base: str,
    full: str,
    pids: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    from bench.common import cpu_seconds

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        full_headers = await register(http, full)
        targets = {
            "chat alone": (base, HEADERS, pids[0]),
            "all plugins": (full, full_headers, pids[1]),
        }
        # warm up every path (the first memory turn loads the embedding model)
        sid = None
        fsid = None
        for i in range(50):
            await direct_turn(http, fake_url)
            _, sid = await platform_turn(http, base, sid)
            _, fsid = await platform_turn(http, full, fsid, SAYINGS[i % len(SAYINGS)], full_headers)
        spy = start_profile(pids[1], args.profile)
        spy_alone = start_profile(pids[0], args.profile_alone)
        print(
            f"\nTurn cost, every default plugin on against chat alone (sequential REST turns, "
            f"{args.rounds} interleaved rounds, zero-latency upstream)"
        )
        if args.messages in ("both", "same"):
            print_compare(
                f"  same message every turn ({args.turns} turns each)",
                await compare(http, targets, args.turns, args.rounds, vary=False),
            )
        if args.messages in ("both", "new"):
            print_compare(
                f"  a new message every turn ({args.turns} turns each)",
                await compare(http, targets, args.turns, args.rounds, vary=True),
            )
        if spy is not None:
            print_profile(spy, args.profile)
        if spy_alone is not None:
            print_profile(spy_alone, args.profile_alone, "chat-alone")
        if args.compare_only:
            return
        assert sid is not None
        direct = [await direct_turn(http, fake_url) for _ in range(args.turns)]
        platform = []
        cpu0 = cpu_seconds(pids[0])
        for _ in range(args.turns):
            dt, sid = await platform_turn(http, base, sid)
            platform.append(dt)
        cpu_per_turn = (cpu_seconds(pids[0]) - cpu0) / args.turns
        d_ttft = [await direct_ttft(http, fake_url) for _ in range(args.turns)]
        p_ttft = [await platform_ttft(http, base, sid) for _ in range(args.turns)]
        rate = await throughput(http, base, args.turns, args.concurrency)

    print(f"\nREST turn, chat alone (sequential, {args.turns} turns, zero-latency upstream)")
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
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds of the comparison")
    ap.add_argument(
        "--compare-only", action="store_true", help="only the all plugins / chat alone comparison"
    )
    ap.add_argument("--profile", default="", help="py-spy stacks of the all-plugins server")
    ap.add_argument(
        "--messages",
        choices=["both", "same", "new"],
        default="both",
        help="the comparison's runs: the same message every turn, a new one, or both",
    )
    ap.add_argument(
        "--memory-config",
        default="{}",
        help="JSON merged into the all-plugins server's [plugins.memory], e.g. '{\"auto_extract\": false}'",
    )
    ap.add_argument("--profile-alone", default="", help="py-spy stacks of the chat-alone server")
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    q: Any = ctx.Queue()
    fake = ctx.Process(target=run_fake, args=(q, stop), daemon=True)
    fake.start()
    fake_url = q.get(timeout=30)
    server = ctx.Process(target=run_server, args=(fake_url, q, stop), daemon=True)
    server.start()
    base = q.get(timeout=60)
    full_server = ctx.Process(
        target=run_server,
        args=(fake_url, q, stop, True, "", json.loads(args.memory_config)),
        daemon=True,
    )
    full_server.start()
    full = q.get(timeout=120)
    print(
        f"fake upstream {fake_url}; chat alone {base}; all plugins {full}; "
        f"CPUs: {os.cpu_count()}; Python {sys.version.split()[0]}; {load_average()}"
    )
    assert server.pid is not None and full_server.pid is not None
    try:
        asyncio.run(client_main(fake_url, base, full, (server.pid, full_server.pid), args))
    finally:
        stop.set()
        server.join(10)
        full_server.join(30)
        fake.join(10)
    if not args.skip_model and not args.compare_only:
        print(
            f"\nEmbedded model (SmolLM2-135M-Instruct, llama.cpp): {model_speed(args.model_tokens)}"
        )


if __name__ == "__main__":
    main()
