"""Sampling for the embedded model: settings chosen for a 135M-parameter model, and the
stop sequences that end a reply where the model starts writing another speaker's lines.

Left to llama.cpp's defaults (no repetition penalty, 256 tokens, no stop but the end of
turn), SmolLM2-135M loops ("…la capitale de la France est…" five times over) and goes on
to write the other characters' lines ("Nox: …"). bench/local_model.py measures both.
"""

from __future__ import annotations

import re
from typing import Any

# The provider's defaults; each can be set in its [plugins.chat.providers.<name>] table.
DEFAULTS: dict[str, Any] = {
    "temperature": 0.6,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.15,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "max_tokens": 200,
    "stop_at_speakers": True,
    "loop_ngram": 8,
}

# What llama.cpp did before these settings (bench/local_model.py's "before").
LLAMA_CPP_DEFAULTS: dict[str, Any] = {
    "temperature": 0.7,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "max_tokens": 256,
    "stop_at_speakers": False,
    "loop_ngram": 0,
}

USER_NAMES = ("User", "ユーザー")

# The chat plugin's prompt (graph.ConversationGraph.prompt) says who is in the chat:
#   "You are Lumina in a group chat with the user and Claris, Nox. Write only ..."
# and shows other characters' replies as "[Claris said]: ...".
_GROUP = re.compile(r"You are (.+?) in a group chat with the user(?: and (.+?))?\. Write only")
_SAID = re.compile(r"^\[([^\]\n]{1,64}) said\]:")
# a persona's "You are Lumina (ルミナ)": the character's own other name
_OWN_ALIAS = re.compile(r"You are ([^\s(),.]{1,64}) \(([^)\n]{1,64})\)")


def sampling(settings: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters: the provider table's values over ``DEFAULTS``."""
    out = dict(DEFAULTS)
    for key in DEFAULTS:
        if settings.get(key) is not None:
            out[key] = settings[key]
    return out


def speakers(messages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(the speaking character's names, the other participants' names) as the prompt
    states them; ([], []) for a prompt that is not a group chat's."""
    own: list[str] = []
    others: list[str] = []
    for message in messages:
        content = str(message.get("content") or "")
        if message.get("role") == "system":
            m = _GROUP.search(content)
            if m:
                own.append(m.group(1).strip())
                if m.group(2):
                    others.extend(n.strip() for n in re.split(r",\s*|\s+and\s+", m.group(2)))
            for alias in _OWN_ALIAS.finditer(content):
                if alias.group(1) in own or not own:
                    own.extend(a.strip() for a in re.split(r"[/,、]", alias.group(2)))
        elif message.get("role") == "user":
            m = _SAID.match(content)
            if m:
                others.append(m.group(1).strip())
    own = [n for n in dict.fromkeys(own) if n]
    others = [n for n in dict.fromkeys(others) if n and n not in own]
    return own, others


def speaker_stops(messages: list[dict[str, Any]], extra: list[str] | None = None) -> list[str]:
    """Stop sequences: another participant's name as a speaker label anywhere
    ("Claris:", "Nox：", "[Nox said]", "User:"), the character's own label on a new line
    (the model starting a second turn of its own), and ``extra``."""
    own, others = speakers(messages)
    stops: list[str] = []
    if own or others:
        for name in [*others, *USER_NAMES]:
            stops += [f"{name}:", f"{name}：", f"[{name} said]", f"**{name}**:"]
        for name in own:
            stops += [f"\n{name}:", f"\n{name}：", f"[{name} said]"]
    stops += [s for s in extra or [] if s]
    return list(dict.fromkeys(stops))


class ReplyGuard:
    """A llama.cpp logits processor for a chat reply (called once per generated token):

    - at the first token, tokens starting with ``[`` are banned: a small model shown
      other characters' replies as ``[Claris said]: ...`` tends to echo that label, which
      the stop sequences would then cut to an empty reply;
    - when the reply's last ``loop_ngram`` tokens repeat an earlier run of the reply, the
      end of turn is forced and ``looped`` is set, so the caller drops the repeated run
      it held back (``loop_ngram`` = 0: off).
    """

    # text held back from the stream, so that a repeated run can still be dropped
    HOLD_CHARS = 48

    def __init__(
        self, banned_first: list[int], eos: int, loop_ngram: int, detokenize: Any = None
    ) -> None:
        self.banned_first = banned_first
        self.eos = eos
        self.n = loop_ngram
        self.detokenize = detokenize
        self.prompt_len: int | None = None
        self.looped = False
        self.repeated = ""  # the text of the repeated run, when looped

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt_len is None:
            self.prompt_len = len(input_ids)
        generated = [int(t) for t in input_ids[self.prompt_len :]]
        if not generated:
            if self.banned_first:
                scores[self.banned_first] = -float("inf")
            return scores
        n = self.n
        if n and len(generated) >= 2 * n:
            tail = generated[-n:]
            for i in range(len(generated) - 2 * n + 1):
                if generated[i : i + n] == tail:
                    self.looped = True
                    if self.detokenize is not None:
                        self.repeated = self.detokenize(tail).decode("utf-8", "ignore")
                    eos_score = scores[self.eos]
                    scores[:] = -float("inf")
                    scores[self.eos] = max(float(eos_score), 0.0)
                    break
        return scores


def drop_repeat(held: str, repeated: str) -> str:
    """``held`` (the text not yet streamed) without the repeated run at its end (the run
    ends the generated text; when it began before ``held``, all of ``held`` is in it)."""
    run = repeated.strip()
    cut = held.rstrip()
    if not run:
        return held
    if cut.endswith(run):
        return cut[: -len(run)].rstrip()
    if run.endswith(cut.strip()):
        return ""
    return held
