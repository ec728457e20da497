"""Phasor Data Concentrator: low- and high-level PDCs are this one program.

A PDC connects to N inputs (PMUs or lower PDCs), asks each for its CFG-2 and starts its data,
aligns data frames by timestamp and sends one concentrated C37.118 stream (multi-PMU data
frames, its own CFG-2 listing every input's PMUs in configuration order) to any number of
clients.

Alignment (openPDC's *lag time*): frame time ``k / rate`` is published as soon as every
connected input has delivered it (a frame time still ahead of the PDC's clock only if at least
two inputs delivered it: one input alone cannot move the output's time forward), or at
wall-clock time ``k / rate + wait_window`` with what arrived; a missing input's PMU blocks are
filled with absent values (NaN / 0x8000) and STAT bits 15-14 = 10 ("absent data inserted, do
not use"). Frames older than the last published time are *late*; frames stamped more than
``max_lead`` seconds ahead of the PDC's clock (and of the latest frames of the other inputs,
should the PDC's own clock lag) are *early*; both are dropped, counted per input
(:attr:`PdcStats.inputs`) and logged at WARNING with the input's name (rate-limited). So one
input with a wrong clock cannot move the output's time. PMU blocks are forwarded as received
(no re-encoding), so STAT, formats and values pass through untouched, which is also what makes
one process able to concentrate many PMUs.

The output layout is built from the inputs' CFG-2s. An input that joins after
``config_timeout``, or whose configuration changes, changes it; the change follows
C37.118.2-2011's STAT bit 10 ("configuration change"): from the moment the PDC knows the new
layout it sets bit 10 in every PMU block of its (old-layout) data frames, answers "send CFG-2"
with the new configuration, and switches at the top of a second (FRACSEC = 0) at least
``config_change_notice`` seconds later; the first new-layout frame has bit 10 clear. A client
holding the new CFG-2 applies it from the first frame without bit 10 (:class:`StreamClient` does).

An input that disappears (EOF, error, or no frame for ``idle_timeout``) is reconnected with
exponential backoff (``backoff_min`` doubling to ``backoff_max``). The first frame forwarded
after start and after each reconnect is logged (and kept in :attr:`Pdc.events`).

:class:`StreamClient` is the reconnecting C37.118 client used here and by the recorder and
the state estimator.

CLI::

    python -m labkit.grid.pdc --config pdc.yaml            # or a file .json/.toml
    python -m labkit.grid.pdc --config 'mysql://user:pw@127.0.0.1:3306/labkit?name=pdc-low-1'

prints ``listening <host> <port>`` once the output server is bound. A config file with a ``db``
entry is filled from that database at start (:func:`labkit.grid.pdc_config.load_config_timed`);
either way the PDC logs ``config-fetch name=<pdc> source=<file|db> address=... seconds=...
attempts=...`` (:func:`labkit.grid.pdc_config.parse_fetch_line`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labkit.grid import c37118 as c
from labkit.grid import cli
from labkit.grid.pdc_config import PdcConfig, PdcConfigError, load_config_timed
from labkit.grid.connection import FrameProtocol, WarnLimiter
from labkit.grid.pmu import FrameServer, serve_until_signal

__all__ = ["StreamClient", "StreamCounters", "Pdc", "PdcStats", "main"]

log = logging.getLogger("labkit.grid.pdc")

_TS = struct.Struct(">II")
#: STAT bit 10 (configuration change) in the high byte of a PMU block's STAT word.
_CFG_CHANGE_HI = c.Stat.CONFIG_CHANGE >> 8
#: A server that set STAT bit 10 this recently announced the CFG-2 the client receives next.
_ANNOUNCE_MEMORY = 5.0


@dataclass
class StreamCounters:
    """What one input stream delivered and what was dropped, by reason."""

    frames: int = 0          # data frames matching the configuration
    wrong_size: int = 0      # data frames whose size does not match the configuration
    bad_frames: int = 0      # false frame starts / unusable bytes runs (see StreamParser)
    skipped_bytes: int = 0
    late: int = 0            # PDC: older than the last frame sent
    early: int = 0           # PDC: stamped too far ahead
    off_grid: int = 0        # PDC: timestamp not on the output's reporting grid


class _InputProtocol(FrameProtocol):
    """Protocol of one :class:`StreamClient` connection."""

    def __init__(self, client: StreamClient) -> None:
        super().__init__(log, client.name)
        self.client = client
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()
        self.started = False
        self.wrong_size = WarnLimiter(log, f"{client.name}: data frames of the wrong size dropped")
        self._last_request = -math.inf
        self._announced = -math.inf

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.request(c.Command.CFG2)

    def request(self, command: int) -> None:
        """Send a command frame addressed to the stream's IDCODE."""
        if self.transport is not None and not self.transport.is_closing():
            soc, frac = c.split_time(time.time())
            self.transport.write(c.encode_frame(c.CommandFrame(self.client.idcode, command, soc, frac)))

    def _request_config(self, every: float) -> None:
        now = time.monotonic()
        if now - self._last_request >= every:
            self._last_request = now
            self.request(c.Command.CFG2)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        super().data_received(data)

    def frame_received(self, raw: bytes) -> None:
        client = self.client
        if raw[1] & 0x70 == 0:                       # data frame
            if len(raw) == client.frame_size and client.pending is None:
                client.counters.frames += 1
                client.on_frame(raw)
                if raw[14] & _CFG_CHANGE_HI:
                    self._announcement()
            else:
                self._odd_data_frame(raw)
        elif (raw[1] >> 4) & 7 == c.FrameType.CFG2:
            try:
                cfg = c.decode_frame(raw)
            except c.FrameError as exc:
                self.count_bad_frame(f"bad CFG-2: {exc}")
                return
            self._config_received(cfg)  # type: ignore[arg-type]

    def _announcement(self) -> None:
        """STAT bit 10: the server's configuration will change; fetch the new one (at most twice a second)."""
        self._announced = time.monotonic()
        self._request_config(0.5)

    def _odd_data_frame(self, raw: bytes) -> None:
        client = self.client
        size, pending = len(raw), client.pending
        if pending is not None and size == pending.data_frame_size and (
                size != client.frame_size or not raw[14] & _CFG_CHANGE_HI):
            client.set_config(pending)              # the announced layout took effect with this frame
        if client.cfg is not None and size == client.frame_size:
            client.counters.frames += 1
            client.on_frame(raw)
            if raw[14] & _CFG_CHANGE_HI:
                self._announcement()
            return
        client.counters.wrong_size += 1
        want = f"the configuration says {client.frame_size}" if client.cfg is not None else "no configuration yet"
        self.wrong_size.add(1, f"last: {size} bytes, {want}")
        self._request_config(1.0)                   # changed upstream without notice: ask again

    def _config_received(self, cfg: c.ConfigFrame) -> None:
        client = self.client
        if not self.started:                        # first CFG-2 of this connection: install, start
            self.started = True
            client.set_config(cfg)
            self.request(c.Command.START)
        elif client.cfg is None or _strip_time(cfg) != _strip_time(client.cfg):
            if time.monotonic() - self._announced < _ANNOUNCE_MEMORY:
                client.pending = cfg                # announced: apply from its first frame
            else:
                client.set_config(cfg)

    def garbage_received(self, frames: int, skipped: int) -> None:
        self.client.counters.bad_frames += frames
        self.client.counters.skipped_bytes += skipped

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.wrong_size.flush("before the connection closed")
        if not self.lost.done():
            self.lost.set_result(exc)


class StreamClient:
    """Reconnecting C37.118 client: CFG-2 request, start, data callback, backoff on loss.

    Parameters
    ----------
    host, port
        Server address.
    idcode
        IDCODE of the stream: the destination of the command frames (C37.118.2-2011, 6.2); a
        server ignores commands addressed to another IDCODE.
    on_frame
        Called with each complete, CRC-checked data frame (bytes) matching the current CFG-2.
    on_config
        Called with each CFG-2 installed: the first of every connection, a changed one sent
        without notice, and an announced one (STAT bit 10) at the first frame of its layout.
    on_state
        Called with ``True`` when the stream (re)starts (first CFG-2 of a connection) and
        ``False`` when the connection is lost.
    counters
        Where to count frames and drops (:class:`StreamCounters`); a new one by default.
    backoff_min, backoff_max
        Reconnect delay bounds in seconds (doubling).
    idle_timeout
        A started connection with no bytes for this long is dropped and reconnected.
    """

    def __init__(self, host: str, port: int, idcode: int, *, on_frame: Callable[[bytes], None] = lambda b: None,
                 on_config: Callable[[c.ConfigFrame], None] = lambda cfg: None,
                 on_state: Callable[[bool], None] = lambda up: None, backoff_min: float = 0.1,
                 backoff_max: float = 5.0, idle_timeout: float = 3.0, name: str = "",
                 counters: StreamCounters | None = None) -> None:
        self.host, self.port, self.idcode = host, port, idcode
        self.on_frame, self.on_config, self.on_state = on_frame, on_config, on_state
        self.backoff_min, self.backoff_max, self.idle_timeout = backoff_min, backoff_max, idle_timeout
        self.name = name or f"{host}:{port}"
        self.cfg: c.ConfigFrame | None = None
        #: A CFG-2 the server announced (STAT bit 10), applied from the first frame of its layout.
        self.pending: c.ConfigFrame | None = None
        self.frame_size = 0
        self.counters = counters if counters is not None else StreamCounters()
        self.connects = 0
        self.up = False
        self._proto: _InputProtocol | None = None
        self._task: asyncio.Task | None = None

    @property
    def frames(self) -> int:
        """Data frames received that matched the configuration."""
        return self.counters.frames

    def set_config(self, cfg: c.ConfigFrame) -> None:
        """Install a CFG-2 received from the server."""
        self.cfg = cfg
        self.pending = None
        self.frame_size = cfg.data_frame_size
        self.on_config(cfg)
        if not self.up:
            self.up = True
            self.on_state(True)

    def start(self) -> asyncio.Task:
        """Run :meth:`run` as a task."""
        self._task = asyncio.ensure_future(self.run())
        return self._task

    async def run(self) -> None:
        """Connect, stream, and reconnect with backoff until cancelled."""
        loop = asyncio.get_running_loop()
        delay = self.backoff_min
        while True:
            frames_before = self.frames
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives while the
                # connection fails (the loop then ran on, and close() waited for it forever)
                async with asyncio.timeout(2.0):
                    _, proto = await loop.create_connection(lambda: _InputProtocol(self), self.host, self.port)
                self._proto = proto  # type: ignore[assignment]
                self.connects += 1
                await self._watch(proto)  # type: ignore[arg-type]
            except (OSError, asyncio.TimeoutError) as exc:
                log.debug("%s: connect failed: %s", self.name, exc)
            finally:
                if self._proto is not None and self._proto.transport is not None:
                    self._proto.transport.abort()
                self._proto = None
                if self.up:
                    self.up = False
                    self.on_state(False)
            delay = self.backoff_min if self.frames > frames_before else min(self.backoff_max, delay * 2)
            await asyncio.sleep(delay)

    async def _watch(self, proto: _InputProtocol) -> None:
        while True:
            try:
                async with asyncio.timeout(min(1.0, self.idle_timeout)):
                    await asyncio.shield(proto.lost)
                return
            except asyncio.TimeoutError:
                if time.monotonic() - proto.last_rx > self.idle_timeout:
                    log.info("%s: no data for %.1f s, reconnecting", self.name, self.idle_timeout)
                    return

    async def close(self) -> None:
        """Stop the client and close its connection."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abort()


@dataclass(eq=False)
class _Input:
    """State of one PDC input."""

    name: str
    index: int
    client: StreamClient | None = None
    cfg: c.ConfigFrame | None = None
    connected: bool = False
    fresh: bool = False
    time_base: int = 1_000_000
    seen: float = math.nan          # frame time of its latest on-grid frame (a reference for the others)
    absent: bytes = b""             # its PMU blocks with every value absent (for its current cfg)
    rejected: str = ""
    counters: StreamCounters = field(default_factory=StreamCounters)
    late_log: WarnLimiter = field(init=False)
    early_log: WarnLimiter = field(init=False)
    off_grid_log: WarnLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.late_log = WarnLimiter(log, f"input {self.name}: late frames dropped")
        self.early_log = WarnLimiter(log, f"input {self.name}: frames stamped too far ahead dropped")
        self.off_grid_log = WarnLimiter(log, f"input {self.name}: frames off the reporting grid dropped")


@dataclass(frozen=True, eq=False)
class _Slot:
    """Where one input's PMU blocks go in an output layout."""

    inp: _Input
    cfg: c.ConfigFrame      # the input's configuration the slot was built from
    absent: bytes           # its PMU blocks with every value absent


class _Layout:
    """One output configuration: the CFG-2, the member inputs' slots, and the STAT offsets of every block."""

    def __init__(self, cfg: c.ConfigFrame | None, slots: list[_Slot]) -> None:
        self.cfg = cfg
        self.slots = slots
        self.by_input = {s.inp.index: s for s in slots}
        self.stat_offsets = []
        off = 0
        for p in cfg.pmus if cfg is not None else ():
            self.stat_offsets.append(off)
            off += p.block_size
        self.n_ready = 0

    def recount(self) -> None:
        """Inputs able to deliver frames of this layout: connected, with the configuration of their slot."""
        self.n_ready = sum(1 for s in self.slots if s.inp.connected and s.inp.cfg is s.cfg)

    def eligible(self, inp: _Input) -> bool:
        slot = self.by_input.get(inp.index)
        return slot is not None and slot.cfg is inp.cfg


@dataclass
class PdcStats:
    """Counters of a running PDC (``inputs``: per input name)."""

    frames_in: int = 0
    published: int = 0
    late: int = 0
    off_grid: int = 0
    early: int = 0
    incomplete: int = 0
    absent_blocks: int = 0
    layout_changes: int = 0
    inputs: dict[str, StreamCounters] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)


class Pdc:
    """A phasor data concentrator (see the module docstring).

    Parameters
    ----------
    cfg
        The PDC configuration (:func:`labkit.grid.pdc_config.load_config`).
    """

    def __init__(self, cfg: PdcConfig) -> None:
        self.cfg = cfg
        self.rate = cfg.rate
        self.inputs = [_Input(name=i.name, index=k) for k, i in enumerate(cfg.inputs)]
        self.stats = PdcStats(inputs={i.name: i.counters for i in self.inputs})
        self._cur = _Layout(None, [])
        self._next: _Layout | None = None
        self._switch_k: int | None = None
        self._pending: dict[int, list] = {}
        self._last_k = -1
        self._first_out = True
        self.server = FrameServer(cfg.idcode, lambda: self.out_cfg, self.header)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_handle: asyncio.TimerHandle | None = None

    @property
    def out_cfg(self) -> c.ConfigFrame | None:
        """The output CFG-2 served on request: the announced one during a layout change."""
        return (self._next or self._cur).cfg

    @property
    def events(self) -> list[dict]:
        """First-frame events: ``{"input", "frame_time", "forwarded_at", "kind"}``."""
        return self.stats.events

    def header(self) -> str:
        """Header frame text."""
        names = ", ".join(f"{i.name}={s.host}:{s.port}" for i, s in zip(self.inputs, self.cfg.inputs))
        return f"labkit PDC {self.cfg.name} idcode={self.cfg.idcode} rate={self.rate} " \
               f"wait_window={self.cfg.wait_window} inputs: {names}"

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Start the output server and the input clients; return the output port."""
        self._loop = asyncio.get_running_loop()
        bound = await self.server.start(host or self.cfg.output_host,
                                        self.cfg.output_port if port is None else port)
        for inp, spec in zip(self.inputs, self.cfg.inputs):
            inp.client = StreamClient(spec.host, spec.port, spec.idcode, name=f"input {inp.name}",
                                      on_frame=self._frame_cb(inp), on_config=self._config_cb(inp),
                                      on_state=self._state_cb(inp), backoff_min=self.cfg.backoff_min,
                                      backoff_max=self.cfg.backoff_max, counters=inp.counters)
            inp.client.start()
        self._ready_handle = self._loop.call_later(self.cfg.config_timeout, self._timeout_ready)
        return bound

    async def close(self) -> None:
        """Stop every input and the output server."""
        if self._ready_handle is not None:
            self._ready_handle.cancel()
        for inp in self.inputs:
            if inp.client is not None:
                await inp.client.close()
        await self.server.close()

    # ------------------------------------------------------------------ configuration
    def _config_cb(self, inp: _Input) -> Callable[[c.ConfigFrame], None]:
        def on_config(cfg: c.ConfigFrame) -> None:
            if inp.cfg is not None and _strip_time(inp.cfg) == _strip_time(cfg):
                return                                  # same configuration (e.g. after a reconnect)
            inp.cfg = cfg
            inp.time_base = cfg.time_base
            inp.absent = b"".join(c.block_bytes(p, p.absent_block()) for p in cfg.pmus)
            self._rebuild_output()
            if not self.server.ready.is_set() and all(i.cfg is not None for i in self.inputs):
                self._set_ready()
        return on_config

    def _timeout_ready(self) -> None:
        if not self.server.ready.is_set():
            missing = [i.name for i in self.inputs if i.cfg is None]
            log.warning("config timeout: serving without input(s) %s", missing)
            self._set_ready()

    def _set_ready(self) -> None:
        if not self.server.ready.is_set():
            self.server.set_ready()
            log.info("output configuration ready: %d PMUs from %d inputs",
                     len(self.out_cfg.pmus) if self.out_cfg else 0, len(self._cur.slots))

    def _build_layout(self) -> _Layout:
        """The output layout of the inputs' current configurations (rejecting clashes and overflows)."""
        slots, pmus, seen = [], [], {}
        cfg_size, data_size = _CFG2_FIXED, 16
        for inp in self.inputs:
            if inp.cfg is None:
                continue
            clash = [p.idcode for p in inp.cfg.pmus if p.idcode in seen]
            if clash:
                inp.rejected = f"PMU IDCODE(s) {clash} already used by input(s) {[seen[k] for k in clash]}"
                log.error("input %s rejected: %s", inp.name, inp.rejected)
                continue
            add_cfg = _cfg2_size(inp.cfg) - _CFG2_FIXED
            add_data = inp.cfg.data_frame_size - 16
            if cfg_size + add_cfg > c.MAX_FRAME or data_size + add_data > c.MAX_FRAME:
                inp.rejected = (f"the output CFG-2 would be {cfg_size + add_cfg} bytes, over the C37.118 FRAMESIZE "
                                f"limit of {c.MAX_FRAME}; split the inputs over more PDCs")
                log.error("input %s rejected: %s", inp.name, inp.rejected)
                continue
            cfg_size, data_size = cfg_size + add_cfg, data_size + add_data
            for p in inp.cfg.pmus:
                seen[p.idcode] = inp.name
            inp.rejected = ""
            slots.append(_Slot(inp, inp.cfg, inp.absent))
            pmus.extend(inp.cfg.pmus)
        out = c.ConfigFrame(idcode=self.cfg.idcode, pmus=tuple(pmus), data_rate=self.rate) if pmus else None
        layout = _Layout(out, slots)
        layout.recount()
        return layout

    def _rebuild_output(self) -> None:
        """Apply the inputs' configurations: at once before anyone is served, else announced (STAT bit 10)."""
        new = self._build_layout()
        n_pmus = len(new.cfg.pmus) if new.cfg else 0
        if not self.server.ready.is_set() or self._cur.cfg is None or new.cfg is None:
            self._cur, self._next, self._switch_k = new, None, None
            log.info("output configuration: %d PMUs from %d inputs", n_pmus, len(new.slots))
            return
        if _strip_time(new.cfg) == _strip_time(self._cur.cfg) and \
                [(s.inp, s.cfg) for s in new.slots] == [(s.inp, s.cfg) for s in self._cur.slots]:
            self._next, self._switch_k = None, None      # back to the layout in use: nothing to change
            return
        lead = max(self.cfg.config_change_notice, self.cfg.max_lead + self.cfg.wait_window)
        switch_s = math.ceil(time.time() + lead)        # the top of a second, at least the notice away
        self._next, self._switch_k = new, switch_s * self.rate
        self._cur.recount()          # a changed input no longer delivers frames of the layout in use
        log.info("output configuration changes to %d PMUs from %d inputs at %d (top of the second); "
                 "STAT bit 10 set until then", n_pmus, len(new.slots), switch_s)

    def _layout_for(self, k: int) -> _Layout:
        """The layout of frame time ``k``: the announced one from the switch on."""
        if self._next is not None and self._switch_k is not None and k >= self._switch_k:
            return self._next
        return self._cur

    # ------------------------------------------------------------------ state
    def _state_cb(self, inp: _Input) -> Callable[[bool], None]:
        def on_state(up: bool) -> None:
            inp.connected = up
            inp.fresh = up
            self._recount()
            if up:
                log.info("input %s connected", inp.name)
            else:
                log.warning("input %s lost; reconnecting with backoff", inp.name)
                self._publish_complete()
        return on_state

    def _recount(self) -> None:
        self._cur.recount()
        if self._next is not None:
            self._next.recount()

    # ------------------------------------------------------------------ data path
    def _frame_cb(self, inp: _Input) -> Callable[[bytes], None]:
        idx = inp.index
        n_inputs = len(self.inputs)
        stats, counters = self.stats, inp.counters
        rate = self.rate
        max_lead = self.cfg.max_lead
        loop = self._loop
        assert loop is not None, "frame callbacks are made once the PDC runs in a loop"

        def on_frame(raw: bytes) -> None:
            stats.frames_in += 1
            soc, frac = _TS.unpack_from(raw, 6)
            t = soc + (frac & 0xFFFFFF) / inp.time_base
            x = t * rate
            k = round(x)
            if abs(x - k) > 0.1:
                stats.off_grid += 1
                counters.off_grid += 1
                inp.off_grid_log.add(1, f"last: frame time {t:.6f} at {rate} frames/s")
                return
            if k <= self._last_k:
                stats.late += 1
                counters.late += 1
                inp.late_log.add(1, f"last: frame time {t:.3f}, "
                                    f"{(self._last_k - k) / rate:.3f} s behind the last frame sent")
                return
            now = time.time()
            if t > now + max_lead:
                ref = self._reference_time(inp, now)
                if t > ref + max_lead:
                    inp.seen = t
                    stats.early += 1
                    counters.early += 1
                    inp.early_log.add(1, f"last: frame time {t:.3f}, {t - now:.3f} s ahead of this PDC's clock, "
                                         f"{t - ref:.3f} s ahead of the reference; max_lead {max_lead} s")
                    return
            inp.seen = t
            layout = self._layout_for(k)
            if not layout.eligible(inp):
                return        # not part of the layout of this frame time (joined or changed: see _rebuild_output)
            bucket = self._pending.get(k)
            if bucket is None:
                bucket = self._pending[k] = [0] + [None] * n_inputs
                self._schedule(k)
            if bucket[idx + 1] is None:
                bucket[idx + 1] = raw
                bucket[0] += 1
                if bucket[0] >= layout.n_ready:
                    due = k / rate - now
                    if due <= 0 or bucket[0] >= 2:
                        self._publish_through(k)
                    else:     # one input alone ahead of our clock does not move the output's time: wait
                        loop.call_at(loop.time() + due, self._publish_if_complete, k)
        return on_frame

    def _reference_time(self, inp: _Input, now: float) -> float:
        """The time a frame of ``inp`` is judged against: the PDC's clock, or the other connected inputs'
        latest frame times (their lower median) when those are ahead of it (the PDC's clock lags)."""
        others = sorted(i.seen for i in self.inputs if i is not inp and i.connected and not math.isnan(i.seen))
        return max(now, statistics.median_low(others)) if others else now

    def _schedule(self, k: int) -> None:
        loop = self._loop
        assert loop is not None
        delay = k / self.rate + self.cfg.wait_window - time.time()
        loop.call_at(loop.time() + max(0.0, delay), self._deadline, k)

    def _deadline(self, k: int) -> None:
        if k in self._pending:
            self._publish_through(k)

    def _publish_if_complete(self, k: int) -> None:
        bucket = self._pending.get(k)
        if bucket is not None and bucket[0] >= self._layout_for(k).n_ready:
            self._publish_through(k)

    def _publish_complete(self) -> None:
        for k in sorted(self._pending):
            done = self._pending[k][0]
            if done >= self._layout_for(k).n_ready and (done >= 2 or k / self.rate <= time.time()):
                self._publish_through(k)
            else:
                break

    def _publish_through(self, k_max: int) -> None:
        for k in sorted(kk for kk in self._pending if kk <= k_max):
            self._publish(k, self._pending.pop(k))
        self._last_k = max(self._last_k, k_max)

    def _publish(self, k: int, bucket: list) -> None:
        if self._switch_k is not None and k >= self._switch_k:
            self._switch(k)
        layout = self._cur
        if layout.cfg is None:
            return
        parts = []
        fresh = []
        missing = 0
        for slot in layout.slots:
            raw = bucket[slot.inp.index + 1]
            if raw is not None:
                parts.append(raw[14:-2])
                if slot.inp.fresh:
                    fresh.append(slot.inp)
            else:
                parts.append(slot.absent)
                missing += 1
        if missing:
            self.stats.incomplete += 1
            self.stats.absent_blocks += missing
        body = b"".join(parts)
        if self._next is not None:        # a layout change is announced: STAT bit 10 in every block
            flagged = bytearray(body)
            for off in layout.stat_offsets:
                flagged[off] |= _CFG_CHANGE_HI
            body = bytes(flagged)
        soc, idx = divmod(k, self.rate)
        frame = c.wrap_data(self.cfg.idcode, soc, round(idx * 1_000_000 / self.rate), body)
        sent = self.server.broadcast(frame)
        self.stats.published += 1
        if sent:  # "forwarded" = sent to at least one client
            for inp in fresh:
                self._first_frame(inp, k)
            if self._first_out:
                self._first_out = False
                self._event("output", k, "start")

    def _switch(self, k: int) -> None:
        assert self._next is not None
        self._cur, self._next, self._switch_k = self._next, None, None
        self.stats.layout_changes += 1
        log.info("output layout switched at frame time %.6f: %d PMUs", k / self.rate,
                 len(self._cur.cfg.pmus) if self._cur.cfg else 0)

    def _first_frame(self, inp: _Input, k: int) -> None:
        inp.fresh = False
        kind = "start" if inp.client is not None and inp.client.connects <= 1 else "reconnect"
        self._event(inp.name, k, kind)

    def _event(self, name: str, k: int, kind: str) -> None:
        ev = {"input": name, "frame_time": k / self.rate, "forwarded_at": time.time(), "kind": kind}
        self.stats.events.append(ev)
        log.info("first frame forwarded after %s of %s: frame time %.6f, forwarded at %.6f",
                 kind, name, ev["frame_time"], ev["forwarded_at"])


#: CFG-2 bytes that do not depend on the PMUs: header 14, TIME_BASE 4, NUM_PMU 2, DATA_RATE 2, CHK 2.
_CFG2_FIXED = 24


def _cfg2_size(cfg: c.ConfigFrame) -> int:
    """FRAMESIZE of ``cfg`` as CFG-2 (computed, since a too large frame cannot be encoded)."""
    size = _CFG2_FIXED
    for p in cfg.pmus:
        size += 30 + 16 * (p.phnmr + p.annmr + 16 * p.dgnmr) + 4 * (p.phnmr + p.annmr + p.dgnmr)
    return size


def _strip_time(cfg: c.ConfigFrame) -> c.ConfigFrame:
    return c.ConfigFrame(idcode=cfg.idcode, pmus=cfg.pmus, data_rate=cfg.data_rate, time_base=cfg.time_base,
                         kind=cfg.kind, version=cfg.version)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m labkit.grid.pdc --config <file or mysql:// URL>``."""
    ap = argparse.ArgumentParser(prog="python -m labkit.grid.pdc", description="C37.118 phasor data concentrator")
    ap.add_argument("--config", required=True, help="config file (.json/.yaml/.toml) or mysql://...?name=<pdc>")
    ap.add_argument("--port", type=int, default=None, help="override the output port (0 = any free port)")
    ap.add_argument("--host", default=None, help="override the output address")
    ap.add_argument("--port-file", default=None, help="write the bound output port to this file")
    ap.add_argument("--start-delay", type=float, default=0.0,
                    help="seconds to wait after start before fetching the configuration (a slower PDC's start)")
    cli.add_logging(ap)
    args = ap.parse_args(argv)
    cli.setup_logging(args)
    log.info("process started")  # the downtime experiments time the restart up to this line
    time.sleep(max(0.0, args.start_delay))  # the timer sweep's stand-in for a slower start (openPDC's)
    try:
        cfg, fetch = load_config_timed(args.config)
    except PdcConfigError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    log.info("%s", fetch.log_line(cfg.name))  # the downtime experiments parse this (config.parse_fetch_line)
    pdc = Pdc(cfg)
    host = args.host or cfg.output_host
    port = cfg.output_port if args.port is None else args.port
    asyncio.run(serve_until_signal(lambda h, p: pdc.start(h, p), pdc.close, host, port, f"PDC {cfg.name}",
                                   args.port_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
