"""The collector protocol, the context that starts and stops collectors, and the base of background ones."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Protocol, runtime_checkable

import pandas as pd


class CollectorError(RuntimeError):
    """A collector was misused (collected before stop, started twice) or failed."""


@runtime_checkable
class Collector(Protocol):
    """A measurement: ``start()`` begins observing, ``stop()`` ends it, ``collect()`` returns rows."""

    name: str

    def start(self) -> None:
        """Begin observing (returns at once; work runs in the background)."""
        ...

    def stop(self) -> None:
        """Stop observing and wait for the background work to end."""
        ...

    def collect(self) -> pd.DataFrame:
        """Tidy rows observed between start and stop (key columns of ``labkit.results``)."""
        ...


@contextmanager
def collecting(collectors: Sequence[Collector]) -> Iterator[Sequence[Collector]]:
    """Start ``collectors`` in order, yield them, and stop them in reverse order, always."""
    with ExitStack() as stack:
        for collector in collectors:
            collector.start()
            stack.callback(collector.stop)
        yield collectors


class BackgroundCollector:
    """Base for collectors that poll or watch in a thread until stopped.

    Subclasses implement :meth:`run` (loop until ``self.stopping`` is set, appending rows
    with :meth:`emit`) and set ``name``. Errors in the thread are re-raised by ``collect``.
    """

    name = "background"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._rows: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        """The observation loop (subclasses)."""
        raise NotImplementedError

    def emit(self, **row: object) -> None:
        """Record one row (thread-safe)."""
        with self._lock:
            self._rows.append(row)

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # surfaced by collect()
            self._error = exc

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None:
            raise CollectorError(f"{self.name}: already started")
        self._thread = threading.Thread(target=self._main, name=f"collector-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to end and wait for it."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise CollectorError(f"{self.name}: did not stop within {timeout} s")

    def watch(self, list_fn: Callable[..., object], *args: object, **kwargs: object) -> Iterator[dict]:
        """Events of a Kubernetes watch on ``list_fn`` until stopped, re-opening it every second.

        The short server timeout bounds how long :meth:`stop` waits for an idle watch.
        """
        from kubernetes import watch

        while not self.stopping.is_set():
            w = watch.Watch()
            for event in w.stream(list_fn, *args, timeout_seconds=1, **kwargs):
                yield event
                if self.stopping.is_set():
                    w.stop()
                    return

    def frame(self) -> pd.DataFrame:
        """The rows recorded so far, as a DataFrame (re-raises a thread error)."""
        if self._error is not None:
            raise CollectorError(f"{self.name} failed: {self._error}") from self._error
        with self._lock:
            return pd.DataFrame(list(self._rows))
