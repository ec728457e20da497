"""Phasor Data Concentrator: low- and high-level PDCs are this one program.

A PDC connects to N inputs (PMUs or lower PDCs), asks each for its CFG-2 and starts its data,
aligns data frames by timestamp and sends one concentrated C37.118 stream (multi-PMU data
frames, its own CFG-2 listing every input's PMUs in configuration order) to any number of
clients.

Alignment (openPDC's *lag time*): frame time ``k / rate`` is published as soon as every
connected input has delivered it, or at wall-clock time ``k / rate + wait_window`` with what
arrived; a missing input's PMU blocks are filled with absent values (NaN / 0x8000) and STAT
bits 15-14 = 10 ("absent data inserted, do not use"). Frames older than the last published
time are *late* and dropped; frames more than ``LEAD_TIME`` seconds ahead of the clock are
dropped. PMU blocks are forwarded as received (no re-encoding), so STAT, formats and values
pass through untouched, which is also what makes one process able to concentrate many PMUs.

An input that disappears (EOF, error, or no frame for ``idle_timeout``) is reconnected with
exponential backoff (``backoff_min`` doubling to ``backoff_max``). The first frame forwarded
after start and after each reconnect is logged (and kept in :attr:`Pdc.events`).

:class:`StreamClient` is the reconnecting C37.118 client used here and by the recorder and
the state estimator.

CLI::

    python -m labkit.grid.pdc --config pdc.yaml            # or a file .json/.toml
    python -m labkit.grid.pdc --config 'mysql://user:pw@127.0.0.1:3306/labkit?name=pdc-low-1'

prints ``listening <host> <port>`` once the output server is bound. A config file with a ``db``
entry is filled from that database at start (:func:`labkit.grid.config.load_config_timed`);
either way the PDC logs ``config-fetch name=<pdc> source=<file|db> address=... seconds=...
attempts=...`` (:func:`labkit.grid.config.parse_fetch_line`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labkit.grid import c37118 as c
from labkit.grid import cli
from labkit.grid.config import PdcConfig, PdcConfigError, load_config_timed
from labkit.grid.pmu import FrameServer, serve_until_signal

__all__ = ["StreamClient", "Pdc", "main", "LEAD_TIME"]

log = logging.getLogger("labkit.grid.pdc")

#: Frames stamped further than this ahead of the local clock are dropped (seconds).
LEAD_TIME = 5.0
_TS = struct.Struct(">II")


class _InputProtocol(asyncio.Protocol):
    """Protocol of one :class:`StreamClient` connection."""

    def __init__(self, client: StreamClient) -> None:
        self.client = client
        self.parser = c.StreamParser()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()
        self._last_cfg_request = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.request(c.Command.CFG2)

    def request(self, command: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            soc, frac = c.split_time(time.time())
            self.transport.write(c.encode_frame(c.CommandFrame(self.client.idcode, command, soc, frac)))

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        client = self.client
        for raw in self.parser.feed(data):
            ftype = (raw[1] >> 4) & 7
            if ftype == 0:
                if client.cfg is not None and len(raw) == client.frame_size:
                    client.frames += 1
                    client.on_frame(raw)
                else:
                    client.mismatched += 1
                    now = time.monotonic()
                    if now - self._last_cfg_request > 1.0:  # configuration changed upstream: ask again
                        self._last_cfg_request = now
                        self.request(c.Command.CFG2)
            elif ftype == c.FrameType.CFG2:
                try:
                    cfg = c.decode_frame(raw)
                except c.FrameError as exc:
                    log.warning("%s: bad CFG-2: %s", client.name, exc)
                    continue
                client.set_config(cfg)  # type: ignore[arg-type]
                self.request(c.Command.START)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class StreamClient:
    """Reconnecting C37.118 client: CFG-2 request, start, data callback, backoff on loss.

    Parameters
    ----------
    host, port
        Server address.
    idcode
        IDCODE put in the command frames.
    on_frame
        Called with each complete, CRC-checked data frame (bytes) matching the current CFG-2.
    on_config
        Called with each CFG-2 received.
    on_state
        Called with ``True`` when the stream (re)starts (first CFG-2 of a connection) and
        ``False`` when the connection is lost.
    backoff_min, backoff_max
        Reconnect delay bounds in seconds (doubling).
    idle_timeout
        A started connection with no bytes for this long is dropped and reconnected.
    """

    def __init__(self, host: str, port: int, idcode: int, *, on_frame: Callable[[bytes], None] = lambda b: None,
                 on_config: Callable[[c.ConfigFrame], None] = lambda cfg: None,
                 on_state: Callable[[bool], None] = lambda up: None, backoff_min: float = 0.1,
                 backoff_max: float = 5.0, idle_timeout: float = 3.0, name: str = "") -> None:
        self.host, self.port, self.idcode = host, port, idcode
        self.on_frame, self.on_config, self.on_state = on_frame, on_config, on_state
        self.backoff_min, self.backoff_max, self.idle_timeout = backoff_min, backoff_max, idle_timeout
        self.name = name or f"{host}:{port}"
        self.cfg: c.ConfigFrame | None = None
        self.frame_size = 0
        self.frames = 0
        self.mismatched = 0
        self.connects = 0
        self.up = False
        self._proto: _InputProtocol | None = None
        self._task: asyncio.Task | None = None

    def set_config(self, cfg: c.ConfigFrame) -> None:
        """Install a CFG-2 received from the server."""
        self.cfg = cfg
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


@dataclass
class _Input:
    """State of one PDC input."""

    name: str
    index: int
    client: StreamClient | None = None
    cfg: c.ConfigFrame | None = None
    connected: bool = False
    fresh: bool = False
    absent: bytes = b""
    block_size: int = 0
    time_base: int = 1_000_000
    in_output: bool = False
    rejected: str = ""


@dataclass
class PdcStats:
    """Counters of a running PDC."""

    frames_in: int = 0
    published: int = 0
    late: int = 0
    off_grid: int = 0
    future: int = 0
    incomplete: int = 0
    absent_blocks: int = 0
    events: list[dict] = field(default_factory=list)


class Pdc:
    """A phasor data concentrator (see the module docstring).

    Parameters
    ----------
    cfg
        The PDC configuration (:func:`labkit.grid.config.load_config`).
    """

    def __init__(self, cfg: PdcConfig) -> None:
        self.cfg = cfg
        self.rate = cfg.rate
        self.inputs = [_Input(name=i.name, index=k) for k, i in enumerate(cfg.inputs)]
        self.stats = PdcStats()
        self.out_cfg: c.ConfigFrame | None = None
        self._members: list[_Input] = []
        self._pending: dict[int, list] = {}
        self._last_k = -1
        self._n_active = 0
        self._first_out = True
        self.server = FrameServer(cfg.idcode, lambda: self.out_cfg, self.header)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_handle: asyncio.TimerHandle | None = None

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
            inp.client = StreamClient(spec.host, spec.port, spec.idcode, name=inp.name,
                                      on_frame=self._frame_cb(inp), on_config=self._config_cb(inp),
                                      on_state=self._state_cb(inp), backoff_min=self.cfg.backoff_min,
                                      backoff_max=self.cfg.backoff_max)
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
            same = inp.cfg is not None and c.encode_frame(_strip_time(inp.cfg)) == c.encode_frame(_strip_time(cfg))
            inp.cfg = cfg
            inp.time_base = cfg.time_base
            inp.block_size = cfg.data_frame_size - 16
            inp.absent = b"".join(c.block_bytes(p, p.absent_block()) for p in cfg.pmus)
            if not same:
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
                     len(self.out_cfg.pmus) if self.out_cfg else 0, len(self._members))

    def _rebuild_output(self) -> None:
        members, pmus, seen = [], [], {}
        cfg_size, data_size = _CFG2_FIXED, 16
        for inp in self.inputs:
            inp.in_output = False
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
            inp.in_output = True
            members.append(inp)
            pmus.extend(inp.cfg.pmus)
        self._members = members
        self.out_cfg = c.ConfigFrame(idcode=self.cfg.idcode, pmus=tuple(pmus), data_rate=self.rate) if pmus else None
        self._recount()
        log.info("output configuration: %d PMUs from %d inputs", len(pmus), len(members))

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
        self._n_active = sum(1 for i in self._members if i.connected)

    # ------------------------------------------------------------------ data path
    def _frame_cb(self, inp: _Input) -> Callable[[bytes], None]:
        idx = inp.index
        n_inputs = len(self.inputs)
        stats = self.stats
        rate = self.rate

        def on_frame(raw: bytes) -> None:
            stats.frames_in += 1
            if not inp.in_output:
                return
            soc, frac = _TS.unpack_from(raw, 6)
            x = (soc + (frac & 0xFFFFFF) / inp.time_base) * rate
            k = round(x)
            if abs(x - k) > 0.1:
                stats.off_grid += 1
                return
            if k <= self._last_k:
                stats.late += 1
                return
            bucket = self._pending.get(k)
            if bucket is None:
                if k / rate > time.time() + LEAD_TIME:
                    stats.future += 1
                    return
                bucket = self._pending[k] = [0] + [None] * n_inputs
                self._schedule(k)
            if bucket[idx + 1] is None:
                bucket[idx + 1] = raw
                bucket[0] += 1
                if bucket[0] >= self._n_active:
                    self._publish_through(k)
        return on_frame

    def _schedule(self, k: int) -> None:
        loop = self._loop
        assert loop is not None
        delay = k / self.rate + self.cfg.wait_window - time.time()
        loop.call_at(loop.time() + max(0.0, delay), self._deadline, k)

    def _deadline(self, k: int) -> None:
        if k in self._pending:
            self._publish_through(k)

    def _publish_complete(self) -> None:
        for k in sorted(self._pending):
            if self._pending[k][0] >= self._n_active:
                self._publish_through(k)
            else:
                break

    def _publish_through(self, k_max: int) -> None:
        for k in sorted(kk for kk in self._pending if kk <= k_max):
            self._publish(k, self._pending.pop(k))
        self._last_k = max(self._last_k, k_max)

    def _publish(self, k: int, bucket: list) -> None:
        if self.out_cfg is None:
            return
        parts = []
        fresh = []
        missing = 0
        for inp in self._members:
            raw = bucket[inp.index + 1]
            if raw is not None and len(raw) - 16 == inp.block_size:
                parts.append(raw[14:-2])
                if inp.fresh:
                    fresh.append(inp)
            else:
                parts.append(inp.absent)
                missing += 1
        if missing:
            self.stats.incomplete += 1
            self.stats.absent_blocks += missing
        soc, idx = divmod(k, self.rate)
        frame = c.wrap_data(self.cfg.idcode, soc, round(idx * 1_000_000 / self.rate), b"".join(parts))
        sent = self.server.broadcast(frame)
        self.stats.published += 1
        if sent:  # "forwarded" = sent to at least one client
            for inp in fresh:
                self._first_frame(inp, k)
            if self._first_out:
                self._first_out = False
                self._event("output", k, "start")

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
    cli.add_logging(ap)
    args = ap.parse_args(argv)
    cli.setup_logging(args)
    log.info("process started")  # the downtime experiments time the restart up to this line
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
