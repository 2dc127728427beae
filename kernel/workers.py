"""``llmmultichat serve --workers N``: N server processes on one port.

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
from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornWebWorker
from gunicorn.app.base import BaseApplication

from .app import Kernel
from .config import LoadedConfig
from .metrics import cleanup_worker_metrics, prepare_worker_metrics, worker_exited
from .server import Build, GatedRunner

# A worker that has not reported for this long is killed and replaced; generous because
# a worker reports only once its kernel is up (plugins may load models first).
WORKER_TIMEOUT_SECONDS = 120


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WorkerArbiter(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        config: LoadedConfig,
        workers: int,
        build: Build,
    ) -> None:
        self.llmmc_config = config
        self.workers = workers
        self.build = build
        super().__init__()

    def load_config(self) -> None:
        kernel = self.llmmc_config.kernel
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

    kernel: Kernel | None = None

    async def _run(self) -> None:
        config: LoadedConfig = self.app.llmmc_config
        kernel_config = config.kernel
        runner = GatedRunner(
            kernel_config,
            shutdown_timeout=float(kernel_config["shutdown_timeout_seconds"]),
        )
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

    async def _listen(self, runner: GatedRunner) -> None:
        ssl = self._create_ssl_context(self.cfg) if self.cfg.is_ssl else None
        for sock in self.sockets:
            await web.SockSite(runner, sock, ssl_context=ssl).start()

    async def _serve(self, runner: GatedRunner) -> None:
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
        delay = float(kernel.kernel_config["drain_delay_seconds"])
        kernel.begin_draining(delay)
        self.loop.call_later(delay, self._stop)

    def _stop(self) -> None:
        self.alive = False
        self._notify_waiter_done()  # the serve loop ends now, not at its next tick


def run_workers(config: LoadedConfig, workers: int, build: Build) -> int:
    """Run the arbiter until it is stopped; its exit status. Prometheus metrics switch to
    multiprocess mode first, so that every worker's scrape sums them all."""
    metrics_dir = prepare_worker_metrics(workers)
    try:
        WorkerArbiter(config, workers, build).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        cleanup_worker_metrics(metrics_dir)
    return 0


def _child_exit(arbiter: Any, worker: Any) -> None:
    worker_exited(worker.pid)
