"""A small bounded in-memory cache."""

from __future__ import annotations

from typing import Any


class BoundedCache(dict):  # type: ignore[type-arg]
    """A dict that forgets its oldest entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            for old in list(self)[: len(self) // 10 or 1]:
                del self[old]
