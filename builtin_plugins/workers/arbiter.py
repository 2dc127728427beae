"""``llmmultichat serve --workers N``: N server processes on one port. Found by the
kernel's CLI through the ``llmmultichat.cli`` entry point ``workers`` (process
management is not the kernel's).

The processes are run by gunicorn's arbiter with a worker class built on aiohttp's own
(``aiohttp.GunicornWebWorker``), the combination aiohttp documents for deployment:
the arbiter binds the port once and forks the workers, which accept from the one shared
socket; it replaces a worker that dies (even killed -9), restarts stuck ones (no
heartbeat for ``timeout``), and on SIGTERM stops them gracefully (SIGHUP reloads them one
by one). Each worker builds its own kernel after the fork, so no connection, file or
thread crosses a fork. Why not a supervisor of our own: gunicorn's arbiter is the
well-kept one for exactly this job, and SO_REUSEPORT alone would leave crashes
unattended.

What :class:`KernelWorker` adds to aiohttp's worker:

- Start: the workers the arbiter starts with accept at once and answer through the
  startup gate (``kernel/server.py``: ``/readyz`` 503 "starting") while their plugins
  start, as a single process does. A worker started later (replacing a dead one, or a
  SIGHUP reload) starts its plugins first and only then accepts: its siblings are
  serving, and connections it does not accept go to them instead of getting a 503.
  A worker whose required plugin fails exits before it counts as booted, so the arbiter
  stops with an error instead of starting it again and again.
- SIGTERM (the arbiter passes it on to every worker): readiness off at once, requests
  still served for ``drain_delay_seconds``, then the graceful shutdown; the arbiter
  waits that long plus ``shutdown_timeout_seconds`` before it kills a worker.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornWebWorker
from gunicorn.app.base import BaseApplication

# What the kernel's CLI hands over: the [kernel] settings, a coroutine function that
# builds the kernel and its app, and a factory of its gated runner (kernel/server.py),
# whose start(build) returns the kernel (draining, begin_draining).
Build = Callable[[], Awaitable[Any]]
MakeRunner = Callable[[], Any]
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A worker that has not reported for this long is killed and replaced; generous because
# a worker reports only once its kernel is up (plugins may load models first).
WORKER_TIMEOUT_SECONDS = 120


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WorkerArbiter(BaseApplication):  # type: ignore[misc]
    def __init__(
        self, kernel_config: dict[str, Any], workers: int, build: Build, make_runner: MakeRunner
    ) -> None:
        self.kernel_config = kernel_config
        self.workers = workers
        self.build = build
        self.make_runner = make_runner
        super().__init__()

    def load_config(self) -> None:
        kernel = self.kernel_config
        # after SIGTERM a worker serves drain_delay_seconds, then lets requests finish
        stopping = float(kernel["drain_delay_seconds"]) + float(kernel["shutdown_timeout_seconds"])
        settings: dict[str, Any] = {
            "bind": [bind_address(str(kernel["host"]), int(kernel["port"]))],
            "workers": self.workers,
            "worker_class": KernelWorker,
            "graceful_timeout": max(1, math.ceil(stopping) + 1),
            "timeout": WORKER_TIMEOUT_SECONDS,
            "accesslog": None,  # the kernel writes its own access log
            "errorlog": "-",
            "loglevel": str(kernel["log_level"]).lower(),
            "proc_name": "llmmultichat",
            # a dead worker's in-flight requests and open sockets leave /metrics
            "child_exit": _child_exit,
        }
        if "control_socket_disable" in self.cfg.settings:
            # one fixed socket path per user: several servers on a machine would collide
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Build:
        # Called in each worker after the fork: the kernel is built there.
        logging.getLogger("gunicorn.access").disabled = True
        return self.build


class KernelWorker(GunicornWebWorker):
    """aiohttp's gunicorn worker, serving through a :class:`GatedRunner` (see above)."""

    kernel: Any = None

    async def _run(self) -> None:
        runner = self.app.make_runner()
        await runner.setup()
        try:
            first_generation = self.age <= self.cfg.workers
            if first_generation:
                await self._listen(runner)
            self.kernel = await runner.start(self.wsgi)
            if not first_generation:
                await self._listen(runner)
            # only now: a worker that fails before this makes the arbiter stop
            self.booted = True
            await self._serve(runner)
        finally:
            await runner.cleanup()

    async def _listen(self, runner: Any) -> None:
        ssl = self._create_ssl_context(self.cfg) if self.cfg.is_ssl else None
        for sock in self.sockets:
            await web.SockSite(runner, sock, ssl_context=ssl).start()

    async def _serve(self, runner: Any) -> None:
        """aiohttp's worker loop: report to the arbiter every second until told to stop."""
        server = runner.server
        assert server is not None
        while self.alive:
            self.notify()
            if self.max_requests and server.requests_count > self.max_requests:
                self.alive = False
                self.log.info("Max requests, shutting down: %s", self)
            elif self.ppid != os.getppid():
                self.alive = False
                self.log.info("Parent changed, shutting down: %s", self)
            else:
                await self._wait_next_notify()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: drain as a single process does (``kernel/server.py``)."""
        kernel = self.kernel
        if kernel is None or kernel.draining:
            self._stop()
            return
        delay = float(self.app.kernel_config["drain_delay_seconds"])
        kernel.begin_draining(delay)
        self.loop.call_later(delay, self._stop)

    def _stop(self) -> None:
        self.alive = False
        self._notify_waiter_done()  # the serve loop ends now, not at its next tick


def run_workers(
    kernel_config: dict[str, Any], workers: int, build: Build, make_runner: MakeRunner
) -> int:
    """Run the arbiter until it is stopped; its exit status. Prometheus metrics switch to
    multiprocess mode first (``$PROMETHEUS_MULTIPROC_DIR``), so that every worker's
    scrape sums them all."""
    metrics_dir = _metrics_directory()
    try:
        WorkerArbiter(kernel_config, workers, build, make_runner).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _metrics_directory() -> Path | None:
    """``$PROMETHEUS_MULTIPROC_DIR`` when the deployer set it (emptied of an earlier
    run's files), else a fresh temporary one, returned to be removed at exit. Workers
    inherit it; the metrics plugin reads it when it starts in each."""
    given = os.environ.get(MULTIPROCESS_ENV, "")
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="llmmc-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(made)
    if "prometheus_client" in sys.modules:
        # metrics pick their value store when built, from a choice read at import: a
        # process that imported prometheus-client already (plugin discovery) is told again
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return made


def _child_exit(arbiter: Any, worker: Any) -> None:
    """A dead worker's live gauges (in-flight, open sockets) stop counting; its counters
    stay: what it served was served."""
    if os.environ.get(MULTIPROCESS_ENV):
        try:
            from prometheus_client import multiprocess
        except ImportError:
            return
        multiprocess.mark_process_dead(worker.pid)
