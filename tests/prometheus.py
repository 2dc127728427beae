"""Reading ``GET /metrics`` in tests, with prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


async def scrape(client: Any, **kwargs: Any) -> Samples:
    """``GET /metrics`` through an ``sdk.testing`` client; it must answer 200."""
    r = await client.get("/metrics", **kwargs)
    assert r.status == 200, await r.text()
    return parse(await r.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return float(samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0))
