"""A C37.118 PMU server over TCP, fed by a power flow with seeded noise.

The server answers command frames (send CFG-1 / CFG-2 / CFG-3 / header, start / stop data)
and, while a client has started the stream, sends it one data frame per reporting instant
(``rate`` frames per second, 30 by default), timestamped from the system clock: frame ``k``
has time ``k / rate`` exactly (SOC = k // rate, FRACSEC = round((k % rate) * TIME_BASE / rate)).

One process can act as one PMU (one bus) or as a station with several PMU blocks in one
stream (``--bus 1 --bus 2``); block ``i`` has IDCODE ``idcode + i``.

:class:`FrameServer` is the protocol part (commands, clients, slow or vanished peers) and is
reused by the PDC's output. It obeys only commands addressed to its own IDCODE. Garbage, half
frames and vanished peers only affect the client that sent them: each connection's parsing
work per event-loop turn is bounded and its bad frames are counted and logged
(:mod:`labkit.grid.connection`).

CLI::

    python -m labkit.grid.pmu --port 4712 --idcode 1 --network case14 --bus 3 --rate 30 --seed 1

prints ``listening <host> <port>`` once bound (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from labkit.grid import c37118 as c
from labkit.grid import cli
from labkit.grid.connection import FrameProtocol, WarnLimiter

__all__ = ["FrameServer", "PmuServer", "build_config", "main", "RATES"]

log = logging.getLogger("labkit.grid.pmu")

#: Reporting rates the PMU accepts (frames per second).
RATES = (1, 2, 5, 10, 12, 15, 20, 25, 30, 50, 60, 100, 120)
#: A client whose unsent bytes exceed this is skipped for a frame (counted in ``dropped``).
WRITE_LIMIT = 1 << 20


class _ClientProtocol(FrameProtocol):
    """One connected client of a :class:`FrameServer`."""

    def __init__(self, server: FrameServer) -> None:
        super().__init__(log, "client")
        self.server = server
        self.streaming = False
        self.dropped = 0
        self.peer = None
        self.foreign: WarnLimiter | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer = transport.get_extra_info("peername")
        self.label = f"client {_address(self.peer)}"
        self.garbage.what = f"{self.label}: bad frames"
        self.foreign = WarnLimiter(log, f"{self.label}: commands for another IDCODE ignored")
        self.server.clients.add(self)
        log.info("%s connected", self.label)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.foreign is not None:
            self.foreign.flush()
        self.server.clients.discard(self)
        self.server.streaming.discard(self)
        log.info("%s gone (%s)", self.label, exc or "closed")

    def frame_received(self, raw: bytes) -> None:
        try:
            frame = c.decode_frame(raw)
        except c.FrameError as exc:
            self.count_bad_frame(str(exc))
            return
        if isinstance(frame, c.CommandFrame):
            self.server.handle_command(self, frame)
        else:
            self.server.ignored_frames += 1

    def garbage_received(self, frames: int, skipped: int) -> None:
        self.server.bad_frames += frames
        self.server.skipped_bytes += skipped

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > WRITE_LIMIT:
            self.dropped += 1
            self.server.dropped += 1
            return
        self.transport.write(data)


def _address(peer: object) -> str:
    """``host:port`` of a socket peer address (as asyncio gives it)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class FrameServer:
    """The server side of C37.118 over TCP: command handling and data fan-out.

    Parameters
    ----------
    idcode
        Stream IDCODE of the frames this server sends.
    config
        Callable returning the current CFG-2 (or ``None`` while not known yet); config
        requests wait until :meth:`set_ready` is called.
    header
        Callable returning the header frame text.
    """

    def __init__(self, idcode: int, config: Callable[[], c.ConfigFrame | None],
                 header: Callable[[], str]) -> None:
        self.idcode = idcode
        self._config = config
        self._header = header
        self.clients: set[_ClientProtocol] = set()
        self.streaming: set[_ClientProtocol] = set()
        self.ready = asyncio.Event()
        self.bad_frames = 0
        self.skipped_bytes = 0
        self.ignored_frames = 0
        self.foreign_commands = 0
        self.dropped = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port``; return the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientProtocol(self), host, port)
        return self._server.sockets[0].getsockname()[1]

    def set_ready(self) -> None:
        """Configuration known: answer pending and future configuration requests."""
        self.ready.set()

    def handle_command(self, client: _ClientProtocol, cmd: c.CommandFrame) -> None:
        """Act on one command frame from ``client``.

        A command's IDCODE names the stream it is for (C37.118.2-2011, 6.2): commands for another
        IDCODE are ignored, counted in :attr:`foreign_commands` and logged (rate-limited).
        """
        code = cmd.command
        if cmd.idcode != self.idcode:
            self.foreign_commands += 1
            if client.foreign is not None:
                client.foreign.add(1, f"last: CMD {code} for IDCODE {cmd.idcode}; this stream is IDCODE {self.idcode}")
            return
        if code == c.Command.START:
            client.streaming = True
            self.streaming.add(client)
        elif code == c.Command.STOP:
            client.streaming = False
            self.streaming.discard(client)
        elif code in (c.Command.CFG1, c.Command.CFG2, c.Command.CFG3):
            kind = {c.Command.CFG1: c.FrameType.CFG1, c.Command.CFG2: c.FrameType.CFG2,
                    c.Command.CFG3: c.FrameType.CFG3}[c.Command(code)]
            if self.ready.is_set():
                self._send_config_now(client, kind)
            else:
                self._spawn(self._send_config(client, kind))
        elif code == c.Command.HEADER:
            soc, frac = c.split_time(time.time())
            client.send(c.encode_frame(c.HeaderFrame(self.idcode, self._header(), soc, frac)))
        else:
            self.ignored_frames += 1
            log.info("%s sent unsupported command %d", client.label, code)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_config(self, client: _ClientProtocol, kind: c.FrameType) -> None:
        await self.ready.wait()
        self._send_config_now(client, kind)

    def _send_config_now(self, client: _ClientProtocol, kind: c.FrameType) -> None:
        cfg = self._config()
        if cfg is None:
            return
        soc, frac = c.split_time(time.time(), cfg.time_base)
        frame = cfg.as_kind(kind)
        try:
            client.send(c.encode_frame(c.ConfigFrame(**{**_fields(frame), "soc": soc, "fracsec": frac})))
        except c.FrameError as exc:
            log.error("cannot send %s to %s: %s", kind.name, client.label, exc)

    def broadcast(self, data: bytes) -> int:
        """Send ``data`` to every client that started the stream; return how many got it."""
        n = 0
        for client in list(self.streaming):
            client.send(data)
            n += 1
        return n

    async def close(self) -> None:
        """Stop listening and drop every client."""
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()


def _fields(cfg: c.ConfigFrame) -> dict:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


def build_config(idcode: int, channels: Sequence[Sequence[str]], stations: Sequence[str], rate: int,
                 fnom: int = 50, fmt: str = "float", polar: bool = False,
                 peaks: Sequence[np.ndarray] | None = None) -> c.ConfigFrame:
    """CFG-2 of a PMU station: one PMU block per entry of ``channels`` (IDCODE ``idcode + i``).

    ``fmt="int"`` selects 16-bit phasors with PHUNIT scaled from ``peaks`` (largest expected
    magnitude per channel) so that 120 % of the peak fits.
    """
    if fmt not in ("float", "int"):
        raise ValueError(f"format must be 'float' or 'int', got {fmt!r}")
    pmus = []
    for i, (names, station) in enumerate(zip(channels, stations)):
        phunit: tuple[int, ...] = ()
        if fmt == "int":
            pk = np.ones(len(names)) if peaks is None else np.asarray(peaks[i])
            scale = np.maximum(1, np.ceil(pk * 1.2 / 32767 / 1e-5)).astype(int)
            phunit = tuple(((1 if n.startswith("I") else 0) << 24) | int(s) for n, s in zip(names, scale))
        pmus.append(c.PmuConfig(station=station[:16], idcode=idcode + i, phasor_names=tuple(names), polar=polar,
                                phasor_float=fmt == "float", analog_float=True, freq_float=fmt == "float",
                                phunit=phunit, fnom=fnom))
    return c.ConfigFrame(idcode=idcode, pmus=tuple(pmus), data_rate=rate)


class PmuServer:
    """A PMU (or a station of PMUs) streaming noisy power-flow phasors.

    Parameters
    ----------
    idcode
        Stream IDCODE (PMU block ``i`` uses ``idcode + i``).
    network, buses, seed, sigma_mag, sigma_ang
        See :class:`labkit.grid.phasors.PhasorSource`.
    rate
        Frames per second, one of :data:`RATES`.
    fmt, polar
        Phasor format: ``"float"`` (float32 phasors/FREQ) or ``"int"`` (16-bit), rectangular
        unless ``polar``.
    """

    def __init__(self, idcode: int, network: str = "case14", buses: Sequence[int] = (0,), rate: int = 30,
                 seed: int = 0, fmt: str = "float", polar: bool = False, sigma_mag: float | None = None,
                 sigma_ang: float | None = None, freq_sigma: float = 0.002) -> None:
        from labkit.grid.phasors import SIGMA_ANG, SIGMA_MAG, PhasorSource

        if rate not in RATES:
            raise ValueError(f"rate must be one of {RATES}, got {rate!r}")
        if not 0 <= idcode <= 0xFFFF - len(buses):
            raise ValueError(f"idcode must leave room for {len(buses)} PMU IDCODEs below 65536, got {idcode}")
        self.idcode, self.rate = idcode, rate
        self.source = PhasorSource(network, buses, seed=seed,
                                   sigma_mag=SIGMA_MAG if sigma_mag is None else sigma_mag,
                                   sigma_ang=SIGMA_ANG if sigma_ang is None else sigma_ang)
        self.network = network
        f_hz = float(getattr(self.source.model.net, "f_hz", 50.0))
        self.fnom = 60 if abs(f_hz - 60) < abs(f_hz - 50) else 50
        self.freq_sigma = freq_sigma
        names = [[ch.name for ch in chans] for chans in self.source.channels]
        self.cfg = build_config(idcode, names, [f"{network[:8]} B{b}" for b in buses], rate, self.fnom, fmt, polar,
                                [np.abs(t) for t in self.source.truth])
        self.codec = c.DataCodec(self.cfg)
        self.server = FrameServer(idcode, lambda: self.cfg, self.header)
        self.sent = 0
        self._task: asyncio.Task | None = None

    def header(self) -> str:
        """Header frame text: what this PMU measures and how it is generated."""
        s = self.source
        return (f"labkit PMU network={self.network} buses={s.buses} rate={self.rate} "
                f"sigma_mag={s.sigma_mag} sigma_ang_rad={s.sigma_ang:.6g} tve_bound={s.max_tve():.4g}")

    def frame_at(self, k: int) -> bytes:
        """Encoded data frame for reporting instant ``k`` (time ``k / rate``)."""
        soc, idx = divmod(k, self.rate)
        frac = round(idx * self.cfg.time_base / self.rate)
        draws = self.source.sample()
        freqs = self.fnom + self.freq_sigma * self.source.rng.standard_normal(len(draws))
        blocks = tuple(p.to_wire(z, float(f), 0.0) for p, z, f in zip(self.cfg.pmus, draws, freqs))
        return self.codec.encode(c.DataFrame(self.idcode, soc, frac, blocks))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen and start the reporting loop; return the bound port."""
        bound = await self.server.start(host, port)
        self.server.set_ready()
        self._task = asyncio.ensure_future(self._report())
        return bound

    async def _report(self) -> None:
        k = math.floor(time.time() * self.rate) + 1
        while True:
            delay = k / self.rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # fell far behind (suspended): skip to now
                k = math.floor(time.time() * self.rate) + 1
                continue
            if self.server.streaming:
                self.server.broadcast(self.frame_at(k))
                self.sent += 1
            k += 1

    async def close(self) -> None:
        """Stop reporting and close every connection."""
        if self._task is not None:
            self._task.cancel()
        await self.server.close()


async def serve_until_signal(start: Callable[[], object], close: Callable[[], object], host: str, port: int,
                             label: str, port_file: str | None = None) -> None:
    """Start a server, print ``listening <host> <port>`` (and write the port to ``port_file``),
    run until SIGINT/SIGTERM, close. The signal and the end of the close are logged (``stopping on
    SIGTERM``, ``stopped``): the downtime experiments time a container's termination by them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(sig: signal.Signals) -> None:
        log.info("%s stopping on %s", label, sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    bound = await start(host, port)  # type: ignore[operator]
    if port_file:
        tmp = Path(f"{port_file}.tmp")
        tmp.write_text(f"{bound}\n")
        tmp.replace(port_file)  # atomic: readers never see a half-written file
    print(f"listening {host} {bound}", flush=True)
    log.info("%s listening on %s:%d", label, host, bound)
    await stop.wait()
    await close()  # type: ignore[operator]
    log.info("%s stopped", label)


async def wait_port_file(path: str, timeout: float = 300.0) -> int:
    """Wait until a server wrote its port to ``path`` (see ``--port-file``) and return it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(Path(path).read_text().strip())
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no port in {path} after {timeout} s") from None
            await asyncio.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m labkit.grid.pmu``."""
    ap = argparse.ArgumentParser(prog="python -m labkit.grid.pmu", description="C37.118 PMU server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4712, help="TCP port (0 = any free port)")
    ap.add_argument("--port-file", default=None, help="write the bound port to this file")
    ap.add_argument("--idcode", type=int, required=True, help="stream IDCODE (PMU i gets idcode+i)")
    ap.add_argument("--network", default="case14", help="case14 | case33bw | cigre_mv")
    ap.add_argument("--bus", type=int, action="append", help="pandapower bus of a PMU (repeat for a station)")
    ap.add_argument("--rate", type=int, default=30, help=f"frames per second, one of {RATES}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", dest="fmt", choices=("float", "int"), default="float")
    ap.add_argument("--polar", action="store_true")
    cli.add_logging(ap)
    args = ap.parse_args(argv)
    cli.setup_logging(args)
    try:
        pmu = PmuServer(args.idcode, args.network, args.bus or [0], args.rate, args.seed, args.fmt, args.polar)
    except ValueError as exc:
        ap.error(str(exc))
    asyncio.run(serve_until_signal(pmu.start, pmu.close, args.host, args.port, f"PMU {args.idcode}", args.port_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
