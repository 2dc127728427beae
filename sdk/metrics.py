"""Declaring a plugin's own Prometheus metrics without importing prometheus or the kernel.

In ``initialize``, a plugin declares what it measures through ``self.context.metrics``::

    self.refusals = self.context.metrics.counter(
        "refusals", "Requests refused by a limit", labels=("route",)
    )
    ...
    self.refusals.labels(route=key).inc()

Every name is prefixed with ``llmmc_<plugin>_`` (a counter also gets ``_total``), so two
plugins never clash and ``GET /metrics`` says who measured what. The objects returned
work like prometheus-client's (``labels(...)``, ``inc``, ``dec``, ``set``, ``observe``);
with ``serve --workers N`` the kernel sums counters and histograms over the workers and
combines gauges as ``aggregate`` says. ``on_collect`` runs a function just before each
scrape, to set gauges whose value is cheaper to read than to track (an index's size).
Label values must come from a small, known set (route templates, provider names), never
from user input: each distinct value is a new time series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

# How a gauge's values from several worker processes are combined into one.
Aggregate = Literal["sum", "max", "min", "all"]

# Seconds; from a fast route to a long LLM answer.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


class CounterMetric(Protocol):
    def labels(self, *values: str, **labels: str) -> CounterMetric: ...

    def inc(self, amount: float = 1) -> None: ...


class GaugeMetric(Protocol):
    def labels(self, *values: str, **labels: str) -> GaugeMetric: ...

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...

    def set(self, value: float) -> None: ...


class HistogramMetric(Protocol):
    def labels(self, *values: str, **labels: str) -> HistogramMetric: ...

    def observe(self, amount: float) -> None: ...


class Metrics(Protocol):
    """What ``PluginContext.metrics`` offers; names get the ``llmmc_<plugin>_`` prefix."""

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> CounterMetric: ...

    def gauge(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        aggregate: Aggregate = "sum",
    ) -> GaugeMetric: ...

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> HistogramMetric: ...

    def on_collect(self, fn: Callable[[], None]) -> None: ...


class MetricsBackend(Protocol):
    """What a metrics plugin publishes as the ``"metrics"`` service: the kernel declares
    every plugin's metrics there (full names, ``llmmc_<plugin>_...``) when it appears."""

    def declare(
        self, kind: str, name: str, help: str, labels: Sequence[str], **options: Any
    ) -> Any:
        """A counter, gauge or histogram (``kind``) object like prometheus-client's."""

    def before_collect(self, owner: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` before each scrape (``Metrics.on_collect``)."""

    def forget(self, owner: str) -> None:
        """Run ``owner``'s functions no more (its plugin was disabled)."""


class _Nothing:
    """A metric that records nothing (see :class:`NullMetrics`)."""

    def labels(self, *values: str, **labels: str) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


class NullMetrics:
    """Metrics that go nowhere: for a plugin built outside a kernel (unit tests, tools)."""

    def _declare(
        self, name: str, help: str, labels: Sequence[str] = (), **options: Any
    ) -> _Nothing:
        return _Nothing()

    counter = gauge = histogram = _declare

    def on_collect(self, fn: Callable[[], None]) -> None:
        pass
