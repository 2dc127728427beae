"""Prometheus metrics: the per-request ones, the ones plugins declare through
``sdk.metrics`` (this hub is the kernel's ``sdk.metrics.MetricsBackend``), and the
exposition behind ``GET /metrics``.

Each kernel has its own registry (tests run several kernels in one process). With
``serve --workers N`` (N > 1) the process manager sets ``$PROMETHEUS_MULTIPROC_DIR``
before it starts the workers: prometheus-client's multiprocess mode then keeps every
worker's values in files of one directory, and a scrape of any worker reads them all, so
``/metrics`` describes the whole server whichever worker answers.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from sdk.metrics import DEFAULT_BUCKETS, Aggregate
from sdk.plugin import PluginState

log = logging.getLogger("llmmultichat.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "llmmc_"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Methods outside this set are counted as OTHER: a client must not mint label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _mode(aggregate: Aggregate) -> str:
    # "live" modes forget a worker once it has exited.
    return "liveall" if aggregate == "all" else f"live{aggregate}"


class MetricsHub:
    """Every metric of one kernel, and the exposition of them all."""

    def __init__(self) -> None:
        # ``*_created`` series double the output and no alert or dashboard here uses them
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self._declared: dict[str, tuple[str, tuple[str, ...], Any]] = {}
        self._before_collect: list[tuple[str, Callable[[], None]]] = []

    def declare(
        self, kind: str, name: str, help: str, labels: Sequence[str], **options: Any
    ) -> Any:
        """The metric called ``name``; declaring it again with the same kind and labels
        returns the same one (a plugin initialized twice in one process)."""
        labels = tuple(labels)
        found = self._declared.get(name)
        if found is not None:
            if found[:2] != (kind, labels):
                raise ValueError(
                    f"metric {name} is already declared as a {found[0]} with labels {found[1]}"
                )
            return found[2]
        cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
        if kind == "gauge" and "aggregate" in options:
            options["multiprocess_mode"] = _mode(options.pop("aggregate"))
        metric = cls(name, help, labels, registry=self.registry, **options)
        self._declared[name] = (kind, labels, metric)
        return metric

    def before_collect(self, owner: str, fn: Callable[[], None]) -> None:
        self._before_collect.append((owner, fn))

    def forget(self, owner: str) -> None:
        self._before_collect = [(o, fn) for o, fn in self._before_collect if o != owner]

    def refresh(self) -> None:
        """Run the plugins' ``on_collect`` functions (on the event loop, before rendering)."""
        for owner, fn in self._before_collect:
            try:
                fn()
            except Exception:
                log.exception("metrics collection of %r failed", owner)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (Prometheus text, or
        OpenMetrics) and its content type. In multiprocess mode it reads files: run it in
        a thread."""
        encode, content_type = choose_encoder(accept)
        if self.multiprocess:
            registry = CollectorRegistry()
            registry.register(WorkerFiles(os.environ[MULTIPROCESS_ENV]))
            return encode(registry), content_type
        return encode(self.registry), content_type


class WorkerFiles(multiprocess.MultiProcessCollector):
    """prometheus-client's collector of every worker's files, minus the files a worker has
    created but not sized yet. A worker creates its file (``open``) and only then sizes it
    (``truncate``); prometheus-client fails the whole scrape on a file read in between
    (``struct.error``), which a scrape answered while another worker starts (or replaces a
    dead one) would hit now and then. Such a file holds no value yet."""

    def __init__(self, directory: str) -> None:
        super().__init__(None, path=directory)  # type: ignore[no-untyped-call]
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = []
        for name in glob.glob(os.path.join(self.directory, "*.db")):
            try:
                if os.path.getsize(name) >= _HEADER_BYTES:
                    files.append(name)
            except OSError:  # removed since the glob: a dead worker's live gauges
                continue
        merged: Iterable[Metric] = self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


# A metrics file starts with the 4-byte length of its used part, padded to 8 bytes.
_HEADER_BYTES = 8


REQUESTS = PREFIX + "http_requests"
REQUESTS_HELP = "HTTP requests answered, by route template, method and status"
DURATION = PREFIX + "http_request_duration_seconds"
DURATION_HELP = (
    "Time from a request's arrival to the end of its answer, by route template and method "
    "(WebSocket sessions are left out: they last as long as the client stays)"
)
IN_FLIGHT = PREFIX + "http_requests_in_flight"
IN_FLIGHT_HELP = "Requests being answered now (open SSE streams and WebSockets included)"


class LocalHttpStats:
    """The per-request numbers of one process, in plain ints on the event loop: counting
    a request costs a dict lookup and a bisect, where prometheus-client's locked values
    cost several microseconds. Exported at scrape time as a collector."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.counts: dict[tuple[str, str, int], int] = {}
        # (route, method) -> [count per bucket, the last one +Inf], and the sum
        self.durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self.bounds = DEFAULT_BUCKETS

    def begin(self) -> None:
        self.in_flight += 1

    def end(self, route: str, method: str, status: int, seconds: float | None) -> None:
        self.in_flight -= 1
        key = (route, method, status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        if seconds is not None:
            timed = self.durations.get((route, method))
            if timed is None:
                timed = self.durations[(route, method)] = ([0] * (len(self.bounds) + 1), [0.0])
            timed[0][bisect_left(self.bounds, seconds)] += 1
            timed[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            REQUESTS, REQUESTS_HELP, labels=("route", "method", "status")
        )
        for (route, method, status), n in self.counts.items():
            requests.add_metric((route, method, str(status)), n)
        yield requests
        duration = HistogramMetricFamily(DURATION, DURATION_HELP, labels=("route", "method"))
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for (route, method), (per_bucket, total) in self.durations.items():
            cumulative = list(accumulate(per_bucket))
            duration.add_metric(
                (route, method), list(zip(les, cumulative, strict=True)), sum_value=total[0]
            )
        yield duration
        yield GaugeMetricFamily(IN_FLIGHT, IN_FLIGHT_HELP, value=self.in_flight)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no collect at registration


class SharedHttpStats:
    """The same numbers in prometheus-client's multiprocess values (files shared by the
    workers). The labelled children are looked up once per label set and kept."""

    def __init__(self, hub: MetricsHub) -> None:
        self.requests = hub.declare(
            "counter", REQUESTS, REQUESTS_HELP, ("route", "method", "status")
        )
        self.duration = hub.declare(
            "histogram", DURATION, DURATION_HELP, ("route", "method"), buckets=DEFAULT_BUCKETS
        )
        self.in_flight = hub.declare("gauge", IN_FLIGHT, IN_FLIGHT_HELP, (), aggregate="sum")
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def begin(self) -> None:
        self.in_flight.inc()

    def end(self, route: str, method: str, status: int, seconds: float | None) -> None:
        self.in_flight.dec()
        key = (route, method, status)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.requests.labels(route, method, str(status))
        counter.inc()
        if seconds is not None:
            timed = self._timed.get(key[:2])
            if timed is None:
                timed = self._timed[key[:2]] = self.duration.labels(route, method)
            timed.observe(seconds)


class ServerMetrics:
    """The per-request metrics (``begin``/``end``, on the hot path), plugin states,
    readiness and the version."""

    def __init__(self, hub: MetricsHub, version: str) -> None:
        self.hub = hub
        self.http: LocalHttpStats | SharedHttpStats
        if hub.multiprocess:
            self.http = SharedHttpStats(hub)
        else:
            self.http = LocalHttpStats()
            hub.registry.register(self.http)
        self.plugin_state = hub.declare(
            "gauge",
            PREFIX + "plugin_state",
            "1 for the lifecycle state each plugin is in (summed over worker processes)",
            ("plugin", "state"),
            aggregate="sum",
        )
        self.ready = hub.declare(
            "gauge",
            PREFIX + "ready",
            "1 while the process is ready for traffic (summed over worker processes)",
            (),
            aggregate="sum",
        )
        info = hub.declare(
            "gauge", PREFIX + "build_info", "The running version", ("version",), aggregate="max"
        )
        info.labels(version=version).set(1)

    def begin(self) -> None:
        self.http.begin()

    def end(self, route: str, method: str, status: int, seconds: float | None) -> None:
        self.http.end(route, method if method in METHODS else "OTHER", status, seconds)

    def plugin_states(self, states: Iterable[tuple[str, PluginState]]) -> None:
        for plugin, current in states:
            for state in PluginState:
                self.plugin_state.labels(plugin, state.value).set(1 if state is current else 0)
