"""Soak benchmark: the server's memory (RSS) under a steady, mixed load.

    .venv/bin/python bench/soak.py                      # 10 minutes at 15 requests/s
    .venv/bin/python bench/soak.py --minutes 3 --rate 20 --every 15

Three processes: a zero-latency fake OpenAI upstream, the server (the real kernel with
every default plugin: auth, ratelimit with limits raised above the load, chat on the fake,
memory with the local embedder, weather, translate; DuckDB in a temporary folder) and
this client, which sends requests at a fixed rate (open loop: a slow server does not slow
the offered load; at most --max-in-flight wait at once, the rest are counted as shed).

The traffic mixes what users do: REST chat turns, SSE streams, WebSocket chats (a socket
opened, authenticated, one turn, closed), memory writes, searches and session views,
``/me``, logins, refreshes, history reads and session deletions. A new user registers
every 5 s until there are --users (40, after about 3 minutes): a steady population whose
sessions, tokens and memories keep changing, which is what "RSS levels off" is about.
Each keeps 3 to 6 sessions (opening new ones up to 6, deleting the oldest) and the last
30 memories it added (deleting the oldest as it adds): the data stays about the same
size, so a rising RSS means a leak or an unbounded cache, not more data (what memory
keeps in process grows with the data it holds, up to its bounds; auth's audit log and
token rows still grow in DuckDB). ``--users 0`` registers a new user every
5 s all along: a growth test (the per-user state of a population that keeps growing
grows with it, up to the caches' bounds), not a level test.

Every --every seconds it prints the server's RSS, requests done, errors, latency, and
what the server holds in Python objects (millions of allocated blocks), in DuckDB's
buffers (MB, ``duckdb_memory()``), in the C allocator (glibc's ``mallinfo2`` over every
arena: memory handed out, and memory freed but kept), in memory's vectors (the users'
index entries and the embedder's cache), in memory's row cache (rows and links read for
replies) and in memory's inbox of turns not yet recorded
(from ``/health``), so a growth can be told apart; at
the end the RSS curve's figures: after warm-up, at the end, the peak, and the growth over
the second half (MB/minute), which is what "levels off" means here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat import SAYINGS, load_average, pct, run_fake, run_server  # noqa: E402
from bench.common import rss_mb  # noqa: E402

OPS = {  # relative weights
    "chat": 30,
    "sse": 12,
    "ws": 8,
    "memory_add": 8,
    "memory_search": 10,
    "memory_session": 3,
    "me": 10,
    "history": 5,
    "login": 3,
    "refresh": 3,
    "delete_session": 3,
}
NEW_USER_EVERY = 5.0  # seconds
MAX_SESSIONS = 6  # sessions a user keeps at most: at this count it continues one
MAX_MEMORIES = 30  # memories a user added and keeps; beyond it the oldest is deleted


class User:
    def __init__(self, n: int, tokens: dict[str, Any]) -> None:
        self.n = n
        self.email = f"soak{n}@example.org"
        self.access = tokens["access_token"]
        self.refresh = tokens["refresh_token"]
        self.sessions: list[str] = []
        self.memories: list[str] = []  # ids of the memories this user added, oldest first
        self.renewing = False  # one login or refresh at a time: a spent refresh token
        # presented twice would (rightly) end the whole login

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


PASSWORD = "correct horse battery 42"


class Soak:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http
        self.users: list[User] = []
        self.registered = 0
        self.latencies: list[float] = []
        self.status: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.done = 0
        self.shed = 0
        self.rng = random.Random(15)

    async def register(self) -> None:
        n = self.registered
        self.registered += 1
        body = {"username": f"soak{n}", "email": f"soak{n}@example.org", "password": PASSWORD}
        async with self.http.post(self.base + "/api/v1/auth/register", json=body) as r:
            data = await r.json()
            if r.status != 201:
                self.errors[f"register {r.status}"] += 1
                return
        self.users.append(User(n, data))

    def pick_user(self) -> User:
        # Newer users are more active, older ones still come back now and then.
        k = len(self.users)
        i = k - 1 - min(k - 1, int(self.rng.expovariate(1 / max(1.0, k / 4))))
        return self.users[i]

    def session_for(self, user: User) -> str | None:
        if not user.sessions or (self.rng.random() < 0.15 and len(user.sessions) < MAX_SESSIONS):
            return None  # a new session
        return self.rng.choice(user.sessions)

    def keep_session(self, user: User, session_id: str) -> None:
        if session_id not in user.sessions:
            user.sessions.append(session_id)

    async def call(
        self, method: str, path: str, user: User | None, expect: int | tuple[int, ...], **kw: Any
    ) -> Any:
        headers = user.headers if user else {}
        expected = expect if isinstance(expect, tuple) else (expect,)
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.read()
            if r.status not in expected:
                self.errors[f"{method} {path.split('/')[3]} {r.status}"] += 1
                return None
            return json.loads(body) if body and r.content_type.endswith("json") else {}

    async def op(self, name: str) -> None:
        user = self.pick_user()
        text = f"{self.rng.choice(SAYINGS)} #{self.done}"
        if name == "chat":
            sid = self.session_for(user)
            body = {"user_input": text, **({"session_id": sid} if sid else {})}
            # 404: the session was deleted by a concurrent delete_session of this user
            data = await self.call("POST", "/api/v1/chat", user, (200, 404), json=body)
            if data and "session_id" in data:
                self.keep_session(user, data["session_id"])
        elif name == "sse":
            sid = self.session_for(user)
            body = {"user_input": text, **({"session_id": sid} if sid else {})}
            async with self.http.post(
                self.base + "/api/v1/chat/stream", json=body, headers=user.headers
            ) as r:
                raw = await r.read()
                if r.status != 200 or b"event: done" not in raw:
                    self.errors[f"sse {r.status}"] += 1
                for line in raw.decode().splitlines():
                    if line.startswith("data:") and '"session_id"' in line:
                        self.keep_session(user, json.loads(line[5:])["session_id"])
                        break
        elif name == "ws":
            ws_url = "ws" + self.base[len("http") :] + "/ws/chat"
            async with self.http.ws_connect(ws_url, heartbeat=None) as ws:
                await ws.send_str(json.dumps({"type": "auth", "token": user.access}))
                sid = self.session_for(user)
                msg = {"type": "chat", "message": text, "request_id": "r"}
                await ws.send_str(json.dumps({**msg, **({"session_id": sid} if sid else {})}))
                while True:
                    frame = await ws.receive(timeout=60)
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        self.errors["ws closed"] += 1
                        break
                    data = json.loads(frame.data)
                    if data["type"] == "complete":
                        self.keep_session(user, data["session_id"])
                        break
                    if data["type"] == "error":
                        self.errors[f"ws {data.get('code')}"] += 1
                        break
        elif name == "memory_add":
            body = {"content": f"The user mentioned: {text}", "tier": "long_term"}
            data = await self.call("POST", "/api/v1/memory", user, 201, json=body)
            if data:
                user.memories.append(data["memory_id"])
            if len(user.memories) > MAX_MEMORIES:  # (a user forgets as much as it adds)
                oldest = user.memories.pop(0)
                # 404: a near-duplicate updated the memory another add had made
                await self.call("DELETE", f"/api/v1/memory/{oldest}", user, (204, 404))
        elif name == "memory_search":
            body = {"query": text, "top_k": 5}
            await self.call("POST", "/api/v1/memory/search", user, 200, json=body)
        elif name == "memory_session" and user.sessions:
            sid = self.rng.choice(user.sessions)
            # 404 until memory has recorded the session's first turn (in the background)
            await self.call("GET", f"/api/v1/memory/sessions/{sid}", user, (200, 404))
        elif name == "history" and user.sessions:
            sid = self.rng.choice(user.sessions)
            await self.call("GET", f"/api/v1/chat/history/{sid}?limit=20", user, 200)
        elif name == "me":
            await self.call("GET", "/api/v1/auth/me", user, 200)
        elif name in ("login", "refresh") and not user.renewing:
            user.renewing = True
            try:
                if name == "login":
                    path, body = "login", {"email": user.email, "password": PASSWORD}
                else:
                    path, body = "refresh", {"refresh_token": user.refresh}
                data = await self.call("POST", f"/api/v1/auth/{path}", None, 200, json=body)
                if data:
                    user.access, user.refresh = data["access_token"], data["refresh_token"]
            finally:
                user.renewing = False
        elif name == "delete_session" and len(user.sessions) >= MAX_SESSIONS // 2:
            sid = user.sessions.pop(0)
            await self.call("DELETE", f"/api/v1/chat/sessions/{sid}", user, 204)

    async def timed(self, name: str, sem: asyncio.Semaphore) -> None:
        t = time.perf_counter()
        try:
            await self.op(name)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[f"{name} {exc.__class__.__name__}"] += 1
        finally:
            sem.release()
        self.latencies.append(time.perf_counter() - t)
        self.status[name] += 1
        self.done += 1


def server_stats(path: str) -> str:
    try:
        stats = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return f"{'?':>9} {'?':>8} {'?':>8} {'?':>8} {'?':>8} {'?':>8}"
    mb = {k: v / 1048576 for k, v in stats.items() if k != "python_blocks"}
    return (
        f"{stats['python_blocks'] / 1e6:9.2f} {mb['duckdb_bytes']:8.1f} "
        f"{mb.get('malloc_in_use', float('nan')):8.1f} {mb.get('malloc_free', float('nan')):8.1f} "
        f"{mb.get('index_bytes', 0) + mb.get('embed_cache_bytes', 0):8.1f} "
        f"{mb.get('row_cache_bytes', 0):8.1f}"
    )


async def turns_waiting(http: aiohttp.ClientSession, base: str) -> str:
    """Chat turns memory has received but not recorded yet (its inbox, from /health)."""
    try:
        async with http.get(base + "/health", timeout=aiohttp.ClientTimeout(total=10)) as r:
            checks = (await r.json())["plugins"]["memory"]["checks"]
        return f"{checks.get('turns_waiting', '?'):>6}"
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
        return f"{'?':>6}"


async def drive(
    base: str, pid: int, stats: str, args: argparse.Namespace
) -> list[tuple[float, float]]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        soak = Soak(base, http)
        for _ in range(10):
            await soak.register()
        names = list(OPS)
        weights = [OPS[n] for n in names]
        sem = asyncio.Semaphore(args.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        curve: list[tuple[float, float]] = []
        start = time.monotonic()
        next_report = start
        next_user = start + NEW_USER_EVERY
        interval = 1.0 / args.rate
        tick = start
        print(
            f"{'min':>6} {'RSS MB':>8} {'requests':>9} {'shed':>5} {'errors':>6} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'py Mblk':>9} {'duck MB':>8} {'heap MB':>8} "
            f"{'free MB':>8} {'vecs MB':>8} {'rows MB':>8} {'inbox':>6}  users  load"
        )
        window_from = 0
        while True:
            now = time.monotonic()
            if now >= next_report:
                rss = rss_mb(pid)
                curve.append(((now - start) / 60, rss))
                window = soak.latencies[window_from:]
                window_from = len(soak.latencies)
                p50 = statistics.median(window) * 1000 if window else float("nan")
                p99 = pct(window, 99) * 1000 if window else float("nan")
                print(
                    f"{(now - start) / 60:6.2f} {rss:8.1f} {soak.done:9d} {soak.shed:5d} "
                    f"{sum(soak.errors.values()):6d} {p50:8.1f} {p99:8.1f} {server_stats(stats)}"
                    f" {await turns_waiting(http, base)}"
                    f"  {len(soak.users):5d}"
                    f"  {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                next_report += args.every
            if now - start >= args.minutes * 60:
                break
            if now >= next_user and (not args.users or len(soak.users) < args.users):
                tasks.add(asyncio.create_task(soak.register()))
                next_user += NEW_USER_EVERY
            if sem.locked():
                soak.shed += 1
            else:
                await sem.acquire()
                name = soak.rng.choices(names, weights)[0]
                task = asyncio.create_task(soak.timed(name, sem))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)
        print(f"\nrequests by kind: {dict(soak.status)}")
        print(f"errors: {dict(soak.errors) or 'none'}")
        return curve


def summarize(curve: list[tuple[float, float]], warmup_minutes: float) -> None:
    after = [(t, r) for t, r in curve if t >= warmup_minutes] or curve
    half = [(t, r) for t, r in after if t >= (after[0][0] + after[-1][0]) / 2]
    slope = 0.0
    if len(half) >= 2:
        ts = [t for t, _ in half]
        rs = [r for _, r in half]
        mt, mr = statistics.fmean(ts), statistics.fmean(rs)
        var = sum((t - mt) ** 2 for t in ts)
        slope = sum((t - mt) * (r - mr) for t, r in half) / var if var else 0.0
    print(
        f"\nRSS: {curve[0][1]:.0f} MB at start, {after[0][1]:.0f} MB after {after[0][0]:.1f} min "
        f"of warm-up, {after[-1][1]:.0f} MB at the end, peak {max(r for _, r in curve):.0f} MB; "
        f"second half of the run: {half[-1][1] - half[0][1]:+.1f} MB, "
        f"slope {slope:+.2f} MB/min ({load_average()})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=15.0, help="requests per second offered")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between RSS lines")
    ap.add_argument("--max-in-flight", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=1.0, help="minutes left out of the figures")
    ap.add_argument(
        "--users",
        type=int,
        default=40,
        help="stop registering new users at this many (a steady population; 0: a new user "
        "every 5 s all along)",
    )
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    q: Any = ctx.Queue()
    fake = ctx.Process(target=run_fake, args=(q, stop), daemon=True)
    fake.start()
    fake_url = q.get(timeout=30)
    stats = tempfile.mktemp(prefix="llmmc-soak-", suffix=".json")
    server = ctx.Process(target=run_server, args=(fake_url, q, stop, True, stats), daemon=True)
    server.start()
    base = q.get(timeout=120)
    assert server.pid is not None
    print(
        f"server {base} (pid {server.pid}); {args.rate:g} requests/s for {args.minutes:g} min; "
        f"CPUs {os.cpu_count()}; {load_average()}"
    )
    try:
        curve = asyncio.run(drive(base, server.pid, stats, args))
    finally:
        stop.set()
        server.join(30)
        fake.join(10)
    summarize(curve, min(args.warmup, args.minutes / 3))
    for suffix, what in ((".growth", "LLMMC_TRACEMALLOC"), (".objects", "LLMMC_OBJECT_COUNTS")):
        if Path(stats + suffix).exists():
            print(f"\n{what}: what grew most, from {stats + suffix}:")
            print(Path(stats + suffix).read_text())


if __name__ == "__main__":
    main()
