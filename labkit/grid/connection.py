"""One TCP connection of the data plane: bounded work per event-loop turn, counters, rate-limited warnings.

Every C37.118 connection of the PMU, the PDC (both sides), the recorder and the state estimator
is an asyncio protocol built on :class:`FrameProtocol`. It feeds the received bytes to a
:class:`~labkit.grid.c37118.StreamParser` with a work budget per turn of the event loop
(:data:`SLICE_WORK`, :data:`SLICE_FRAMES`): when a read brings more work than that (garbage
with false frame starts, or a burst of frames), the connection stops reading (TCP pushes back
on the sender) and continues in the next turn, after every other ready connection had its
turn. So one connection, whatever it sends, holds the loop for a bounded time (measured:
``benchmarks/bench_grid_fuzz.py`` gives the worst time per byte), and a bad peer slows only
itself.

What a peer does wrong is counted per connection and reported at WARNING, at most once per
:data:`WARN_EVERY` seconds per kind of problem (:class:`WarnLimiter`), with the number of
events since the last line: an operator sees every problem without a log line per frame.
"""

from __future__ import annotations

import asyncio
import logging
import time

from labkit.grid import c37118 as c

__all__ = ["FrameProtocol", "WarnLimiter", "SLICE_WORK", "SLICE_FRAMES", "WARN_EVERY"]

#: Parser work (CRC bytes + 64 per frame start examined) of one connection per event-loop turn.
SLICE_WORK = 128 * 1024
#: Frames one connection hands on per event-loop turn.
SLICE_FRAMES = 64
#: Seconds between two WARNING lines about the same problem of the same connection.
WARN_EVERY = 10.0


class WarnLimiter:
    """Log one kind of problem of one connection at WARNING: at once, then at most every ``every`` s.

    Parameters
    ----------
    log
        Logger to write to.
    what
        What is counted, as the line starts, e.g. ``"client 10.0.0.5:41000: bad frames"``.
    every
        Seconds between two lines; events in between are summed into the next line.
    """

    def __init__(self, log: logging.Logger, what: str, every: float = WARN_EVERY) -> None:
        self.log, self.what, self.every = log, what, every
        self.total = 0
        self._since = 0
        self._last = -float("inf")

    def add(self, n: int = 1, detail: str = "") -> None:
        """Count ``n`` events; log if the last line is older than ``every`` (``detail`` ends the line)."""
        self.total += n
        self._since += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._emit(now, detail)

    def flush(self, detail: str = "") -> None:
        """Log the events not reported yet (when the connection closes)."""
        if self._since:
            self._emit(time.monotonic(), detail)

    def _emit(self, now: float, detail: str) -> None:
        span = "" if self._last == -float("inf") else f" in the last {now - self._last:.1f} s"
        self.log.warning("%s: %d%s, %d in all%s", self.what, self._since, span, self.total,
                         f" ({detail})" if detail else "")
        self._since = 0
        self._last = now


class FrameProtocol(asyncio.Protocol):
    """Base of the data plane's protocols: received bytes -> :meth:`frame_received`, in bounded slices.

    Subclasses implement :meth:`frame_received` and may extend :meth:`connection_made` /
    :meth:`connection_lost` (calling these). :attr:`label` names the connection in log lines.
    """

    def __init__(self, log: logging.Logger, label: str = "connection") -> None:
        self.parser = c.StreamParser()
        self.transport: asyncio.Transport | None = None
        self.log = log
        self.label = label
        self.garbage = WarnLimiter(log, f"{label}: bad frames")
        self._reported = (0, 0)
        self._paused = False

    # ------------------------------------------------------------------ to implement
    def frame_received(self, raw: bytes) -> None:
        """One complete, CRC-checked frame."""
        raise NotImplementedError

    def garbage_received(self, frames: int, skipped: int) -> None:
        """``frames`` bad frames (false frame starts; a run of unusable bytes counts as one) and ``skipped``
        bytes dropped since the last call (hook for counters)."""

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.garbage.flush("before the connection closed")

    def data_received(self, data: bytes) -> None:
        self._slice(data)

    # ------------------------------------------------------------------ slices
    def _slice(self, data: bytes = b"") -> None:
        parser = self.parser
        for raw in parser.feed(data, SLICE_WORK, SLICE_FRAMES):
            self.frame_received(raw)
        self._report()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if parser.pending:
            if not self._paused:
                self._paused = True
                transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._slice)
        elif self._paused:
            self._paused = False
            transport.resume_reading()

    def _report(self) -> None:
        """Hand on the parser's new bad frames; bytes skipped without a false frame start count as one."""
        bad, skipped = self.parser.bad_frames, self.parser.skipped_bytes
        d_bad, d_skipped = bad - self._reported[0], skipped - self._reported[1]
        if d_bad or d_skipped:
            self._reported = (bad, skipped)
            self.garbage_received(d_bad or 1, d_skipped)
            self.garbage.add(d_bad or 1, f"{skipped} bytes skipped in all")

    def count_bad_frame(self, why: str) -> None:
        """A CRC-valid frame this connection cannot use (e.g. a body that does not decode)."""
        self.garbage_received(1, 0)
        self.garbage.add(1, why)
