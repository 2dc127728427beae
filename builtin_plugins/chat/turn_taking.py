"""Turn-taking: who answers a user message (the `routing` strategies).

- ``natural`` (SillyTavern's group chats): characters named in the message, by name or
  alias in any script, answer first, in the order they are named; then characters whose
  keywords appear; then each other character speaks with probability ``talkativeness``;
  at most ``max_speakers``. The previous turn's last speaker is never chosen again
  unless named. When nobody is chosen, the host (the first character) answers, or, if
  the host spoke last, one of the others (weighted by talkativeness).
- ``list``: the characters take turns in list order, ``max_speakers`` per message,
  continuing after whoever spoke last.
- ``pooled``: one random character among those who have not spoken recently.
- ``manual``: only the requested character (without one: the session's last speaker, or
  the host).

The request's ``character`` field always overrides the strategy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .characters import Character, normalize

STRATEGIES = ("natural", "list", "pooled", "manual")


class TurnTaking:
    def __init__(
        self,
        characters: dict[str, Character],
        *,
        strategy: str = "natural",
        max_speakers: int = 1,
        host: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.characters = characters
        self.strategy = strategy
        self.max_speakers = max(1, max_speakers)
        self.configured_host = host
        self.host = host if host in characters else next(iter(characters), None)
        self.rng = rng or random.Random()

    def among(self, characters: dict[str, Character]) -> TurnTaking:
        """The same rules over another set of characters (those one user can see), with
        the same dice."""
        if characters is self.characters:
            return self
        return TurnTaking(
            characters,
            strategy=self.strategy,
            max_speakers=self.max_speakers,
            host=self.configured_host,
            rng=self.rng,
        )

    def named(self, text: str) -> list[str]:
        """Characters mentioned in ``text``, in order of first mention."""
        norm = normalize(text)
        hits = []
        for char in self.characters.values():
            pos = char.named_at(norm)
            if pos is not None:
                hits.append((pos, char.id))
        return [cid for _, cid in sorted(hits)]

    def choose(
        self,
        text: str,
        *,
        requested: str | None = None,
        recent: Sequence[str] = (),
    ) -> list[str]:
        """Speaker ids for this message. ``recent``: speakers of earlier turns, newest last."""
        if not self.characters:
            return []
        if requested:
            return [requested]
        last = recent[-1] if recent else None
        if self.strategy == "manual":
            if last in self.characters:
                return [last]
            return [self.host] if self.host else []
        if self.strategy == "list":
            return self._list(last)
        if self.strategy == "pooled":
            return self._pooled(recent)
        return self._natural(text, last)

    def _natural(self, text: str, last: str | None) -> list[str]:
        chosen: list[str] = []

        def add(cid: str) -> None:
            if cid not in chosen and len(chosen) < self.max_speakers:
                chosen.append(cid)

        for cid in self.named(text):
            add(cid)
        norm = normalize(text)
        for char in self.characters.values():
            if char.id != last and char.keyword_hit(norm):
                add(char.id)
        others = [c for c in self.characters.values() if c.id != last and c.id not in chosen]
        self.rng.shuffle(others)
        for char in others:
            if char.talkativeness > 0 and self.rng.random() < char.talkativeness:
                add(char.id)
        if chosen:
            return chosen
        if self.host and self.host != last:
            return [self.host]
        candidates = [c for c in self.characters.values() if c.id != last and c.talkativeness > 0]
        if not candidates:
            return [self.host] if self.host else []
        weights = [c.talkativeness for c in candidates]
        return [self.rng.choices(candidates, weights=weights, k=1)[0].id]

    def _list(self, last: str | None) -> list[str]:
        order = list(self.characters)
        start = (order.index(last) + 1) if last in order else 0
        count = min(self.max_speakers, len(order))
        return [order[(start + i) % len(order)] for i in range(count)]

    def _pooled(self, recent: Sequence[str]) -> list[str]:
        order = list(self.characters)
        window = max(1, len(order) - 1)
        recently = set(list(recent)[-window:])
        pool = [cid for cid in order if cid not in recently]
        if not pool:
            # everyone spoke within the window: the one who spoke longest ago
            seen: dict[str, int] = {}
            for i, cid in enumerate(recent):
                seen[cid] = i
            pool = [min(order, key=lambda cid: seen.get(cid, -1))]
        return [self.rng.choice(pool)]
