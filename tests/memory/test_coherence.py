"""Two processes' vector indexes kept in step (coherence.py): changes travel on a real
Redis bus, and a per-user version in Redis catches an index that missed one. Each index
stands for one server process; ``Records`` stands for the shared database they load from."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np
import pytest

from builtin_plugins.memory.vectors.shared import SharedVectorIndex
from kernel.bus import PluginBus, RedisBus
from tests.serverproc import unique_prefix, wait_for

pytestmark = pytest.mark.redis
REDIS = "redis://127.0.0.1:6379/0"
DIM = 8
MODEL = "test-model"


class Records:
    """The rows both processes read their indexes from (five to start with)."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {f"m{seed}": self.vector(seed) for seed in range(5)}

    def vector(self, seed: int) -> np.ndarray:
        v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def loader(self) -> Any:
        async def load() -> tuple[list[str], list[str], list[str | None], np.ndarray]:
            ids = list(self.rows)
            matrix = np.stack([self.rows[i] for i in ids]) if ids else np.zeros((0, DIM))
            return ids, ["long_term"] * len(ids), [None] * len(ids), matrix.astype(np.float32)

        return load


async def top(index: SharedVectorIndex, records: Records, user: str, query: np.ndarray) -> str:
    entry = await index.ensure(user, MODEL, len(records.rows), records.loader())
    assert entry is not None
    hits = entry.search(query, 1, None, None, None, None)
    return hits[0][0] if hits else ""


@pytest.fixture
async def pair() -> Any:
    prefix = unique_prefix()
    made = []
    for _ in range(2):
        bus = RedisBus(REDIS, channel_prefix=prefix + "events:")
        await bus.start()
        index = SharedVectorIndex(1, 64 * 1024 * 1024)
        await index.start(REDIS, prefix, PluginBus(bus, "memory"))
        made.append((index, bus))
    yield made
    for index, bus in made:
        await index.stop()
        await bus.stop()


async def test_a_change_on_one_process_reaches_the_other(pair: Any) -> None:
    (a, _), (b, _) = pair
    records, user = Records(), uuid.uuid4().hex
    probe = records.vector(100)
    assert await top(a, records, user, probe) == await top(b, records, user, probe)
    loads = b.loads

    # A stores a memory that matches the probe exactly: B finds it, without reloading
    records.rows["new"] = probe
    a.on_add(user, MODEL, ["new"], ["long_term"], [None], probe.reshape(1, -1))
    assert await wait_for(lambda: _is(b, records, user, probe, "new"), timeout=1.0)
    # ... through the event itself once it has arrived (no reload from the records)
    await asyncio.gather(*list(a._tasks))
    assert await wait_for(lambda: _same_version(a, b, user), timeout=1.0)
    assert b.loads + b.stale_reloads <= loads + 1
    before = b.loads
    records.rows["newer"] = -probe
    a.on_add(user, MODEL, ["newer"], ["long_term"], [None], -probe.reshape(1, -1))
    await asyncio.gather(*list(a._tasks))
    assert await wait_for(lambda: _same_version(a, b, user), timeout=1.0)
    assert await top(b, records, user, -probe) == "newer"
    assert b.loads == before  # applied from the event

    # A deletes it: B stops returning it
    del records.rows["new"]
    a.on_remove(user, ["new"])
    assert await wait_for(lambda: _is_not(b, records, user, probe, "new"), timeout=1.0)


async def test_a_missed_event_is_caught_by_the_version(pair: Any) -> None:
    (a, _), (b, bus_b) = pair
    records, user = Records(), uuid.uuid4().hex
    probe = records.vector(200)
    await top(a, records, user, probe)
    await top(b, records, user, probe)

    # B hears nothing (its listener is gone) while A stores a memory
    await bus_b.stop()
    records.rows["unheard"] = probe
    a.on_add(user, MODEL, ["unheard"], ["long_term"], [None], probe.reshape(1, -1))
    await asyncio.gather(*list(a._tasks))  # A has raised the version and published
    # B's next search sees its entry is behind, loads again, and finds it
    assert await top(b, records, user, probe) == "unheard"
    assert b.stale_reloads == 1


async def _is(index: Any, records: Records, user: str, probe: np.ndarray, want: str) -> bool:
    return await top(index, records, user, probe) == want


async def _is_not(index: Any, records: Records, user: str, probe: np.ndarray, want: str) -> bool:
    return await top(index, records, user, probe) != want


async def _same_version(a: Any, b: Any, user: str) -> bool:
    return a._at.get(user) is not None and a._at.get(user) == b._at.get(user)
