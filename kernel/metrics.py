"""Where plugins' declared metrics (``context.metrics``) live until a metrics plugin
publishes a backend (``sdk.services.METRICS``), and after: each metric a plugin declares
is a :class:`DeferredMetric` that forwards to the backend's real one once it is attached,
and records nothing before (or after it detaches). The kernel imports no metrics library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from sdk.metrics import DEFAULT_BUCKETS, Aggregate, MetricsBackend, _Nothing

log = logging.getLogger("llmmultichat.metrics")
PREFIX = "llmmc_"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NOTHING = _Nothing()


class DeferredMetric:
    """A declared metric: forwards to the backend's object, or records nothing."""

    __slots__ = ("help", "impl", "kind", "labelnames", "name", "options")

    def __init__(
        self, kind: str, name: str, help: str, labels: Sequence[str], options: dict[str, Any]
    ) -> None:
        self.kind, self.name, self.help = kind, name, help
        self.labelnames, self.options = tuple(labels), options
        self.impl: Any = _NOTHING

    def labels(self, *values: str, **labels: str) -> Any:
        return self.impl.labels(*values, **labels)

    def inc(self, amount: float = 1) -> None:
        self.impl.inc(amount)

    def dec(self, amount: float = 1) -> None:
        self.impl.dec(amount)

    def set(self, value: float) -> None:
        self.impl.set(value)

    def observe(self, amount: float) -> None:
        self.impl.observe(amount)


class MetricsRegistry:
    """Every plugin's declared metrics and ``on_collect`` functions, connected to the
    backend a metrics plugin publishes."""

    def __init__(self) -> None:
        self.declared: dict[str, DeferredMetric] = {}
        self.collectors: list[tuple[str, Callable[[], None]]] = []
        self.backend: MetricsBackend | None = None

    def declare(
        self, kind: str, name: str, help: str, labels: Sequence[str], **options: Any
    ) -> DeferredMetric:
        """The metric ``name``; declared again with the same kind and labels, the same one
        (a plugin initialized twice in one process)."""
        found = self.declared.get(name)
        if found is not None:
            if (found.kind, found.labelnames) != (kind, tuple(labels)):
                raise ValueError(
                    f"metric {name} is already declared as a {found.kind} "
                    f"with labels {found.labelnames}"
                )
            return found
        metric = self.declared[name] = DeferredMetric(kind, name, help, labels, options)
        if self.backend is not None:
            metric.impl = self.backend.declare(kind, name, help, labels, **options)
        return metric

    def on_collect(self, owner: str, fn: Callable[[], None]) -> None:
        self.collectors.append((owner, fn))
        if self.backend is not None:
            self.backend.before_collect(owner, fn)

    def forget(self, owner: str) -> None:
        """A plugin disabled at run time: its ``on_collect`` functions run no more."""
        self.collectors = [(o, fn) for o, fn in self.collectors if o != owner]
        if self.backend is not None:
            self.backend.forget(owner)

    def attach(self, backend: MetricsBackend) -> None:
        if self.backend is backend:
            return
        self.backend = backend
        for m in self.declared.values():
            m.impl = backend.declare(m.kind, m.name, m.help, m.labelnames, **m.options)
        for owner, fn in self.collectors:
            backend.before_collect(owner, fn)

    def detach(self) -> None:
        self.backend = None
        for m in self.declared.values():
            m.impl = _NOTHING

    def for_plugin(self, plugin: str) -> PluginMetrics:
        return PluginMetrics(self, plugin)


class PluginMetrics:
    """``sdk.metrics.Metrics`` for one plugin: its names start with ``llmmc_<plugin>_``."""

    def __init__(self, registry: MetricsRegistry, plugin: str) -> None:
        self.registry = registry
        self.plugin = plugin

    def _name(self, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} must match {_NAME.pattern}")
        return f"{PREFIX}{self.plugin}_{name}"

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Any:
        return self.registry.declare("counter", self._name(name), help, labels)

    def gauge(
        self, name: str, help: str, labels: Sequence[str] = (), *, aggregate: Aggregate = "sum"
    ) -> Any:
        return self.registry.declare("gauge", self._name(name), help, labels, aggregate=aggregate)

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Any:
        return self.registry.declare(
            "histogram", self._name(name), help, labels, buckets=tuple(buckets)
        )

    def on_collect(self, fn: Callable[[], None]) -> None:
        self.registry.on_collect(self.plugin, fn)
