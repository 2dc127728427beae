"""The chat plugin: characters on LLM providers, talking through a LangGraph conversation
graph, served over REST, SSE, WebSocket and an OpenAI-compatible door."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdk import (
    Database,
    Health,
    Identity,
    LLMProvider,
    Plugin,
    PluginContext,
    Route,
    credentials,
    errors,
    events,
    hookimpl,
    services,
)

from .character_api import CHARACTERS_CHANGED, CharacterAPI
from .character_routes import character_routes
from .characters import CHARACTER_SCHEMA, DEFAULT_CHARACTERS
from .metrics import ChatMetrics
from .openai_compat import openai_routes
from .providers import BUILTIN_PROVIDERS
from .routes import chat_routes
from .service import ChatService
from .store import MIGRATIONS, CharacterStore, ChatStore
from .turn_taking import STRATEGIES
from .websocket import WebSocketHub, websocket_routes

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
        "preload": {
            "type": "boolean",
            "description": "llama_cpp: load the model when the server starts (default true; /readyz waits for it)",
        },
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
        "characters_per_user": {
            "type": "integer",
            "minimum": 0,
            "default": 100,
            "description": "private characters one user may keep (0: users make none)",
        },
        "websocket": {
            "type": "object",
            "default": {},
            "properties": {
                "max_message_bytes": {"type": "integer", "minimum": 256, "default": 65536},
                "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30},
                "send_queue": {"type": "integer", "minimum": 1, "default": 256},
                "max_in_flight": {"type": "integer", "minimum": 1, "default": 8},
                "max_per_user": {
                    "type": "integer",
                    "minimum": 1,
                    "default": 20,
                    "description": "authenticated WebSockets one user may hold on one instance; one more is closed with 4429",
                },
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
    """Wiring only: the config schema, the lifecycle and the hooks. The work is done by
    the chat service, reached by the transports (REST/SSE, WebSocket, the OpenAI door)."""

    name = "chat"
    requires = ("storage",)
    migrations = MIGRATIONS
    version = "0.1.0"
    description = "Characters on LLM providers: REST, SSE, WebSocket and an OpenAI-compatible door"
    config_schema = CONFIG_SCHEMA

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        metrics = ChatMetrics(context.metrics)
        self.service = ChatService(
            self.config,
            store=ChatStore(
                context.database,
                window=max(1, self.config["history_turns"] * 3),
                # On PostgreSQL other processes write the same sessions: each turn reads
                # the session and its history from the database, not this process's cache.
                cache_sessions=0 if context.database.engine == "postgresql" else 4096,
            ),
            hooks=context.hooks,
            tools=context.tools,
            bus=context.bus,
            logger=self.log,
            metrics=metrics,
            character_store=CharacterStore(context.database),
            # other processes may change characters: check the stored version before use
            shared_database=context.database.engine == "postgresql",
            server=context.server,
        )
        self.character_api = CharacterAPI(self.service)
        self.websockets = WebSocketHub(
            self.service,
            metrics=metrics,
            settings=self.config["websocket"],
            hooks=context.hooks,
            services=context.services,
        )
        self._unsubscribe: list[Callable[[], None]] = []

    # ---- lifecycle ------------------------------------------------------------------
    async def initialize(self) -> None:
        self.context.services.provide(services.LLM, self.service, plugin=self.name)

    async def start(self) -> None:
        await self.service.start()
        self.websockets.open()
        bus = self.context.bus
        self._unsubscribe.append(bus.subscribe(events.USER_DELETED, self._user_deleted))
        # a character changed on another instance: reload now (each use checks anyway)
        self._unsubscribe.append(bus.subscribe(CHARACTERS_CHANGED, self._characters_changed))
        # logout, password change, disabling, deletion (here or on another instance)
        for topic in credentials.TOPICS:
            self._unsubscribe.append(bus.subscribe(topic, self.websockets.on_credentials_event))

    async def drain(self) -> None:
        """Shutdown begins: close every chat WebSocket so in-flight requests can drain."""
        await self.websockets.close_all()

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        await self.websockets.close_all()
        await self.service.stop()

    async def health(self) -> Health:
        return await self.service.health()

    def not_ready(self) -> str | None:
        """A local model still loading (``preload``): ``/readyz`` waits for it."""
        providers = self.service.providers
        return providers.not_ready() if providers is not None else None

    async def _user_deleted(self, event: events.Event) -> None:
        user_id = str(event.data.get("user_id") or "")
        if user_id:
            removed = await self.service.delete_user(user_id)
            await self.character_api.erase_user(user_id)
            self.log.info("erased %d chat sessions of a deleted user", removed)

    async def _characters_changed(self, event: events.Event) -> None:
        if event.data.get("version") != self.service.charset.version:
            try:
                await self.service.charset.reload()
            except Exception as exc:  # the next use checks the version again
                self.log.warning("could not reload characters: %s", exc)

    # ---- hooks ----------------------------------------------------------------------
    @hookimpl
    async def copy_tables(self, target: Database) -> list[str]:
        return await self.context.database.tables("chat_")

    @hookimpl
    def register_routes(self) -> list[Route]:
        return [
            *chat_routes(self.service),
            *character_routes(self.character_api),
            *websocket_routes(self.websockets),
            *openai_routes(self.service),
        ]

    @hookimpl
    def register_llm_providers(self) -> list[type[LLMProvider]]:
        return list(BUILTIN_PROVIDERS)

    @hookimpl
    async def summarize_text(
        self, identity: Identity | None, text: str, max_words: int
    ) -> str | None:
        """A summary from the default provider; None when it cannot answer (others may)."""
        if not text.strip():
            return None
        try:
            summary = await self.service.complete(
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
                identity=identity,
            )
        except errors.Problem as exc:
            self.log.info("summarize_text: provider unavailable (%s)", exc.code)
            return None
        words = summary.split()
        return (" ".join(words[:max_words]) if len(words) > max_words else summary.strip()) or None
