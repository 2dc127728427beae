"""Helpers shared by the benchmarks: start a server process, wait for it, measure it
with the load generator in another process, read its memory."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("server did not start")


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, *args], env=env)
    wait_port(port, proc)
    return proc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(
    url: str,
    seconds: float = 5,
    concurrency: int = 32,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: Any = None,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE / "loadgen.py"),
        url,
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
        "--method",
        method,
    ]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}: {v}"]
    if body is not None:
        cmd += ["--json", json.dumps(body)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def row(label: str, r: dict[str, Any], extra: str = "") -> str:
    return (
        f"{label:<34} {r['rps']:>9.0f} req/s   p50 {r['p50_ms']:>6.2f} ms   "
        f"p99 {r['p99_ms']:>6.2f} ms   errors {r['errors']}  {extra}"
    )
