"""The chat service: the one object every transport talks to.

It owns the characters, turn-taking, the providers, the store and the conversation graph,
checks a request and loads what a turn needs (``prepare_turn``), runs turns as tasks that
outlive their client (``launch``), answers one-shot completions for other plugins
(``complete``, published as the ``"llm"`` service) and publishes chat's events.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from sdk import EventBus, Health, Identity, LLMProvider, ToolRegistry, errors
from sdk.errors import Problem
from sdk.hooks import HookCaller
from sdk.llm import provider_class_problem

from .characters import Character, find_character, load_characters
from .graph import ConversationGraph, Emit, Turn
from .metrics import ChatMetrics
from .providers.registry import ProviderRegistry
from .publisher import Publisher
from .store import MAX_TITLE, ChatStore, Message, new_id
from .turn_taking import TurnTaking

log = logging.getLogger("llmmultichat.chat")


def turn_problem(exc: BaseException) -> Problem:
    """What a client is told about a turn that failed (anything not a Problem is a bug)."""
    if isinstance(exc, Problem):
        return exc
    log.error("chat turn failed", exc_info=exc)
    return Problem("the reply failed; it has been logged", code="INTERNAL_ERROR")


class ChatService:
    def __init__(
        self,
        config: dict[str, Any],
        *,
        store: ChatStore,
        hooks: HookCaller,
        tools: ToolRegistry,
        bus: EventBus,
        logger: logging.Logger,
        metrics: ChatMetrics,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.store = store
        self.hooks = hooks
        self.tools = tools
        self.log = logger
        self.publisher = Publisher(bus, logger)
        self.default_provider: str = config["default_provider"]
        self.max_input_chars: int = config["max_input_chars"]
        self.characters: dict[str, Character] = {}
        self.providers: ProviderRegistry | None = None
        self.graph: ConversationGraph | None = None
        self._tasks: set[asyncio.Task[Turn]] = set()

    # ---- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self.store.start()
        self.providers = ProviderRegistry(
            dict(cfg["providers"]),
            await self._provider_types(),
            timeout=float(cfg["request_timeout_seconds"]),
            max_retries=cfg["max_retries"],
            retry_backoff=float(cfg["retry_backoff_seconds"]),
            default_provider=self.default_provider,
            metrics=self.metrics,
        )
        await self.providers.start()
        self.characters = load_characters(
            dict(cfg["characters"]),
            await self._registered_characters(),
            self.default_provider,
            self.log,
        )
        seed = cfg.get("seed")
        self.graph = ConversationGraph(
            characters=self.characters,
            turn_taking=TurnTaking(
                self.characters,
                strategy=cfg["routing"],
                max_speakers=cfg["max_speakers"],
                host=cfg.get("host"),
                rng=random.Random(seed) if seed is not None else None,
            ),
            providers=self.providers,
            store=self.store,
            publisher=self.publisher,
            tools=self.tools,
            hooks=self.hooks,
            default_provider=self.default_provider,
            max_tool_rounds=cfg["max_tool_rounds"],
            memory_max_tokens=cfg["memory_max_tokens"] if cfg["memory"] else None,
            metrics=self.metrics,
        )
        for name, reason in self.providers.unavailable().items():
            self.log.warning("chat provider %r unavailable: %s", name, reason)

    async def stop(self) -> None:
        if self._tasks:
            # replies in progress are finished and stored (bounded by the request timeout)
            _done, pending = await asyncio.wait(
                list(self._tasks), timeout=float(self.config["request_timeout_seconds"])
            )
            for task in pending:
                task.cancel()
        await self.store.stop()
        if self.providers is not None:
            await self.providers.close()

    async def _provider_types(self) -> dict[str, type[LLMProvider]]:
        """Every provider type, ours included, from ``register_llm_providers`` (the kernel
        has already failed a plugin whose answer is not a list of provider classes)."""
        types: dict[str, type[LLMProvider]] = {}
        for contributed in await self.hooks.call("register_llm_providers"):
            for cls in contributed:
                if provider_class_problem(cls) is None:
                    types.setdefault(cls.type, cls)
        return types

    async def _registered_characters(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("a plugin", raw)
            for contributed in await self.hooks.call("register_characters")
            for raw in (contributed if isinstance(contributed, list) else [])
            if isinstance(raw, dict)
        ]

    async def health(self) -> Health:
        """Degraded only for what a user would notice: a character that cannot answer, or
        answers through a fallback instead of its own provider. A provider no character
        uses (the sample openai/anthropic tables without keys) is listed in ``checks``
        but does not degrade the plugin."""
        if self.providers is None:
            return Health(status="unavailable", detail="not started")
        providers = self.providers.providers
        down = self.providers.unavailable()
        for name, _ in (
            p for c in self.characters.values() for p in c.chain(self.default_provider)
        ):
            if name not in providers:
                down.setdefault(name, f"no provider {name!r} is configured")
        checks: dict[str, Any] = {"providers": self.providers.checks()}
        problems: list[str] = []
        stranded: list[str] = []
        used: set[str] = set()
        for c in self.characters.values():
            chain = [name for name, _ in c.chain(self.default_provider)]
            used.update(chain)
            working = [name for name in chain if name not in down]
            first = chain[0]
            if not working:
                stranded.append(c.id)
                why = "; ".join(f"{n}: {down[n]}" for n in chain)
                problems.append(f"character {c.name!r} cannot answer ({why})")
            elif working[0] != first:
                problems.append(
                    f"character {c.name!r} answers through {working[0]!r} instead of "
                    f"{first!r} ({down[first]})"
                )
        if stranded:
            checks["characters_without_provider"] = stranded
        if self.default_provider in down:
            # other plugins' completions (memory summaries, the llm translator) use it
            used.add(self.default_provider)
            problems.append(
                f"default provider {self.default_provider!r} is unavailable "
                f"({down[self.default_provider]}): completions for other plugins fail"
            )
        unused = sorted(set(down) - used)
        if unused:
            checks["unused_unavailable_providers"] = unused
        if not self.characters:
            return Health("unavailable", "no character is configured", checks)
        if len(stranded) == len(self.characters):
            return Health("unavailable", "; ".join(problems), checks)
        if problems:
            return Health("degraded", "; ".join(problems), checks)
        return Health(status="ok", checks=checks)

    # ---- characters -----------------------------------------------------------------
    def public_characters(self) -> list[dict[str, Any]]:
        providers = self.providers.providers if self.providers else {}
        return [c.public(self.default_provider, providers) for c in self.characters.values()]

    def requested_character(self, name: str | None) -> str | None:
        """The id of the character a request names (id, display name or alias); None
        when it names none; 422 ``UNKNOWN_CHARACTER`` when nobody has that name."""
        if not name:
            return None
        found = find_character(self.characters, name)
        if found is None:
            raise errors.ValidationFailed(
                f"unknown character {name!r}",
                code="UNKNOWN_CHARACTER",
                errors=[{"path": "/character", "message": f"no character {name!r}"}],
            )
        return found.id

    # ---- turns ----------------------------------------------------------------------
    def _check_running(self) -> None:
        if self.graph is None or self.providers is None:
            raise errors.ServiceUnavailable(
                "the chat plugin is not running", code="PLUGIN_UNAVAILABLE"
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
        self._check_running()
        if not user_input.strip():
            raise errors.ValidationFailed(
                "user_input is empty", errors=[{"path": "/user_input", "message": "empty"}]
            )
        limit = self.max_input_chars
        if len(user_input) > limit:
            raise errors.ValidationFailed(
                f"user_input is longer than {limit} characters",
                errors=[{"path": "/user_input", "message": f"longer than {limit} characters"}],
            )
        requested = self.requested_character(character)
        created = False
        history: list[Message] = []
        if session_id:
            if not await self.store.owns(identity.user_id, session_id):
                raise errors.NotFound("no such session", code="SESSION_NOT_FOUND")
            turns = self.config["history_turns"]
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

    def prepare_conversation(
        self,
        identity: Identity,
        character: str,
        messages: list[dict[str, str]],
        *,
        request_id: str = "",
    ) -> Turn:
        """A turn over a conversation the client sends whole (OpenAI-style ``messages``,
        text only): ``character`` answers its last user message; nothing is stored."""
        user_input = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if not user_input.strip():
            raise errors.ValidationFailed(
                "messages need a user message with text",
                errors=[{"path": "/messages", "message": "no user message with text"}],
            )
        if sum(len(m["content"]) for m in messages) > self.max_input_chars * 4:
            raise errors.PayloadTooLarge("the conversation is too long")
        if self.graph is None:
            raise errors.ServiceUnavailable("the chat plugin is not running")
        return Turn(
            identity=identity,
            user_input=user_input,
            session_id=None,
            requested=character,
            request_id=request_id,
            client_messages=messages,
        )

    def launch(self, turn: Turn) -> asyncio.Task[Turn]:
        """Run a turn as its own task: it finishes (and is stored) even if the client leaves."""
        self._check_running()
        assert self.graph is not None
        self.graph.begin(turn)
        task = asyncio.create_task(self.graph.run(turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- one-shot completions (the "llm" service) -----------------------------------
    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        provider: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        identity: Identity | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> str:
        """``sdk.services.LLMService``: one completion from a configured provider (the
        default one unless named); the usage counts against ``identity``. ``json_schema``
        goes to providers that take it (see ``ProviderRegistry.complete``)."""
        if self.providers is None:
            raise errors.ServiceUnavailable(
                "the chat plugin is not running", code="PROVIDER_UNAVAILABLE"
            )
        name = provider or self.default_provider
        result = await self.providers.complete(
            [(name, None)],
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            json_schema=json_schema,
        )
        await self.publisher.usage(
            identity,
            result.usage,
            provider=result.provider or name,
            model=result.model,
            character=None,
        )
        return result.content

    # ---- sessions -------------------------------------------------------------------
    async def session(self, user_id: str, session_id: str) -> dict[str, Any]:
        found = await self.store.get_session(user_id, session_id)
        if found is None:
            raise errors.NotFound("no such session", code="SESSION_NOT_FOUND")
        return found

    async def sessions(self, user_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        return await self.store.list_sessions(user_id, limit, offset)

    async def history(
        self, user_id: str, session_id: str, *, limit: int, before: str | None
    ) -> list[Message]:
        """Messages of a session, oldest first; ``before``: only those before that message."""
        await self.session(user_id, session_id)
        before_seq = None
        if before:
            before_seq = await self.store.message_seq(user_id, session_id, before)
            if before_seq is None:
                raise errors.ValidationFailed(
                    "before must be a message_id of this session",
                    errors=[{"path": "/before", "message": "unknown message_id"}],
                )
        return await self.store.history(user_id, session_id, limit=limit, before_seq=before_seq)

    async def rename_session(self, user_id: str, session_id: str, title: str) -> dict[str, Any]:
        # one line, as lists show it: runs of whitespace (newlines included) become a space
        clean = " ".join(title.split())
        if not clean or len(clean) > MAX_TITLE:
            raise errors.ValidationFailed(
                f"title must have 1 to {MAX_TITLE} characters besides spaces",
                errors=[{"path": "/title", "message": f"1 to {MAX_TITLE} characters"}],
            )
        renamed = await self.store.rename_session(user_id, session_id, clean)
        if renamed is None:
            raise errors.NotFound("no such session", code="SESSION_NOT_FOUND")
        return renamed

    async def delete_session(self, user_id: str, session_id: str) -> None:
        if not await self.store.delete_session(user_id, session_id):
            raise errors.NotFound("no such session", code="SESSION_NOT_FOUND")
        await self.publisher.session_deleted(user_id, session_id)

    async def delete_user(self, user_id: str) -> int:
        """Erase every session of a deleted user; returns how many."""
        return await self.store.delete_user(user_id)
