"""Helpers shared by the benchmarks: start a server process, wait for it, measure it
with the load generator in another process, read its memory."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used: CPU per request is steadier than
    requests/s on a machine that is doing other work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


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
    """Measure ``url`` from a separate process: wrk when it is installed (C, so the load
    generator is not the bottleneck), else the Python load generator beside this file."""
    if shutil.which("wrk"):
        return load_wrk(url, seconds, concurrency, headers or {}, method, body)
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
    result["tool"] = "python loadgen"
    return result


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def load_wrk(
    url: str, seconds: float, concurrency: int, headers: dict[str, str], method: str, body: Any
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"wrk.method = {json.dumps(method)}\n")
        if body is not None:
            script.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
        for k, v in headers.items():
            script.write(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n")
    threads = max(1, min(2, concurrency))
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(concurrency),
        "-d",
        f"{seconds:g}s",
        "--latency",
        "-s",
        script.name,
        url,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=seconds + 120
    ).stdout
    Path(script.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "requests": total,
        "errors": errors,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "tool": "wrk",
    }


def row(label: str, r: dict[str, Any], extra: str = "") -> str:
    return (
        f"{label:<34} {r['rps']:>9.0f} req/s   p50 {r['p50_ms']:>6.2f} ms   "
        f"p99 {r['p99_ms']:>6.2f} ms   errors {r['errors']}  {extra}"
    )
