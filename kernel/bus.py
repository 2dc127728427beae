"""The event bus: in-process by default, Redis pub/sub to reach every server process.

Delivery is awaited on the publishing process (so a quota counted from ``llm.usage`` is
in place before the next request) and each subscriber runs isolated. With Redis, other
processes receive the event through their listener; a process skips its own messages,
which it has already delivered locally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sdk.events import Event, EventHandler

log = logging.getLogger("llmmultichat.bus")


class _Subscription:
    __slots__ = ("handler", "local_only", "plugin", "topic")

    def __init__(self, topic: str, handler: EventHandler, plugin: str, local_only: bool) -> None:
        self.topic = topic
        self.handler = handler
        self.plugin = plugin
        self.local_only = local_only

    def matches(self, topic: str) -> bool:
        if self.topic == "*" or self.topic == topic:
            return True
        return self.topic.endswith(".*") and topic.startswith(self.topic[:-1])


class MemoryBus:
    """In-process publish/subscribe; the base of the Redis bus too."""

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []
        self.instance_id = uuid.uuid4().hex

    def subscribe(
        self, topic: str, handler: EventHandler, plugin: str = "", *, local_only: bool = False
    ) -> Callable[[], None]:
        sub = _Subscription(topic, handler, plugin, local_only)
        self._subs.append(sub)

        def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)

        return unsubscribe

    def unsubscribe_plugin(self, plugin: str) -> None:
        self._subs = [s for s in self._subs if s.plugin != plugin]

    async def publish(self, topic: str, data: dict[str, Any], source: str = "") -> None:
        await self.deliver(Event(topic=topic, data=data, source=source))

    async def deliver(self, event: Event, remote: bool = False) -> None:
        """``remote``: the event was published by another process (skips ``local_only``)."""
        subs = [s for s in self._subs if s.matches(event.topic) and not (remote and s.local_only)]
        if not subs:
            return
        results = await asyncio.gather(*(s.handler(event) for s in subs), return_exceptions=True)
        for sub, result in zip(subs, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "event handler of plugin %r failed on %s: %r",
                    sub.plugin or "?",
                    event.topic,
                    result,
                    exc_info=result,
                )

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"backend": "memory", "status": "ok"}


class RedisBus(MemoryBus):
    """Every event also goes to Redis channel ``<prefix><topic>``; a listener task
    delivers other processes' events here."""

    def __init__(self, redis_url: str, channel_prefix: str = "llmmc:events:") -> None:
        super().__init__()
        self.redis_url = redis_url
        self.prefix = channel_prefix
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._error = ""
        self._deliveries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.redis_url)
        await self._redis.ping()  # fail loudly at startup when Redis is not there
        self._task = asyncio.create_task(self._listen(), name="llmmc-bus-listener")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._redis is not None:
            await self._redis.aclose()

    async def publish(self, topic: str, data: dict[str, Any], source: str = "") -> None:
        event = Event(topic=topic, data=data, source=source)
        payload = json.dumps({"origin": self.instance_id, "event": event.to_dict()}, default=str)
        try:
            await self._redis.publish(self.prefix + topic, payload)
        except Exception as exc:  # local delivery still happens; other processes miss it
            log.error("could not publish %s to Redis: %r", topic, exc)
        await self.deliver(event)

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(self.prefix + "*")
                self._ready.set()
                self._error = ""
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    await self._on_message(message["data"])
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:  # Redis went away: keep trying, report in /health
                self._error = repr(exc)
                log.warning("Redis bus listener lost its connection: %r", exc)
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _on_message(self, raw: bytes | str) -> None:
        try:
            msg = json.loads(raw)
            if msg.get("origin") == self.instance_id:
                return
            event = Event.from_dict(msg["event"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed bus message: %r", exc)
            return
        task = asyncio.create_task(self.deliver(event, remote=True))  # never stall the listener
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def health(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "status": "degraded" if self._error else "ok",
            **({"error": self._error} if self._error else {}),
        }


class PluginBus:
    """The bus as one plugin sees it: subscriptions and events carry its name."""

    def __init__(self, bus: MemoryBus, plugin: str) -> None:
        self._bus = bus
        self._plugin = plugin

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        await self._bus.publish(topic, data, source=self._plugin)

    def subscribe(
        self, topic: str, handler: EventHandler, *, local_only: bool = False
    ) -> Callable[[], None]:
        return self._bus.subscribe(topic, handler, plugin=self._plugin, local_only=local_only)


def make_bus(config: dict[str, Any]) -> MemoryBus:
    if config.get("backend") == "redis":
        return RedisBus(config["redis_url"], config.get("channel_prefix", "llmmc:events:"))
    return MemoryBus()
