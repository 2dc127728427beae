"""What clients send, checked before any plugin sees it.

JSON text may spell a lone UTF-16 surrogate (``"\\ud800"``): Python decodes it into a
``str`` that cannot be encoded as UTF-8, so it fails later, far from the request (a
database's group commit, a tokenizer, an upstream call) and may take other clients'
work with it. NUL (``"\\u0000"``) fails the same way in PostgreSQL. Absurd nesting
overflows the stack of whatever walks the value. The kernel applies :func:`loads` to
every REST body and checks query strings, path parameters and headers; a transport a plugin runs itself (a WebSocket) uses
:func:`loads` for each message, so both doors refuse the same things the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .errors import BadRequest, ValidationFailed

MAX_JSON_DEPTH = 64

# A JSON escape that may spell a surrogate or NUL; only a text with one is walked.
_SURROGATE_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


# Numbers every JSON implementation reads the same way (RFC 7493): 64-bit integers and
# finite doubles; beyond that a database or another client would overflow or round.
_INT_LIMIT = 2**63


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise ValueError(f"the integer {text[:20]}... is outside the 64-bit range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def is_valid_text(text: str) -> bool:
    """False for a string holding a lone surrogate (it has no UTF-8 form) or NUL (which
    PostgreSQL cannot store in text and C libraries read as the end of a string)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def repair_text(text: str) -> str:
    """``text`` with every lone surrogate and NUL replaced by U+FFFD (pairs joined): for
    text that must be kept although its source (an upstream, an event) is at fault."""
    if is_valid_text(text):
        return text
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def repair(value: Any) -> Any:
    """:func:`repair_text` applied to every string (and key) of a JSON-like value."""
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, dict):
        return {repair_text(k) if isinstance(k, str) else k: repair(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repair(v) for v in value]
    return value


def _pointer(path: Iterable[Any]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def find_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """``(kind, JSON pointer)`` of the first thing wrong with a decoded JSON value:
    ``"depth"`` (nested deeper than ``max_depth``) or ``"text"`` (a lone surrogate in a
    string or a key); None when it is fine. Iterative, so any depth is safe to walk."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 0, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if not is_valid_text(item):
                return "text", _pointer(path)
        elif isinstance(item, dict):
            if depth >= max_depth:
                return "depth", _pointer(path)
            for key, child in item.items():
                if not is_valid_text(key):
                    return "text", _pointer((*path, key.encode("utf-8", "replace").decode()))
                stack.append((child, depth + 1, (*path, key)))
        elif isinstance(item, list):
            if depth >= max_depth:
                return "depth", _pointer(path)
            stack.extend((child, depth + 1, (*path, i)) for i, child in enumerate(item))
    return None


def check(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``value`` itself, or the Problem a client gets for it (400 too deep, 422 text)."""
    found = find_problem(value, max_depth)
    if found is None:
        return value
    kind, where = found
    if kind == "depth":
        raise BadRequest(
            f"The JSON is nested deeper than {max_depth} levels (at {where}).",
            code="JSON_TOO_DEEP",
        )
    message = "not valid text: it holds a lone UTF-16 surrogate or a NUL character"
    raise ValidationFailed(
        f"The text at {where} is {message}.",
        errors=[{"path": where, "message": message}],
    )


def loads(raw: bytes | bytearray | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse client JSON strictly (no NaN/Infinity, 64-bit integers, finite numbers) and :func:`check` it; raises
    BadRequest ``MALFORMED_JSON``/``JSON_TOO_DEEP`` or ValidationFailed (text that is not
    UTF-8: Python would decode surrogate bytes, overlong forms aside, into lone
    surrogates that no escape check sees)."""
    if not isinstance(raw, str):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(
                f"The body is not valid UTF-8 (byte {exc.start}).",
                errors=[{"path": "/", "message": "not valid UTF-8 text"}],
            ) from None
    try:
        value = json.loads(
            raw, parse_constant=_no_constants, parse_int=_bounded_int, parse_float=_finite_float
        )
    except RecursionError:
        raise BadRequest(
            f"The JSON is nested deeper than {max_depth} levels.", code="JSON_TOO_DEEP"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}", code="MALFORMED_JSON") from None
    if not isinstance(value, (dict, list)):
        return value if not isinstance(value, str) else check(value, max_depth)
    # Walking is needed only when the text could hold a surrogate escape or be deep.
    maybe_text = _SURROGATE_ESCAPE.search(raw) is not None
    brackets = raw.count("[") + raw.count("{")
    if maybe_text or brackets > max_depth:
        check(value, max_depth)
    return value


def check_strings(pairs: Iterable[tuple[str, str]], what: str) -> None:
    """422 when a name or value (query parameter, path parameter, header) is not valid
    Unicode; what the router and the HTTP parser decode can carry escaped bytes."""
    for name, value in pairs:
        if not (is_valid_text(name) and is_valid_text(value)):
            safe = name.encode("utf-8", "replace").decode()
            raise ValidationFailed(
                f"The {what} {safe!r} is not valid Unicode.",
                errors=[{"path": f"{what}/{safe}", "message": "not valid Unicode"}],
            )
