"""The service other plugins use (``sdk.services.RATELIMIT`` and ``sdk.services.QUOTA``):
request limits per route and caller, and daily LLM token quotas per user."""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from typing import Any

from sdk import Identity, errors
from sdk.metrics import CounterMetric

from .backends import Backend, BackendUnavailable, Reserve
from .limits import Limit, parse_limit


def utc_day(ts: float | None = None) -> str:
    when = dt.datetime.now(dt.UTC) if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)
    return when.strftime("%Y%m%d")


def seconds_to_utc_midnight() -> int:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((tomorrow - now).total_seconds()))


class Limiter:
    def __init__(
        self,
        backend: Backend,
        *,
        default: str,
        routes: dict[str, str],
        tokens_per_day: dict[str, int],
        on_backend_error: str,
        logger: logging.Logger,
        refusals: CounterMetric,
        reserve_tokens: int = 0,
        reservation_seconds: float = 150.0,
    ) -> None:
        self.backend = backend
        self.default = parse_limit(default)
        self.routes: dict[str, Limit] = {k: parse_limit(v) for k, v in routes.items()}
        self.tokens_per_day = dict(tokens_per_day)
        self.fail_open = on_backend_error == "open"
        self.log = logger
        self._warned = False
        self.refusals = refusals  # labels: route, reason
        # what a turn admitted under a quota sets aside until it ends (0: nothing)
        self.reserve_tokens = int(reserve_tokens)
        self.reservation_seconds = float(reservation_seconds)

    # -- limits ---------------------------------------------------------------------------

    def limit_for(self, route_key: str) -> Limit:
        return self.routes.get(route_key, self.default)

    def quota_for(self, identity: Identity) -> int:
        """Tokens per UTC day for the identity's roles; 0 = unlimited. A role set to 0 wins,
        else the largest configured value; roles not configured fall back to ``user``."""
        values = [self.tokens_per_day[r] for r in identity.roles if r in self.tokens_per_day]
        if not values:
            values = [self.tokens_per_day.get("user", 0)]
        return 0 if 0 in values else max(values)

    @staticmethod
    def _who(identity: Identity | None, client_ip: str) -> str:
        return f"u:{identity.user_id}" if identity is not None else f"ip:{client_ip or 'unknown'}"

    @staticmethod
    def quota_key(user_id: str, day: str | None = None) -> str:
        return f"q:{user_id}:{day or utc_day()}"

    def _backend_down(self, exc: BackendUnavailable) -> dict[str, str]:
        if not self._warned:
            self.log.warning(
                "rate-limit backend unavailable (%s): failing %s",
                exc,
                "open" if self.fail_open else "closed",
            )
            self._warned = True
        if self.fail_open:
            return {}
        raise errors.ServiceUnavailable(
            "The rate-limit backend is unavailable; try again shortly.",
            code="RATELIMIT_BACKEND_UNAVAILABLE",
            headers={"Retry-After": "1"},
        )

    async def check(
        self,
        route_key: str,
        identity: Identity | None,
        client_ip: str,
        *,
        quota: bool = False,
    ) -> dict[str, str]:
        """The service's check (the chat WebSocket, per message): a turn it admits under a
        quota reserves ``reserve_tokens``, taken back by the turn's usage and lapsing
        after ``reservation_seconds``."""
        headers, _ = await self.check_turn(route_key, identity, client_ip, quota=quota)
        return headers

    async def check_turn(
        self,
        route_key: str,
        identity: Identity | None,
        client_ip: str,
        *,
        quota: bool = False,
    ) -> tuple[dict[str, str], tuple[str, str] | None]:
        """:meth:`check`, and the reservation made for the turn, ``(quota key,
        reservation id)``, for :meth:`settle` when the turn ends (or None)."""
        limit = self.limit_for(route_key)
        quota_key, quota_limit = "", 0
        if quota and identity is not None:
            quota_limit = self.quota_for(identity)
            if quota_limit > 0:
                quota_key = self.quota_key(identity.user_id)
        key = f"rl:{route_key}|{self._who(identity, client_ip)}"
        reserve = None
        if quota_key and self.reserve_tokens > 0:
            reserve = Reserve(uuid.uuid4().hex, self.reserve_tokens, self.reservation_seconds)
        try:
            result = await self.backend.hit(key, limit, quota_key, quota_limit, reserve)
        except BackendUnavailable as exc:
            if not self.fail_open:
                self.refusals.labels(route=route_key, reason="backend_unavailable").inc()
            return self._backend_down(exc), None
        if self._warned:
            self.log.info("rate-limit backend is back")
            self._warned = False
        if result.decision is None:
            self.refusals.labels(route=route_key, reason="quota_exceeded").inc()
            running = (
                f" ({result.quota_reserved} are set aside for turns still running; try again "
                "when they end)"
                if result.quota_reserved
                else ""
            )
            raise errors.TooManyRequests(
                f"The daily quota of {quota_limit} LLM tokens is spent{running}; it renews "
                "at 00:00 UTC.",
                code="QUOTA_EXCEEDED",
                retry_after=seconds_to_utc_midnight(),
                extra={"quota": {"tokens_per_day": quota_limit, "used_today": result.quota_used}},
            )
        decision = result.decision
        headers = decision.headers()
        if not decision.allowed:
            self.refusals.labels(route=route_key, reason="rate_limited").inc()
            raise errors.TooManyRequests(
                f"Rate limit of {limit.text} exceeded for {route_key}.",
                retry_after=math.ceil(decision.retry_after),
                headers=headers,
            )
        return headers, (quota_key, reserve.reservation_id) if reserve is not None else None

    async def settle(self, reservation: tuple[str, str]) -> None:
        """A turn ended: what it reserved and did not use goes back to the quota."""
        try:
            await self.backend.settle(*reservation)
        except BackendUnavailable as exc:  # it lapses by itself
            self.log.info("could not settle a quota reservation: %s", exc)

    # -- quotas ---------------------------------------------------------------------------

    async def record_usage(
        self, user_id: str, tokens: int, event_id: str, ts: float | None
    ) -> None:
        if not user_id or tokens <= 0:
            return
        try:
            await self.backend.add_usage(self.quota_key(user_id, utc_day(ts)), tokens, event_id)
        except BackendUnavailable as exc:
            self.log.warning("could not count %d tokens of user %s: %s", tokens, user_id, exc)

    async def usage(self, identity: Identity) -> dict[str, Any]:
        limit = self.quota_for(identity)
        try:
            used = await self.backend.usage(self.quota_key(identity.user_id))
        except BackendUnavailable:
            used = 0
        return {"tokens_per_day": limit, "used_today": used}
