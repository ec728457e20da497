"""Signals of a process that holds a test bed: kill, a closed terminal and Ctrl-C all tear it down.

A test bed that lives in its process (the embedded backend's) must be torn down however the
process is asked to end; and once its teardown has started, a second signal must not cut it
halfway. Both ``invoke up`` (:func:`labkit.testbed.hold`) and the test-bed server use these.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

#: The signals that end a process holding a test bed: kill, a closed terminal, Ctrl-C.
TERMINATE = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _terminate_handler(holder: int) -> Callable[[int, Any], None]:
    """A signal as Ctrl-C in process ``holder`` (unwind, tear down); the default action in its forked helpers.

    Forks that run Python (pyroute2's network-namespace workers) inherit the handler; raising
    there would unwind a copy of the holder's stack and tear the test bed down under it.
    """
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        if os.getpid() != holder:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    return handler


def unwind_on_terminate(signals: tuple[signal.Signals, ...] = TERMINATE) -> None:
    """Make ``signals`` unwind this process as Ctrl-C does, so its ``finally`` tears the test bed down.

    Without it, ``kill`` (SIGTERM) or a closed terminal (SIGHUP) ends a process holding a test
    bed without running its teardown, and a process started in the background by a shell
    ignores SIGINT. :func:`labkit.testbed.hold` and the test-bed server call it before ``up()``.
    """
    handler = _terminate_handler(os.getpid())
    for sig in signals:
        signal.signal(sig, handler)


def ignore_terminate(signals: tuple[signal.Signals, ...] = TERMINATE) -> None:
    """Ignore ``signals`` from now on: a teardown that started is not interrupted halfway."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)
