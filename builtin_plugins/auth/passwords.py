"""Password policy and bcrypt hashing; every bcrypt call runs in a worker thread."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from sdk import errors

MIN_CHARS = 8
MAX_BYTES = 72  # bcrypt ignores (bcrypt >= 5: refuses) anything past 72 bytes


def _classes(password: str) -> set[str]:
    found = set()
    for ch in password:
        if ch.isdigit():
            found.add("digit")
        elif ch.isupper():
            found.add("upper")
        elif ch.islower():
            found.add("lower")
        else:
            found.add("other")
    return found


def check_length(password: str, field: str = "/password") -> None:
    """Refuse with 422 a password bcrypt cannot take whole (over 72 bytes in UTF-8)."""
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise errors.ValidationFailed(
            f"The password is longer than {MAX_BYTES} bytes in UTF-8.",
            code="PASSWORD_TOO_LONG",
            errors=[{"path": field, "message": f"at most {MAX_BYTES} bytes in UTF-8"}],
        )


def check_policy(password: str, field: str = "/password") -> None:
    """At least 8 characters, not all of one class (lower, upper, digit, other), at most 72 bytes."""
    check_length(password, field)
    problems = []
    if len(password) < MIN_CHARS:
        problems.append(f"at least {MIN_CHARS} characters")
    if len(_classes(password)) < 2:
        problems.append("mix at least two of: lowercase, uppercase, digits, other characters")
    if problems:
        raise errors.ValidationFailed(
            "The password is too weak: " + "; ".join(problems) + ".",
            code="WEAK_PASSWORD",
            errors=[{"path": field, "message": p} for p in problems],
        )


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def _verify(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """bcrypt's own threads: bcrypt releases the GIL, so hashes run beside the event loop.
    One CPU is left to the loop (threads = usable CPUs - 1, at least 1), so a burst of
    logins queues here instead of starving every other request of CPU time."""
    global _executor
    if _executor is None:  # created on first use, never at import time
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 2
        _executor = ThreadPoolExecutor(max_workers=max(1, cpus - 1), thread_name_prefix="bcrypt")
    return _executor


async def hash_password(password: str, rounds: int) -> str:
    return await asyncio.get_running_loop().run_in_executor(_pool(), _hash, password, rounds)


async def verify_password(password: str, hashed: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_pool(), _verify, password, hashed)
