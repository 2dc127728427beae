"""``llmmultichat serve --workers N``: N server processes on one port.

The processes are run by gunicorn's arbiter with aiohttp's own worker class
(``aiohttp.GunicornWebWorker``), the combination aiohttp documents for deployment:
the arbiter binds the port once and forks the workers, which accept from the one shared
socket; it replaces a worker that dies (even killed -9), restarts stuck ones (no
heartbeat for ``timeout``), and on SIGTERM stops them gracefully (SIGHUP reloads them one
by one). Each worker builds its own kernel after the fork, so no connection, file or
thread crosses a fork. Why not a supervisor of our own: gunicorn's arbiter is the
well-kept one for exactly this job, and SO_REUSEPORT alone would leave crashes
unattended.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication

from .config import LoadedConfig
from .metrics import cleanup_worker_metrics, prepare_worker_metrics, worker_exited

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
        make_runner: Callable[[], Awaitable[web.AppRunner]],
    ) -> None:
        self.llmmc_config = config
        self.workers = workers
        self.make_runner = make_runner
        super().__init__()

    def load_config(self) -> None:
        kernel = self.llmmc_config.kernel
        settings: dict[str, Any] = {
            "bind": [bind_address(str(kernel["host"]), int(kernel["port"]))],
            "workers": self.workers,
            "worker_class": "aiohttp.GunicornWebWorker",
            "graceful_timeout": max(1, math.ceil(float(kernel["shutdown_timeout_seconds"]))),
            "timeout": WORKER_TIMEOUT_SECONDS,
            "keepalive": 75,  # aiohttp's default keep-alive
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

    def load(self) -> Callable[[], Awaitable[web.AppRunner]]:
        # Called in each worker after the fork: the kernel is built there.
        logging.getLogger("gunicorn.access").disabled = True
        return self.make_runner


def run_workers(
    config: LoadedConfig, workers: int, make_runner: Callable[[], Awaitable[web.AppRunner]]
) -> int:
    """Run the arbiter until it is stopped; its exit status. Prometheus metrics switch to
    multiprocess mode first, so that every worker's scrape sums them all."""
    metrics_dir = prepare_worker_metrics(workers)
    try:
        WorkerArbiter(config, workers, make_runner).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        cleanup_worker_metrics(metrics_dir)
    return 0


def _child_exit(arbiter: Any, worker: Any) -> None:
    worker_exited(worker.pid)
