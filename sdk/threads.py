"""Threads for work nobody waits for.

``lower_thread_priority()`` lowers the calling thread's CPU priority (Linux ``nice`` of
that one thread): used as a ``ThreadPoolExecutor`` initializer, its threads run only on
what the threads serving requests leave over (about a tenth of a core when both want
one), so a background batch never slows a reply on a small machine.
"""

from __future__ import annotations

import contextlib
import os
import threading

BACKGROUND_NICE = 10


def lower_thread_priority() -> None:
    # Linux applies a nice value to one thread when given its thread id.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
