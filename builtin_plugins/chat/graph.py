"""The conversation graph (LangGraph):

    route → memory → speak ⇄ tools → persist → (next speaker: speak) → END

``route`` picks the speakers, ``memory`` asks the ``memory_context`` hook for context,
``speak`` streams one character's reply from its provider chain (tokens go out through
the turn's ``emit`` callback as they arrive), ``tools`` runs the function calls the
model asked for and feeds results (or failures) back to ``speak``, and ``persist`` stores
the reply (with its tool calls) and publishes the events. Later speakers see the earlier
replies of the same turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from sdk import Identity, ToolCall, ToolCallRequest, ToolRegistry, Usage, errors
from sdk.hooks import HookCaller
from sdk.untrusted import repair_text

from .characters import Character, normalize
from .metrics import ChatMetrics
from .publisher import Publisher
from .store import ChatStore, Message, iso, new_id, now
from .turn_taking import TurnTaking

if TYPE_CHECKING:
    from .providers.registry import ProviderRegistry

log = logging.getLogger("llmmultichat.chat")

Emit = Callable[[dict[str, Any]], Awaitable[None]]

CONTINUE_INSTRUCTION = (
    "(Continue your last reply exactly where it stopped, as its next words. Do not repeat "
    "anything you already wrote and do not start over.)"
)


async def _no_emit(event: dict[str, Any]) -> None:
    return None


@dataclass(slots=True)
class Turn:
    """Everything one user message needs, handed to the graph's nodes through the config."""

    identity: Identity
    user_input: str
    session_id: str | None = None  # None: not stored (the OpenAI-compatible door)
    requested: str | None = None
    emit: Emit = _no_emit
    request_id: str = ""
    history: list[Message] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    # For the /v1 door: the client's own messages replace stored history and user input.
    client_messages: list[dict[str, Any]] | None = None
    user_message: Message | None = None
    replies: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    pending_store: list[Message] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    # the memory_context hook's answer, asked for as the turn starts (see run)
    memory_task: asyncio.Task[list[dict[str, Any]]] | None = None
    # the reply being spoken: its usage over tool rounds, and who served it
    current_usage: Usage = field(default_factory=Usage)
    current_provider: str = ""
    current_model: str = ""
    # the user message the replies answer (stored when the turn was accepted)
    reply_to: str | None = None
    client_message_id: str | None = None
    # regenerate: the group of alternatives the reply joins and the place it takes
    alt_group: str | None = None
    alt_pos: int = 0
    # replies of the same turn before the one regenerated (the speaker saw them)
    earlier: list[Message] = field(default_factory=list)
    # continue: the reply that grows
    continue_of: Message | None = None
    # the speaker now streaming and the text it has streamed so far (kept when the turn
    # is stopped or fails)
    speaking: str | None = None
    partial: list[str] = field(default_factory=list)
    partial_prompt_chars: int = 0
    round_streamed: int = 0  # characters streamed by the provider call in progress
    status: str = "complete"
    # the characters this turn's user can see (and so nominate and hear)
    characters: dict[str, Character] = field(default_factory=dict)
    # the user's persona {name, description} (read as the turn starts)
    user_persona: dict[str, str] | None = None

    def where(self) -> dict[str, Any]:
        """Where a turn that failed left its messages: the session, the user message and
        the stored (failed or stopped) reply, for the error a client gets."""
        out: dict[str, Any] = {}
        if self.session_id is not None:
            out["session_id"] = self.session_id
            if self.reply_to:
                out["user_message_id"] = self.reply_to
            if self.replies:
                out["message_id"] = self.replies[-1]["message_id"]
        return out


def user_persona_line(persona: dict[str, str] | None) -> str:
    """The system line that tells a character who the user is ("" when nothing is set)."""
    if not persona:
        return ""
    name, about = persona.get("name", "").strip(), persona.get("description", "").strip()
    called = f"The user is called {name}" + ("" if name[-1:] in (".", "!", "?") else ".")
    if name and about:
        return f"{called} About them: {about}"
    if name:
        return called
    return f"About the user: {about}" if about else ""


class _TurnHolder:
    """The turn, as the graph's config carries it. LangGraph keeps its config in a
    context variable, and every timer started during the run (an HTTP client's timeouts,
    up to minutes) keeps that context until it would have fired, even once cancelled.
    Held directly, the turn (its history, its replies and, through ``emit``, the
    WebSocket or SSE response with its buffers) outlived the request by that long; the
    holder is emptied when the run ends."""

    __slots__ = ("turn",)

    def __init__(self, turn: Turn) -> None:
        self.turn: Turn | None = turn


def _turn_of(config: RunnableConfig) -> Turn:
    turn = config["configurable"]["turn"].turn
    assert turn is not None, "a node ran after its turn ended"
    return turn


class State(TypedDict, total=False):
    speakers: list[str]
    index: int
    rounds: int
    working: list[dict[str, Any]]  # this speaker's tool-call round trips so far
    tool_calls: list[dict[str, Any]]  # calls asked for in the last speak
    text: str  # this speaker's text so far (over tool rounds)


class SpeakerGuard:
    """Cuts a reply where the model starts writing another participant's lines
    ("Claris: ...", "User: ...") and drops a leading "Lumina:" of its own name."""

    def __init__(self, own: list[str], others: list[str]) -> None:
        def alternation(names: list[str]) -> str:
            names = sorted({normalize(n) for n in names if n.strip()}, key=len, reverse=True)
            return "|".join(re.escape(n) for n in names)

        self.own = re.compile(rf"^\s*[*_\[]*(?:{alternation(own)})[*_\]]*\s*[:：]\s*")
        other_alt = alternation(others)
        self.other = (
            re.compile(rf"^\s*[*_\[]*(?:{other_alt})[*_\]]*\s*[:：]") if other_alt else None
        )
        self.hold = max([len(n) for n in own + others] + [4]) + 6
        self.buf = ""
        self.line_start = True
        self.first_line = True
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.buf += text
        out: list[str] = []
        while self.buf and not self.stopped:
            if not self.line_start:
                nl = self.buf.find("\n")
                if nl < 0:
                    out.append(self.buf)
                    self.buf = ""
                else:
                    out.append(self.buf[: nl + 1])
                    self.buf = self.buf[nl + 1 :]
                    self.line_start = True
                continue
            probe = normalize(self.buf)
            decided = (
                "\n" in self.buf
                or len(probe.strip()) >= self.hold
                or bool(re.search("[:：]", probe))
            )
            if not decided:
                break
            if self.other is not None and self.other.match(probe):
                self.stopped = True
                self.buf = ""
                break
            if self.first_line:
                m = self.own.match(probe)
                if m and len(m.group(0)) <= len(self.buf):
                    self.buf = self.buf[len(m.group(0)) :]
            self.first_line = False
            self.line_start = False
        return "".join(out)

    def flush(self) -> str:
        if self.stopped or not self.buf:
            return ""
        probe = normalize(self.buf)
        if self.line_start and self.other is not None and self.other.match(probe):
            return ""
        text = self.buf
        if self.line_start and self.first_line:
            m = self.own.match(probe)
            if m:
                text = text[len(m.group(0)) :]
        self.buf = ""
        return text


def _public(reply: Message, usage: Usage) -> dict[str, Any]:
    """A reply as chat answers show it (``usage``: this generation's)."""
    return {
        "message_id": reply.message_id,
        "character": reply.character or "",
        "content": reply.content,
        "created_at": iso(reply.created_at),
        "usage": usage.to_dict(),
        "status": reply.status,
    }


def _tool_result_text(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, default=str)[:16000]


class ConversationGraph:
    """The turn's state machine over the parts it uses, each handed in by the chat service."""

    def __init__(
        self,
        *,
        characters: dict[str, Character],
        turn_taking: TurnTaking,
        providers: ProviderRegistry,
        store: ChatStore,
        publisher: Publisher,
        tools: ToolRegistry,
        hooks: HookCaller,
        default_provider: str,
        max_tool_rounds: int,
        memory_max_tokens: int | None,
        metrics: ChatMetrics,
        names: Callable[[str | None], str] | None = None,
    ) -> None:
        # every character (a turn uses the ones its user can see: Turn.characters)
        self.characters = characters
        self.names = names
        self.metrics = metrics
        self.turn_taking = turn_taking
        self.providers = providers
        self.store = store
        self.publisher = publisher
        self.tool_registry = tools
        self.hooks = hooks
        self.default_provider = default_provider
        self.max_tool_rounds = max_tool_rounds
        # None: the memory_context hook is not asked
        self.memory_max_tokens = memory_max_tokens
        graph = StateGraph(State)
        graph.add_node("route", self.route)
        graph.add_node("speak", self.speak)
        graph.add_node("tools", self.tools)
        graph.add_node("persist", self.persist)
        graph.add_edge(START, "route")
        graph.add_conditional_edges("route", self._after_route, ["speak", END])
        graph.add_conditional_edges("speak", self._after_speak, ["tools", "persist"])
        graph.add_edge("tools", "speak")
        graph.add_conditional_edges("persist", self._after_persist, ["speak", END])
        self.compiled = graph.compile()

    def begin(self, turn: Turn) -> None:
        """Ask for memory's context now: it (an embedding of the message, a search) does
        not depend on who speaks, so it is worked out while the graph gets going. Call it
        before the task that runs the turn is created, so the context's first steps (up to
        the embedding's thread) run before the graph's own set-up (about a millisecond)."""
        if turn.memory_task is None and self._memory_wanted():
            turn.memory_task = asyncio.create_task(self._memory_context(turn))

    async def run(self, turn: Turn) -> Turn:
        self.begin(turn)  # (a no-op when the caller did, as ChatService.launch does)
        if turn.user_persona is None:
            turn.user_persona = await self.store.persona(turn.identity.user_id)
        holder = _TurnHolder(turn)
        try:
            await self.compiled.ainvoke(
                {
                    "speakers": [],
                    "index": 0,
                    "rounds": 0,
                    "working": [],
                    "tool_calls": [],
                    "text": "",
                },
                config={"configurable": {"turn": holder}, "recursion_limit": 200},
            )
        except asyncio.CancelledError:
            turn.status = "stopped"
            await asyncio.shield(self._keep_unfinished(turn, "stopped"))
            raise
        except Exception:
            turn.status = "failed"
            await asyncio.shield(self._keep_unfinished(turn, "failed"))
            raise
        finally:
            holder.turn = None
            if turn.memory_task is not None and not turn.memory_task.done():
                turn.memory_task.cancel()  # no speaker, or the turn was cancelled
        return turn

    async def _keep_unfinished(self, turn: Turn, status: str) -> None:
        """A turn stopped or failed while a character was speaking: its reply is stored
        with what it had streamed and ``status``, and the generation counts as usage
        (estimated from the text when the upstream never said)."""
        char_id, turn.speaking = turn.speaking, None
        if char_id is None:
            return
        text = "".join(turn.partial)
        usage = turn.current_usage
        if status == "stopped" or turn.round_streamed:
            # the cut stream never reported its usage: count an estimate (4 chars a token)
            cut = Usage(
                prompt_tokens=max(1, turn.partial_prompt_chars // 4),
                completion_tokens=(turn.round_streamed + 3) // 4,
                estimated=True,
            )
            usage.add(cut)
            try:
                await self.publisher.usage(
                    turn.identity,
                    cut,
                    provider=turn.current_provider,
                    model=turn.current_model,
                    character=char_id,
                )
            except Exception:  # usage is best effort here: the reply is what matters
                log.warning("could not count the usage of an unfinished reply")
        if turn.session_id is None:
            return
        try:
            reply = self._reply_message(turn, char_id, text, usage, status)
            await self._store_reply(turn, reply)
            turn.replies.append(_public(reply, usage))
        except Exception:
            log.exception("could not store an unfinished reply")

    def _characters(self, turn: Turn) -> dict[str, Character]:
        return turn.characters or self.characters

    def name_of(self, char_id: str | None) -> str:
        return self.names(char_id) if self.names is not None else (char_id or "")

    # ---- edges ----------------------------------------------------------------------
    # (async, so LangGraph runs them inline instead of in a thread)
    async def _after_route(self, state: State) -> str:
        return "speak" if state.get("speakers") else END

    def _memory_wanted(self) -> bool:
        """Ask for memory context only when enabled and some running plugin provides it."""
        return self.memory_max_tokens is not None and self.hooks.has("memory_context")

    async def _after_speak(self, state: State) -> str:
        return "tools" if state.get("tool_calls") else "persist"

    @staticmethod
    async def _after_persist(state: State) -> str:
        return "speak" if state.get("index", 0) < len(state.get("speakers") or []) else END

    # ---- nodes ----------------------------------------------------------------------
    async def route(self, state: State, config: RunnableConfig) -> State:
        turn = _turn_of(config)
        speakers = self.turn_taking.among(self._characters(turn)).choose(
            turn.user_input, requested=turn.requested, recent=turn.recent
        )
        if not speakers:
            raise errors.ServiceUnavailable("no character is configured", code="NO_CHARACTERS")
        return {"speakers": speakers, "index": 0}

    async def _take_memory(self, turn: Turn) -> None:
        """Memory's context into the turn's prompt, once: the task ``run`` started (not a
        node of its own: each node costs LangGraph about a millisecond of bookkeeping)."""
        task, turn.memory_task = turn.memory_task, None
        if task is not None:
            turn.memory.extend(await task)

    async def _memory_context(self, turn: Turn) -> list[dict[str, Any]]:
        try:
            found = await self.hooks.call(
                "memory_context",
                identity=turn.identity,
                session_id=turn.session_id,
                query=turn.user_input,
                max_tokens=self.memory_max_tokens,
            )
        except Exception as exc:  # memory is an extra: chat goes on without it
            log.warning("memory_context failed: %s", exc)
            found = []
        return [
            i
            for items in found
            if isinstance(items, list)
            for i in items
            if isinstance(i, dict) and i.get("content")
        ]

    async def speak(self, state: State, config: RunnableConfig) -> State:
        turn = _turn_of(config)
        chars = self._characters(turn)
        char = chars[state["speakers"][state["index"]]]
        rounds = state.get("rounds", 0)
        working = state.get("working") or []
        text_so_far = state.get("text", "")
        await self._take_memory(turn)
        if rounds == 0:
            turn.speaking = char.id
            turn.partial = [turn.continue_of.content] if turn.continue_of is not None else []
            await turn.emit({"type": "start", "character": char.id})
        tools = self.tools_for(char) if rounds < self.max_tool_rounds else None
        messages = self.prompt(turn, char) + working
        turn.partial_prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        turn.round_streamed = 0
        guard = SpeakerGuard(
            [char.name, char.id, *char.aliases],
            [n for c in chars.values() if c.id != char.id for n in (c.name, *c.aliases)]
            + ["User", "ユーザー"],
        )
        parts: list[str] = []
        calls: list[ToolCallRequest] = []
        usage: Usage | None = None
        provider_name, model = "", ""
        # closed as soon as this speaker is done or the turn is stopped, not when it is
        # collected: the provider's generator is closed then too (its finally blocks run)
        async with contextlib.aclosing(
            self.providers.stream(
                char.chain(self.default_provider),
                messages,
                tools=tools or None,
                max_tokens=char.max_tokens,
                temperature=char.temperature,
                actor_id=turn.identity.user_id,
            )
        ) as events:
            async for provider, used_model, event in events:
                provider_name, model = provider.name, used_model
                if event.type == "delta":
                    turn.round_streamed += len(event.text)
                    # a broken upstream may send lone surrogates: no store or socket takes them
                    piece = guard.feed(repair_text(event.text))
                    if piece and not parts and text_so_far and not text_so_far[-1].isspace():
                        piece = "\n\n" + piece  # text after a tool round starts a new paragraph
                    if piece:
                        parts.append(piece)
                        turn.partial.append(piece)
                        await turn.emit({"type": "chunk", "character": char.id, "delta": piece})
                elif event.type == "tool_call" and event.tool_call is not None:
                    calls.append(event.tool_call)
                elif event.type == "usage" and event.usage is not None:
                    usage = event.usage
        tail = guard.flush()
        if tail and not parts and text_so_far and not text_so_far[-1].isspace():
            tail = "\n\n" + tail
        if tail:
            parts.append(tail)
            turn.partial.append(tail)
            await turn.emit({"type": "chunk", "character": char.id, "delta": tail})
        usage = usage or Usage()
        turn.round_streamed = 0
        turn.usage.add(usage)
        turn.current_usage.add(usage)
        await self.publisher.usage(
            turn.identity, usage, provider=provider_name, model=model, character=char.id
        )
        turn.current_provider, turn.current_model = provider_name, model
        text = "".join(parts)
        if calls and tools:
            call_dicts = [c.to_openai() for c in calls]
            assistant = {"role": "assistant", "content": text, "tool_calls": call_dicts}
            if turn.session_id is not None:
                turn.pending_store.append(
                    Message(
                        message_id=new_id("msg"),
                        session_id=turn.session_id,
                        role="assistant",
                        content=text,
                        character=char.id,
                        tool_calls=call_dicts,
                        provider=provider_name,
                        model=model,
                        reply_to=turn.reply_to,
                    )
                )
            return {
                "working": [*working, assistant],
                "tool_calls": call_dicts,
                "rounds": rounds + 1,
                "text": text_so_far + text,
            }
        return {"tool_calls": [], "text": text_so_far + text, "working": working}

    async def tools(self, state: State, config: RunnableConfig) -> State:
        turn = _turn_of(config)
        char = self._characters(turn)[state["speakers"][state["index"]]]
        calls = state.get("tool_calls") or []

        async def run_one(call: dict[str, Any]) -> dict[str, Any]:
            name = call["function"]["name"]
            raw = call["function"].get("arguments") or "{}"
            try:
                params = json.loads(raw) if raw.strip() else {}
                if not isinstance(params, dict):
                    raise ValueError("arguments are not an object")
            except ValueError:
                return {
                    "error": {"code": "BAD_ARGUMENTS", "detail": "arguments are not a JSON object"}
                }
            if self.tool_registry.get(name) is None or not char.allows_tool(name):
                return {"error": {"code": "UNKNOWN_TOOL", "detail": f"no tool named {name!r}"}}
            try:
                return await self.tool_registry.call(
                    name, params, ToolCall(turn.identity, request_id=turn.request_id, origin="llm")
                )
            except errors.Problem as exc:
                return {"error": {"code": exc.code, "status": exc.status, "detail": exc.detail}}
            except Exception as exc:
                log.exception("tool %r failed", name)
                return {"error": {"code": "TOOL_FAILED", "detail": type(exc).__name__}}

        results = await asyncio.gather(*(run_one(c) for c in calls))
        working = list(state.get("working") or [])
        for call, result in zip(calls, results, strict=True):
            content = _tool_result_text(result)
            working.append({"role": "tool", "tool_call_id": call["id"], "content": content})
            ok = not (isinstance(result, dict) and "error" in result and len(result) == 1)
            await turn.emit(
                {
                    "type": "tool",
                    "character": char.id,
                    "name": call["function"]["name"],
                    "arguments": call["function"].get("arguments") or "{}",
                    "ok": ok,
                }
            )
            if turn.session_id is not None:
                turn.pending_store.append(
                    Message(
                        message_id=new_id("msg"),
                        session_id=turn.session_id,
                        role="tool",
                        content=content,
                        character=char.id,
                        tool_call_id=call["id"],
                        tool_name=call["function"]["name"],
                        reply_to=turn.reply_to,
                    )
                )
        return {"working": working, "tool_calls": []}

    def _reply_message(
        self, turn: Turn, char_id: str, text: str, usage: Usage, status: str
    ) -> Message:
        if turn.continue_of is not None:
            grown = turn.continue_of
            old = grown.usage or {}
            before = Usage(
                prompt_tokens=int(old.get("prompt_tokens", 0)),
                completion_tokens=int(old.get("completion_tokens", 0)),
            )
            before.add(usage)
            grown.content = text
            grown.status = status
            grown.usage = before.to_dict()
            return grown
        return Message(
            message_id=new_id("msg"),
            session_id=turn.session_id or "",
            role="assistant",
            content=text,
            character=char_id,
            usage=usage.to_dict(),
            provider=turn.current_provider or None,
            model=turn.current_model or None,
            created_at=now(),
            status=status,
            reply_to=turn.reply_to,
        )

    async def _store_reply(self, turn: Turn, reply: Message) -> None:
        """Store a reply with the tool rounds that led to it (a regenerated one as the
        shown alternative of its group; a continued one in place)."""
        assert turn.session_id is not None
        user_id = turn.identity.user_id
        rounds, turn.pending_store = turn.pending_store, []
        if turn.continue_of is not None:
            await self.store.update_reply(user_id, reply)
            return
        group = turn.alt_group or reply.message_id
        reply.alt_group = group
        for m in rounds:
            m.part_of = reply.message_id
            m.alt_group = group
        if turn.alt_group is not None:
            for m in [*rounds, reply]:
                m.pos = turn.alt_pos
                m.seq = 0
            await self.store.add_alternative(user_id, turn.session_id, group, [*rounds, reply])
        else:
            await self.store.add_messages(user_id, [*rounds, reply])
        await self.publisher.message(turn.identity, reply)

    async def persist(self, state: State, config: RunnableConfig) -> State:
        turn = _turn_of(config)
        char_id = state["speakers"][state["index"]]
        text = state.get("text", "")
        usage, turn.current_usage = turn.current_usage, Usage()
        if turn.continue_of is not None:
            text = turn.continue_of.content + text
        reply = self._reply_message(turn, char_id, text, usage, "complete")
        if turn.session_id is not None:
            await self._store_reply(turn, reply)
        turn.speaking = None
        turn.replies.append(_public(reply, usage))
        self.metrics.turns.labels(
            provider=turn.current_provider or "", model=turn.current_model or ""
        ).inc()
        await turn.emit(
            {
                "type": "end",
                "character": char_id,
                "message_id": reply.message_id,
                "usage": usage.to_dict(),
            }
        )
        return {
            "index": state["index"] + 1,
            "rounds": 0,
            "working": [],
            "tool_calls": [],
            "text": "",
        }

    # ---- prompt ---------------------------------------------------------------------
    def tools_for(self, char: Character) -> list[dict[str, Any]]:
        """The function schemas of the tools this character may call."""
        return [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in self.tool_registry.list()
            if char.allows_tool(t.name)
        ]

    def prompt(self, turn: Turn, char: Character) -> list[dict[str, Any]]:
        chars = self._characters(turn)
        others = [c for c in chars.values() if c.id != char.id]
        system = [char.persona.strip() or f"You are {char.name}."]
        rules = (
            f"You are {char.name} in a group chat with the user"
            + (f" and {', '.join(c.name for c in others)}" if others else "")
            + f". Write only {char.name}'s own reply: never write lines for anyone else, "
            f"and do not start with your name."
        )
        system.append(rules)
        line = user_persona_line(turn.user_persona)
        if line:
            system.append(line)
        if turn.memory:
            lines = "\n".join(f"- {m['content']}" for m in turn.memory)
            system.append(f"What you remember about the user and this conversation:\n{lines}")
        messages: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(system)}]

        def other_line(cid: str | None, content: str) -> dict[str, Any]:
            name = chars[cid].name if cid in chars else (self.name_of(cid) or "Someone")
            return {"role": "user", "content": f"[{name} said]: {content}"}

        if turn.client_messages is not None:
            for raw in turn.client_messages:
                if raw.get("role") == "system":
                    messages[0]["content"] += "\n\n" + str(raw.get("content") or "")
                elif raw.get("role") in ("user", "assistant") and raw.get("content"):
                    messages.append({"role": raw["role"], "content": str(raw["content"])})
        else:
            for m in turn.history:
                if m.role == "user":
                    messages.append({"role": "user", "content": m.content})
                elif m.role == "assistant" and m.content and not m.tool_calls:
                    if m.character == char.id:
                        messages.append({"role": "assistant", "content": m.content})
                    else:
                        messages.append(other_line(m.character, m.content))
            if turn.continue_of is not None:
                messages.append({"role": "user", "content": CONTINUE_INSTRUCTION})
            else:
                messages.append({"role": "user", "content": turn.user_input})
                for m in turn.earlier:  # replies of this turn before the regenerated one
                    if m.content and m.character != char.id:
                        messages.append(other_line(m.character, m.content))
        for reply in turn.replies:
            if reply["character"] != char.id and reply["content"]:
                messages.append(other_line(reply["character"], reply["content"]))
        return messages
