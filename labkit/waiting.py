"""Waiting for a condition with a deadline: the one loop every "wait until ..." of the kit uses.

>>> wait_until(lambda: pod_ip(name), timeout=60, message=f"pod {name} not running after 60 s")  # doctest: +SKIP
'10.42.1.7'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], *, timeout: float, interval: float = 0.5) -> T | None:
    """Call ``check`` every ``interval`` seconds until it returns something truthy; return that.

    ``check`` runs at least once, also with ``timeout`` 0. Returns ``None`` when nothing truthy
    came within ``timeout`` seconds (the caller decides whether that is an error).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))


def wait_until(check: Callable[[], T], *, timeout: float, message: str | Callable[[], str], interval: float = 0.5,
               error: Callable[[str], Exception] = TimeoutError) -> T:
    """:func:`poll`, raising ``error(message)`` when nothing truthy came within ``timeout`` seconds.

    ``message`` says what did not happen; a callable is asked only then, so the message can show
    the state at that moment.
    """
    found = poll(check, timeout=timeout, interval=interval)
    if found:
        return found
    raise error(message() if callable(message) else message)
