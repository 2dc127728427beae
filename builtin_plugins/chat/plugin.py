"""The chat plugin: characters on LLM providers, talking through a LangGraph conversation
graph, served over REST, SSE, WebSocket and an OpenAI-compatible door."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from sdk import (
    Health,
    Identity,
    LLMProvider,
    Plugin,
    Route,
    Usage,
    errors,
    events,
    hookimpl,
    services,
)
from sdk.llm import provider_class_problem

from .characters import CHARACTER_SCHEMA, DEFAULT_CHARACTERS, Character, load_characters
from .graph import ConversationGraph, Emit, Turn
from .llm import ChatLLMService, ProviderRegistry
from .providers import BUILTIN_PROVIDERS
from .router import STRATEGIES, Router
from .store import ChatStore, Message, new_id

PROVIDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {
            "type": "string",
            "description": "openai | anthropic | llama_cpp | a plugin's type",
        },
        "base_url": {"type": "string"},
        "api_key": {"type": "string", "x-secret": True},
        "model": {"type": "string"},
        "model_path": {"type": "string", "description": "llama_cpp: a GGUF file"},
        "n_ctx": {"type": "integer", "minimum": 256},
        "n_threads": {"type": "integer", "minimum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "retry_backoff_seconds": {"type": "number", "minimum": 0},
        "require_api_key": {"type": "boolean"},
        "stream_usage": {"type": "boolean"},
        "anthropic_version": {"type": "string"},
        "max_connections": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": True,
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "default_provider": {"type": "string", "default": "local"},
        "routing": {"enum": list(STRATEGIES), "default": "natural"},
        "max_speakers": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        "history_turns": {"type": "integer", "minimum": 0, "maximum": 500, "default": 12},
        "request_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 120},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 2},
        "retry_backoff_seconds": {"type": "number", "minimum": 0, "default": 0.5},
        "max_tool_rounds": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
        "max_input_chars": {"type": "integer", "minimum": 1, "default": 32000},
        "host": {"type": "string", "description": "id of the host character (default: the first)"},
        "memory": {"type": "boolean", "default": True, "description": "ask memory_context hooks"},
        "memory_max_tokens": {"type": "integer", "minimum": 0, "default": 600},
        "seed": {"type": "integer", "description": "seed of the routing dice (tests, demos)"},
        "websocket": {
            "type": "object",
            "default": {},
            "properties": {
                "max_message_bytes": {"type": "integer", "minimum": 256, "default": 65536},
                "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30},
                "send_queue": {"type": "integer", "minimum": 1, "default": 256},
                "max_in_flight": {"type": "integer", "minimum": 1, "default": 8},
                "auth_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 10},
                "send_timeout_seconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 10,
                    "description": "a reader that takes no frame for this long is disconnected",
                },
            },
            "additionalProperties": False,
        },
        "providers": {
            "type": "object",
            "default": {"local": {"type": "llama_cpp"}},
            "additionalProperties": PROVIDER_SCHEMA,
        },
        "characters": {
            "type": "object",
            "default": DEFAULT_CHARACTERS,
            "propertyNames": {"pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
            "additionalProperties": CHARACTER_SCHEMA,
        },
    },
    "additionalProperties": False,
}


class ChatPlugin(Plugin):
    name = "chat"
    version = "0.1.0"
    description = "Characters on LLM providers: REST, SSE, WebSocket and an OpenAI-compatible door"
    config_schema = CONFIG_SCHEMA

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.store = ChatStore(
            context.database, window=max(1, int(self.config.get("history_turns", 12)) * 3)
        )
        self.providers: ProviderRegistry | None = None
        self.characters: dict[str, Character] = {}
        self.router = Router({})
        self.graph: ConversationGraph | None = None
        self.default_provider = str(self.config.get("default_provider", "local"))
        self.max_tool_rounds = int(self.config.get("max_tool_rounds", 3))
        self.memory_enabled = bool(self.config.get("memory", True))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self._types: dict[str, type[LLMProvider]] = {}
        self.websockets: Any = None
        self.stopping = False
        self._contributions_loaded = False

    # ---- lifecycle ------------------------------------------------------------------
    async def initialize(self) -> None:
        await self.store.create_tables()
        self.context.services.provide(services.LLM, ChatLLMService(self), plugin=self.name)

    async def start(self) -> None:
        from .websocket import WebSocketHub

        self.stopping = False
        self._contributions_loaded = False
        self.store.start()
        self._types = await self._provider_types()
        self.providers = ProviderRegistry(
            dict(self.config.get("providers") or {}),
            self._types,
            timeout=float(self.config.get("request_timeout_seconds", 120)),
            max_retries=int(self.config.get("max_retries", 2)),
            retry_backoff=float(self.config.get("retry_backoff_seconds", 0.5)),
            default_provider=self.default_provider,
        )
        await self.providers.start()
        await self.reload_characters()
        self.graph = ConversationGraph(self)
        self.websockets = WebSocketHub(self)
        self._unsubscribe.append(
            self.context.bus.subscribe(events.USER_DELETED, self._user_deleted)
        )
        self._unsubscribe.append(
            self.context.bus.subscribe(events.PLUGIN_STATE_CHANGED, self._plugin_state)
        )
        for name, reason in self.providers.unavailable().items():
            self.log.warning("chat provider %r unavailable: %s", name, reason)

    async def drain(self) -> None:
        """Shutdown begins: close every chat WebSocket so in-flight requests can drain."""
        self.stopping = True
        if self.websockets is not None:
            await self.websockets.close_all()

    async def stop(self) -> None:
        self.stopping = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.websockets is not None:
            await self.websockets.close_all()
        if self._tasks:
            # replies in progress are finished and stored (bounded by the request timeout)
            _done, pending = await asyncio.wait(
                list(self._tasks), timeout=float(self.config.get("request_timeout_seconds", 120))
            )
            for task in pending:
                task.cancel()
        await self.store.stop()
        if self.providers is not None:
            await self.providers.close()

    async def health(self) -> Health:
        if self.providers is None:
            return Health(status="unavailable", detail="not started")
        await self.ensure_contributions()
        unavailable = self.providers.unavailable()
        checks: dict[str, Any] = {"providers": self.providers.checks()}
        stranded = [
            c.id
            for c in self.characters.values()
            if all(
                name in unavailable or name not in self.providers.providers
                for name, _ in c.chain(self.default_provider)
            )
        ]
        if stranded:
            checks["characters_without_provider"] = stranded
        if unavailable:
            return Health(
                status="degraded",
                detail="unavailable providers: "
                + "; ".join(f"{name}: {reason}" for name, reason in sorted(unavailable.items())),
                checks=checks,
            )
        return Health(status="ok", checks=checks)

    async def _provider_types(self) -> dict[str, type[LLMProvider]]:
        """Every provider type, ours included, from ``register_llm_providers`` (the kernel
        has already failed a plugin whose answer is not a list of provider classes)."""
        types: dict[str, type[LLMProvider]] = {}
        for contributed in await self.context.hooks.call("register_llm_providers"):
            for cls in contributed:
                if provider_class_problem(cls) is None:
                    types.setdefault(cls.type, cls)
        return types

    async def reload_characters(self) -> None:
        registered: list[tuple[str, dict[str, Any]]] = []
        for contributed in await self.context.hooks.call("register_characters"):
            for raw in contributed if isinstance(contributed, list) else []:
                if isinstance(raw, dict):
                    registered.append(("a plugin", raw))
        self.characters = load_characters(
            dict(self.config.get("characters") or {}), registered, self.default_provider, self.log
        )
        seed = self.config.get("seed")
        self.router = Router(
            self.characters,
            strategy=str(self.config.get("routing", "natural")),
            max_speakers=int(self.config.get("max_speakers", 1)),
            host=self.config.get("host"),
            rng=random.Random(seed) if seed is not None else None,
        )

    async def _plugin_state(self, event: events.Event) -> None:
        """A plugin that starts after us may bring characters or provider types."""
        if event.data.get("plugin") == self.name or event.data.get("state") != "RUNNING":
            return
        await self.refresh_contributions()

    async def ensure_contributions(self) -> None:
        """Hooks only reach running plugins, and plugins started after this one were not
        running at our start(): collect their characters and provider types again once,
        at the first request (when every plugin has started)."""
        if not self._contributions_loaded:
            self._contributions_loaded = True
            await self.refresh_contributions()

    async def refresh_contributions(self) -> None:
        if self.providers is None:
            return
        types = await self._provider_types()
        if set(types) != set(self._types):
            self._types = types
            rebuilt = ProviderRegistry(
                dict(self.config.get("providers") or {}),
                types,
                timeout=float(self.config.get("request_timeout_seconds", 120)),
                max_retries=int(self.config.get("max_retries", 2)),
                retry_backoff=float(self.config.get("retry_backoff_seconds", 0.5)),
                default_provider=self.default_provider,
            )
            for name, provider in rebuilt.providers.items():
                if (
                    provider.type != "unknown"
                    and self.providers.providers.get(name, provider).type == "unknown"
                ):
                    await provider.start()
                    self.providers.providers[name] = provider
        await self.reload_characters()

    async def _user_deleted(self, event: events.Event) -> None:
        user_id = str(event.data.get("user_id") or "")
        if user_id:
            removed = await self.store.delete_user(user_id)
            self.log.info("erased %d chat sessions of a deleted user", removed)
            if self.websockets is not None:
                await self.websockets.close_user(user_id)

    # ---- hooks ----------------------------------------------------------------------
    @hookimpl
    def register_routes(self) -> list[Route]:
        from .openai_compat import openai_routes
        from .routes import chat_routes
        from .websocket import websocket_routes

        return [*chat_routes(self), *websocket_routes(self), *openai_routes(self)]

    @hookimpl
    def register_llm_providers(self) -> list[type[LLMProvider]]:
        return list(BUILTIN_PROVIDERS)

    @hookimpl
    async def summarize_text(
        self, identity: Identity | None, text: str, max_words: int
    ) -> str | None:
        """A summary from the default provider; None when it cannot answer (others may)."""
        if self.providers is None or not text.strip():
            return None
        try:
            result = await self.providers.complete(
                [(self.default_provider, None)],
                [
                    {
                        "role": "system",
                        "content": f"Summarize the user's text in at most {max_words} words. "
                        "Keep names, numbers and facts; answer with the summary only, in the "
                        "text's language.",
                    },
                    {"role": "user", "content": text[:20000]},
                ],
                max_tokens=max(16, max_words * 3),
                temperature=0.2,
            )
        except errors.Problem as exc:
            self.log.info("summarize_text: provider unavailable (%s)", exc.code)
            return None
        await self.publish_usage(
            identity, result.usage, provider=result.provider, model=result.model, character=None
        )
        words = result.content.split()
        summary = " ".join(words[:max_words]) if len(words) > max_words else result.content.strip()
        return summary or None

    # ---- turns ----------------------------------------------------------------------
    def character_or_422(self, char_id: str | None) -> str | None:
        if char_id is None or char_id == "":
            return None
        if char_id in self.characters:
            return char_id
        # accept a display name or alias too
        for char in self.characters.values():
            if char_id.casefold() in (n.casefold() for n in (char.name, *char.aliases)):
                return char.id
        raise errors.ValidationFailed(
            f"unknown character {char_id!r}",
            code="UNKNOWN_CHARACTER",
            errors=[{"path": "/character", "message": f"no character {char_id!r}"}],
        )

    async def prepare_turn(
        self,
        identity: Identity,
        user_input: str,
        *,
        session_id: str | None,
        character: str | None,
        emit: Emit | None = None,
        request_id: str = "",
    ) -> tuple[Turn, bool]:
        """Check the request and load what the graph needs; returns (turn, created)."""
        if self.graph is None or self.providers is None:
            raise errors.ServiceUnavailable(
                "the chat plugin is not running", code="PLUGIN_UNAVAILABLE"
            )
        if not user_input.strip():
            raise errors.ValidationFailed(
                "user_input is empty", errors=[{"path": "/user_input", "message": "empty"}]
            )
        limit = int(self.config.get("max_input_chars", 32000))
        if len(user_input) > limit:
            raise errors.ValidationFailed(
                f"user_input is longer than {limit} characters",
                errors=[{"path": "/user_input", "message": f"longer than {limit} characters"}],
            )
        requested = self.character_or_422(character)
        created = False
        history: list[Message] = []
        if session_id:
            if not await self.store.owns(identity.user_id, session_id):
                raise errors.NotFound("no such session", code="SESSION_NOT_FOUND")
            turns = int(self.config.get("history_turns", 12))
            if turns:
                history = await self.store.recent_messages(
                    identity.user_id, session_id, limit=turns * 3
                )
        else:
            session = await self.store.create_session(identity.user_id, user_input[:80])
            session_id = session["session_id"]
            created = True
        recent = [
            m.character for m in history if m.role == "assistant" and m.character and m.content
        ]
        turn = Turn(
            identity=identity,
            user_input=user_input,
            session_id=session_id,
            requested=requested,
            request_id=request_id,
            history=history,
            recent=recent,
            user_message=Message(
                message_id=new_id("msg"), session_id=session_id, role="user", content=user_input
            ),
        )
        if emit is not None:
            turn.emit = emit
        return turn, created

    def launch(self, turn: Turn) -> asyncio.Task[Turn]:
        """Run a turn as its own task: it finishes (and is stored) even if the client leaves."""
        assert self.graph is not None
        task = asyncio.create_task(self.graph.run(turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def tools_for(self, char: Character) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in self.context.tools.list()
            if char.allows_tool(t.name)
        ]

    @property
    def max_input_chars(self) -> int:
        return int(self.config.get("max_input_chars", 32000))

    # ---- events ---------------------------------------------------------------------
    async def publish_usage(
        self,
        identity: Identity | None,
        usage: Usage,
        *,
        provider: str,
        model: str,
        character: str | None,
    ) -> None:
        if identity is None:
            return
        try:
            await self.context.bus.publish(
                events.LLM_USAGE,
                {
                    "user_id": identity.user_id,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "provider": provider,
                    "model": model,
                    "character": character,
                },
            )
        except Exception as exc:
            self.log.warning("could not publish %s: %s", events.LLM_USAGE, type(exc).__name__)

    async def publish_message(self, identity: Identity, message: Message) -> None:
        try:
            await self.context.bus.publish(
                events.CHAT_MESSAGE_CREATED,
                {
                    "user_id": identity.user_id,
                    "session_id": message.session_id,
                    "message_id": message.message_id,
                    "role": message.role,
                    "character": message.character,
                    "content": message.content,
                },
            )
        except Exception as exc:
            self.log.warning(
                "could not publish %s: %s", events.CHAT_MESSAGE_CREATED, type(exc).__name__
            )
