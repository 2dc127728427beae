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
from datetime import UTC, datetime, timedelta
from typing import Any

from sdk import EventBus, Health, Identity, LLMProvider, ToolRegistry, errors
from sdk.errors import Problem
from sdk.hooks import HookCaller
from sdk.llm import provider_class_problem
from sdk.plugin import ServerView

from .cards import fill_macros
from .character_set import CharacterSet
from .characters import Character, find_character, load_characters
from .graph import ConversationGraph, Emit, Turn
from .metrics import ChatMetrics
from .providers.registry import ProviderRegistry
from .publisher import Publisher
from .store import MAX_TITLE, CharacterStore, ChatStore, Message, iso, new_id, now
from .turn_taking import TurnTaking

log = logging.getLogger("llmmultichat.chat")

# the provider recorded for a character's greeting (said, not generated)
GREETING = "greeting"

# a resend with the same client_message_id within this time answers with the stored turn
REPLAY_WINDOW_SECONDS = 24 * 3600
MAX_CLIENT_MESSAGE_ID = 64


def check_client_message_id(value: Any) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_MESSAGE_ID:
        raise errors.ValidationFailed(
            f"client_message_id must be a string of 1 to {MAX_CLIENT_MESSAGE_ID} characters",
            errors=[{"path": "/client_message_id", "message": "1 to 64 characters"}],
        )


def turn_in_progress() -> Problem:
    return errors.Conflict(
        "a turn with this client_message_id is still running; its replies come with it",
        code="TURN_IN_PROGRESS",
    )


def reply_public(m: Message) -> dict[str, Any]:
    return {
        "message_id": m.message_id,
        "character": m.character or "",
        "content": m.content,
        "created_at": iso(m.created_at),
        "usage": m.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "status": m.status,
    }


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
        character_store: CharacterStore,
        shared_database: bool = False,
        server: ServerView | None = None,
    ) -> None:
        self.config = config
        # where failed provider calls are recorded (their plugin's history, /health)
        self.server = server
        self.metrics = metrics
        self.store = store
        self.hooks = hooks
        self.tools = tools
        self.log = logger
        self.publisher = Publisher(bus, logger)
        self.default_provider: str = config["default_provider"]
        self.max_input_chars: int = config["max_input_chars"]
        self.charset = CharacterSet(
            character_store, default_provider=self.default_provider, shared=shared_database
        )
        self.providers: ProviderRegistry | None = None
        self.graph: ConversationGraph | None = None
        self._tasks: set[asyncio.Task[Turn]] = set()

    # ---- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self.store.start()
        types, owners = await self._provider_types()
        self.providers = ProviderRegistry(
            dict(cfg["providers"]),
            types,
            timeout=float(cfg["request_timeout_seconds"]),
            max_retries=cfg["max_retries"],
            retry_backoff=float(cfg["retry_backoff_seconds"]),
            default_provider=self.default_provider,
            metrics=self.metrics,
            owners=owners,
            server=self.server,
        )
        await self.providers.start()
        system = load_characters(
            dict(cfg["characters"]),
            await self._registered_characters(),
            self.default_provider,
            self.log,
        )
        await self.charset.load(system)
        seed = cfg.get("seed")
        self.graph = ConversationGraph(
            characters=system,
            names=self.charset.name_of,
            turn_taking=TurnTaking(
                system,
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
            if pending:  # each stores what it had streamed, as stopped
                await asyncio.wait(pending, timeout=5)
        await self.store.stop()
        if self.providers is not None:
            await self.providers.close()

    async def _provider_types(self) -> tuple[dict[str, type[LLMProvider]], dict[str, str]]:
        """Every provider type, ours included, from ``register_llm_providers`` (the kernel
        has already failed a plugin whose answer is not a list of provider classes), and
        the plugin that registered each (errors, logs and history name it)."""
        types: dict[str, type[LLMProvider]] = {}
        owners: dict[str, str] = {}
        for plugin, contributed in await self.hooks.results("register_llm_providers"):
            for cls in contributed:
                if provider_class_problem(cls) is None and cls.type not in types:
                    types[cls.type] = cls
                    owners[cls.type] = plugin
        return types, owners

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
        shared = {cid: c for cid, c in self.characters.items() if c.scope != "private"}
        for name, _ in (p for c in shared.values() for p in c.chain(self.default_provider)):
            if name not in providers:
                down.setdefault(name, f"no provider {name!r} is configured")
        checks: dict[str, Any] = {"providers": self.providers.checks()}
        problems: list[str] = []
        stranded: list[str] = []
        used: set[str] = set()
        for c in shared.values():
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
        if not shared:
            return Health("unavailable", "no character is configured", checks)
        if len(stranded) == len(shared):
            return Health("unavailable", "; ".join(problems), checks)
        if problems:
            return Health("degraded", "; ".join(problems), checks)
        return Health(status="ok", checks=checks)

    # ---- characters -----------------------------------------------------------------
    @property
    def characters(self) -> dict[str, Character]:
        """Every character in use (of every scope; a user sees :meth:`visible`)."""
        return self.charset.active

    async def visible(self, identity: Identity | None) -> dict[str, Character]:
        """The characters this caller can see, after making sure the set is current."""
        await self.charset.fresh()
        return self.charset.visible(identity.user_id if identity is not None else None)

    def public(self, char: Character) -> dict[str, Any]:
        providers = self.providers.providers if self.providers else {}
        return char.public(self.default_provider, providers)

    async def public_characters(self, identity: Identity | None) -> list[dict[str, Any]]:
        return [self.public(c) for c in (await self.visible(identity)).values()]

    def requested_character(
        self, name: str | None, visible: dict[str, Character] | None = None
    ) -> str | None:
        """The id of the character a request names (id, display name or alias) among
        those the caller can see; None when it names none; 422 ``UNKNOWN_CHARACTER``
        when nobody it can see has that name."""
        if not name:
            return None
        found = find_character(visible if visible is not None else self.characters, name)
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

    def _check_input(self, text: str, path: str) -> None:
        if not text.strip():
            raise errors.ValidationFailed(
                f"{path} is empty", errors=[{"path": f"/{path}", "message": "empty"}]
            )
        limit = self.max_input_chars
        if len(text) > limit:
            raise errors.ValidationFailed(
                f"{path} is longer than {limit} characters",
                errors=[{"path": f"/{path}", "message": f"longer than {limit} characters"}],
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
        client_message_id: str | None = None,
    ) -> tuple[Turn, bool]:
        """Check the request, load what the graph needs and accept the turn: the user's
        message is stored before any reply is asked for. Returns (turn, created).

        With ``client_message_id``, a turn the user already sent with that id (within
        24 hours) is refused with 409 ``TURN_IN_PROGRESS``; call :meth:`replay` first to
        answer a finished one."""
        self._check_running()
        self._check_input(user_input, "user_input")
        if client_message_id is not None:
            check_client_message_id(client_message_id)
        visible = await self.visible(identity)
        requested = self.requested_character(character, visible)
        if client_message_id is not None:
            resumed = await self._resume_lost(
                identity,
                client_message_id,
                requested=requested,
                visible=visible,
                request_id=request_id,
            )
            if resumed is not None:
                if emit is not None:
                    resumed.emit = emit
                return resumed, False
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
        if created and requested is not None and visible[requested].greeting:
            # a new conversation with a character that has a greeting starts with it
            greeting = self._greeting(visible[requested], identity, session_id)
            await self.store.add_messages(identity.user_id, [greeting])
            history = [greeting]
        recent = [
            m.character
            for m in history
            if m.role == "assistant" and m.character and m.content and m.provider != GREETING
        ]
        last = next((m for m in reversed(history) if m.role == "assistant"), None)
        if (
            requested is None
            and last is not None
            and last.provider == GREETING
            and last.character in visible
            and self.graph is not None
            and not self.graph.turn_taking.among(visible).named(user_input)
        ):
            requested = last.character  # the answer to a greeting goes to who greeted
        user_message = Message(
            message_id=new_id("msg"), session_id=session_id, role="user", content=user_input
        )
        if client_message_id is None:
            await self.store.add_messages(identity.user_id, [user_message])
        elif not await self.store.accept_turn(
            identity.user_id, client_message_id, user_message, self._replay_cutoff()
        ):
            if created:
                await self.store.delete_session(identity.user_id, session_id)
            raise turn_in_progress()
        await self.publisher.message(identity, user_message)
        turn = Turn(
            identity=identity,
            user_input=user_input,
            session_id=session_id,
            requested=requested,
            request_id=request_id,
            history=history,
            recent=recent,
            reply_to=user_message.message_id,
            client_message_id=client_message_id,
            characters=visible,
        )
        if emit is not None:
            turn.emit = emit
        return turn, created

    @staticmethod
    def _greeting(char: Character, identity: Identity, session_id: str) -> Message:
        return Message(
            message_id=new_id("msg"),
            session_id=session_id,
            role="assistant",
            content=fill_macros(char.greeting, char.name, identity.username or "User"),
            character=char.id,
            usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            provider=GREETING,
        )

    # ---- a resent turn (client_message_id) ------------------------------------------
    @staticmethod
    def _replay_cutoff() -> datetime:
        return datetime.now(UTC) - timedelta(seconds=REPLAY_WINDOW_SECONDS)

    def _stale_after(self) -> float:
        """Seconds after which a turn still marked running is taken for lost (its process
        died): the longest a turn can take, with a margin."""
        cfg = self.config
        per_reply = float(cfg["request_timeout_seconds"]) * (int(cfg["max_tool_rounds"]) + 1)
        return per_reply * max(1, int(cfg["max_speakers"])) + 5.0

    async def replay(
        self, identity: Identity, client_message_id: str | None
    ) -> dict[str, Any] | None:
        """The stored answer of a turn the user already sent with this id (within 24 h):
        ``{session_id, response, character, timestamp, replies, replayed}``; None when
        there is none; 409 ``TURN_IN_PROGRESS`` while it still runs."""
        if client_message_id is None:
            return None
        check_client_message_id(client_message_id)
        self._check_running()
        found = await self.store.find_turn(
            identity.user_id, client_message_id, self._replay_cutoff()
        )
        if found is None:
            return None
        if found["state"] == "running" and not self._lost(found):
            raise turn_in_progress()
        replies = await self.store.replies_to(
            identity.user_id, found["session_id"], found["message_id"]
        )
        if not replies and found["state"] == "running":
            return None  # lost before any reply: prepare_turn answers the stored message
        return self.answer(found["session_id"], [reply_public(m) for m in replies], replayed=True)

    def _lost(self, found: dict[str, Any]) -> bool:
        """A turn still marked running long after it could have ended: its process died."""
        updated = found["updated_at"]
        if updated.tzinfo is None:
            updated = updated.replace(tzinfo=UTC)
        age: float = (datetime.now(UTC) - updated).total_seconds()
        return age >= self._stale_after()

    async def _resume_lost(
        self,
        identity: Identity,
        client_message_id: str,
        *,
        requested: str | None,
        visible: dict[str, Character],
        request_id: str,
    ) -> Turn | None:
        """A resent turn whose process died before any reply (kill -9 mid-reply): its
        stored user message is answered now, once (the first resend claims it)."""
        uid = identity.user_id
        found = await self.store.find_turn(uid, client_message_id, self._replay_cutoff())
        if found is None or found["state"] != "running" or not self._lost(found):
            return None
        if not await self.store.claim_turn(uid, client_message_id, found["updated_at"]):
            raise turn_in_progress()
        message = await self.store.get_message(uid, found["message_id"])
        if message is None:  # its session was deleted meanwhile
            await self.store.finish_turn(uid, client_message_id, "failed")
            raise errors.NotFound("no such session", code="SESSION_NOT_FOUND")
        history = await self.store.before(uid, message, self._history_limit())
        return Turn(
            identity=identity,
            user_input=message.content,
            session_id=message.session_id,
            requested=requested,
            request_id=request_id,
            history=history,
            recent=[m.character for m in history if m.role == "assistant" and m.character],
            reply_to=message.message_id,
            client_message_id=client_message_id,
            characters=visible,
        )

    @staticmethod
    def answer(
        session_id: str | None, replies: list[dict[str, Any]], *, replayed: bool = False
    ) -> dict[str, Any]:
        """The body of ``POST /api/v1/chat`` (and of regenerate, edit and continue)."""
        first = replies[0] if replies else {"content": "", "character": ""}
        out = {
            "session_id": session_id,
            "response": first["content"],
            "character": first["character"],
            "timestamp": iso(now()),
            "replies": replies,
        }
        if replayed:
            out["replayed"] = True
        return out

    # ---- regenerate, edit, continue, select ---------------------------------------
    async def _reply_of(self, identity: Identity, message_id: str) -> Message:
        found = await self.store.get_message(identity.user_id, message_id)
        if found is None:
            raise errors.NotFound("no such message", code="MESSAGE_NOT_FOUND")
        if found.role != "assistant" or found.tool_calls or found.part_of:
            raise errors.ValidationFailed(
                "that message is not a character's reply",
                code="NOT_A_REPLY",
                errors=[{"path": "/message_id", "message": "not a reply"}],
            )
        return found

    def _speaker(
        self, character: str | None, fallback: str | None, visible: dict[str, Character]
    ) -> str:
        requested = self.requested_character(character, visible)
        if requested is not None:
            return requested
        if fallback and fallback in visible:
            return fallback
        raise errors.ValidationFailed(
            f"the character {fallback!r} no longer exists; name one in 'character'",
            code="UNKNOWN_CHARACTER",
            errors=[{"path": "/character", "message": "name a character"}],
        )

    def _history_limit(self) -> int:
        return int(self.config["history_turns"]) * 3

    async def prepare_regenerate(
        self,
        identity: Identity,
        message_id: str,
        *,
        character: str | None = None,
        request_id: str = "",
    ) -> Turn:
        """A new reply to the user message a reply answered; the earlier replies stay as
        its alternatives."""
        self._check_running()
        target = await self._reply_of(identity, message_id)
        uid = identity.user_id
        user_message = None
        if target.reply_to:
            user_message = await self.store.get_message(uid, target.reply_to)
        if user_message is None:  # a reply stored before replies named their message
            earlier_msgs = await self.store.before(uid, target, 50)
            user_message = next((m for m in reversed(earlier_msgs) if m.role == "user"), None)
        if user_message is None:
            raise errors.Conflict(
                "this reply answers no stored user message", code="NOTHING_TO_REGENERATE"
            )
        visible = await self.visible(identity)
        speaker = self._speaker(character, target.character, visible)
        history = await self.store.before(uid, user_message, self._history_limit())
        same_turn = await self.store.replies_to(uid, target.session_id, user_message.message_id)
        earlier = [
            m
            for m in same_turn
            if (m.pos, m.seq) < (target.pos, target.seq) and m.group != target.group
        ]
        return Turn(
            identity=identity,
            user_input=user_message.content,
            session_id=target.session_id,
            requested=speaker,
            request_id=request_id,
            history=history,
            recent=[],
            reply_to=user_message.message_id,
            alt_group=target.group,
            alt_pos=target.pos,
            earlier=earlier,
            characters=visible,
        )

    async def prepare_edit(
        self, identity: Identity, message_id: str, content: str, *, request_id: str = ""
    ) -> Turn:
        """Edit a user message, drop what came after it, and answer it again."""
        self._check_running()
        self._check_input(content, "content")
        uid = identity.user_id
        found = await self.store.get_message(uid, message_id)
        if found is None:
            raise errors.NotFound("no such message", code="MESSAGE_NOT_FOUND")
        if found.role != "user":
            raise errors.ValidationFailed(
                "only a user message can be edited",
                code="NOT_A_USER_MESSAGE",
                errors=[{"path": "/message_id", "message": "not a user message"}],
            )
        await self.store.edit_and_truncate(uid, found, content)
        history = await self.store.before(uid, found, self._history_limit())
        recent = [
            m.character for m in history if m.role == "assistant" and m.character and m.content
        ]
        return Turn(
            identity=identity,
            user_input=content,
            session_id=found.session_id,
            request_id=request_id,
            history=history,
            recent=recent,
            reply_to=found.message_id,
            characters=await self.visible(identity),
        )

    async def prepare_continue(
        self,
        identity: Identity,
        session_id: str,
        *,
        character: str | None = None,
        request_id: str = "",
    ) -> Turn:
        """The character goes on from the end of its last reply in the session."""
        self._check_running()
        uid = identity.user_id
        await self.session(uid, session_id)
        visible = await self.visible(identity)
        wanted = self.requested_character(character, visible)
        recent = await self.store.history(uid, session_id, limit=200)
        target = next(
            (
                m
                for m in reversed(recent)
                if m.role == "assistant"
                and not m.tool_calls
                and not m.part_of
                and (wanted is None or m.character == wanted)
            ),
            None,
        )
        if target is None:
            raise errors.Conflict(
                "there is no reply to continue" + (f" by {character!r}" if character else ""),
                code="NOTHING_TO_CONTINUE",
            )
        speaker = self._speaker(None, target.character, visible)
        history = await self.store.before(uid, target, self._history_limit())
        return Turn(
            identity=identity,
            user_input="",
            session_id=session_id,
            requested=speaker,
            request_id=request_id,
            history=[*history, target],
            recent=[],
            reply_to=target.reply_to,
            continue_of=target,
            characters=visible,
        )

    async def select(self, identity: Identity, message_id: str) -> dict[str, Any]:
        """Make a reply the shown one of its alternatives; the reply as history shows it."""
        target = await self._reply_of(identity, message_id)
        await self.store.select_alternative(identity.user_id, target)
        shown = await self.store.get_message(identity.user_id, message_id)
        assert shown is not None
        return shown.public()

    async def delete_message(self, identity: Identity, message_id: str) -> None:
        """Delete a user message (with the replies that answered it) or a reply."""
        found = await self.store.get_message(identity.user_id, message_id)
        if found is None:
            raise errors.NotFound("no such message", code="MESSAGE_NOT_FOUND")
        if found.role == "tool" or found.tool_calls or found.part_of:
            raise errors.ValidationFailed(
                "a tool round is deleted with the reply it belongs to",
                code="NOT_DELETABLE",
                errors=[{"path": "/message_id", "message": "a tool round"}],
            )
        await self.store.delete_message(identity.user_id, found)

    async def persona(self, identity: Identity) -> dict[str, str]:
        return await self.store.persona(identity.user_id)

    async def set_persona(self, identity: Identity, body: dict[str, Any]) -> dict[str, str]:
        """Change the fields given (kept on their own otherwise), stripped of outer space."""
        current = await self.store.persona(identity.user_id)
        name = " ".join(str(body.get("name", current["name"])).split())
        description = str(body.get("description", current["description"])).strip()
        return await self.store.set_persona(identity.user_id, name, description)

    async def export(
        self, identity: Identity, session_id: str
    ) -> tuple[dict[str, Any], list[Message]]:
        session = await self.session(identity.user_id, session_id)
        messages = await self.store.history(identity.user_id, session_id, limit=1_000_000)
        return session, messages

    def character_name(self, char_id: str | None) -> str:
        """A character's name, also once it is deleted (its messages keep it)."""
        return self.charset.name_of(char_id)

    def prepare_conversation(
        self,
        identity: Identity,
        character: str,
        messages: list[dict[str, str]],
        *,
        request_id: str = "",
        characters: dict[str, Character] | None = None,
    ) -> Turn:
        """A turn over a conversation the client sends whole (OpenAI-style ``messages``,
        text only): ``character`` (one of ``characters``, those the caller can see)
        answers its last user message; nothing is stored."""
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
            characters=characters if characters is not None else {},
        )

    def launch(self, turn: Turn) -> asyncio.Task[Turn]:
        """Run a turn as its own task: it finishes (and is stored) even if the client leaves."""
        self._check_running()
        assert self.graph is not None
        self.graph.begin(turn)
        task = asyncio.create_task(self._run(turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, turn: Turn) -> Turn:
        assert self.graph is not None
        try:
            return await self.graph.run(turn)
        finally:
            if turn.client_message_id is not None:
                await asyncio.shield(self._finish(turn))

    async def _finish(self, turn: Turn) -> None:
        assert turn.client_message_id is not None
        try:
            await self.store.finish_turn(turn.identity.user_id, turn.client_message_id, turn.status)
        except Exception as exc:  # the turn is stored; a stale mark only delays a resend
            self.log.warning("could not mark a turn finished: %s", exc)

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
            actor_id=identity.user_id if identity is not None else None,
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

    async def new_session(
        self, identity: Identity, character: str | None, title: str | None
    ) -> dict[str, Any]:
        """An empty session; with ``character``, one its greeting (if it has one) opens."""
        self._check_running()
        visible = await self.visible(identity)
        requested = self.requested_character(character, visible)
        clean = " ".join((title or "").split())[:MAX_TITLE]
        if not clean and requested is not None:
            clean = visible[requested].name
        session = await self.store.create_session(identity.user_id, clean)
        messages: list[Message] = []
        if requested is not None and visible[requested].greeting:
            greeting = self._greeting(visible[requested], identity, session["session_id"])
            await self.store.add_messages(identity.user_id, [greeting])
            messages.append(greeting)
        found = await self.session(identity.user_id, session["session_id"])
        return {**found, "messages": [m.public() for m in messages]}

    async def sessions(self, user_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        return await self.store.list_sessions(user_id, limit, offset)

    async def history(
        self, user_id: str, session_id: str, *, limit: int, before: str | None
    ) -> list[Message]:
        """Messages of a session, oldest first; ``before``: only those before that message."""
        await self.session(user_id, session_id)
        anchor = None
        if before:
            anchor = await self.store.get_session_message(user_id, session_id, before)
            if anchor is None:
                raise errors.ValidationFailed(
                    "before must be a message_id of this session",
                    errors=[{"path": "/before", "message": "unknown message_id"}],
                )
        return await self.store.history(user_id, session_id, limit=limit, before=anchor)

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
