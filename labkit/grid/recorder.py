"""Record every data frame of a C37.118 stream, per PMU, to a CSV file.

The recorder is a client of a PMU or PDC (it reconnects with backoff like a PDC input). For
each data frame and each PMU block in it, it writes one row:

=================  ========  ===================================================================
column             dtype     meaning
=================  ========  ===================================================================
``stream_idcode``  uint16    IDCODE of the stream (the PMU or PDC the recorder listens to)
``pmu_idcode``     uint16    IDCODE of the PMU block (from the stream's CFG-2)
``station``        string    STN of the PMU block
``soc``            uint32    SOC of the frame
``fracsec``        uint32    24-bit fraction-of-second count (FRACSEC bits 23-0)
``time_base``      uint32    TIME_BASE of the stream's CFG-2
``frame_time``     float64   ``soc + fracsec / time_base`` (UNIX seconds)
``arrival``        float64   local clock (UNIX seconds) when the frame was received
``stat``           uint16    the block's STAT word (bits 15-14 = 10: absent data inserted by a PDC)
=================  ========  ===================================================================

Rows are appended, whole lines at a time, every ``flush_every`` seconds, after a header line:
the file is readable at any moment, also after the recorder was killed. :func:`read_frames`
reads it back with the dtypes above, and :mod:`labkit.measure.stream` turns the rows into
downtime and gaps. The format is CSV, not parquet, so the runtime image needs no pyarrow
(about 170 MB that every node would unpack); the host turns the frames into parquet tables.

A recorder running unattended (in a pod) is driven through files: ``--status-file`` is
rewritten at every flush with a JSON summary (frames so far; frame time and arrival of the
last frame carrying data, i.e. with at least one PMU block not flagged absent; the last gap:
at least ``--gap`` seconds between such frames, or any pause in which the connection was lost,
however short, since a PDC that restarts in less than ``--gap`` still drops its clients; whether
it is closed), and creating
``--stop-file`` stops it (checked every flush), as SIGTERM does.

CLI::

    python -m labkit.grid.recorder --port 4712 --idcode 100 --out frames.csv [--duration 60] \
        [--stop-file stop] [--status-file status.json] [--backoff-max 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import math
import os
import signal
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from labkit.grid import c37118 as c
from labkit.grid import cli
from labkit.grid.pdc import StreamClient

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Recorder", "COLUMNS", "read_frames", "main"]

log = logging.getLogger("labkit.grid.recorder")

#: Columns of the recorder's CSV file, in order, with the dtype :func:`read_frames` gives each.
COLUMNS: dict[str, str] = {"stream_idcode": "uint16", "pmu_idcode": "uint16", "station": "string", "soc": "uint32",
                           "fracsec": "uint32", "time_base": "uint32", "frame_time": "float64", "arrival": "float64",
                           "stat": "uint16"}
_TS = struct.Struct(">HII")


class Recorder:
    """Client that records per-PMU frame timestamps and arrival times.

    Parameters
    ----------
    host, port, idcode
        The stream to record.
    out
        CSV file to write (created, or appended to after its header).
    flush_every
        Seconds between writes.
    gap
        Seconds between data frames that make the ``last_gap`` of :meth:`status`; a lost
        connection makes one however short.
    """

    def __init__(self, host: str, port: int, idcode: int, out: str | Path, flush_every: float = 1.0,
                 backoff_min: float = 0.1, backoff_max: float = 2.0, gap: float = 0.5) -> None:
        self.out = Path(out)
        self.flush_every = flush_every
        self.client = StreamClient(host, port, idcode, on_frame=self._on_frame, on_config=self._on_config,
                                   on_state=self._on_state, backoff_min=backoff_min, backoff_max=backoff_max,
                                   name=f"recorder {host}:{port}")
        self._rows: list[tuple[int, int, str, int, int, int, float, float, int]] = []
        self._blocks: list[tuple[int, int, str]] = []   # (stat offset, pmu idcode, station)
        self._time_base = 1_000_000
        self._file: IO[str] | None = None
        self._flusher: asyncio.Task | None = None
        self.frames = 0
        self.last_frame_time = float("nan")
        self.last_arrival = float("nan")
        self.gap = gap
        self.last_gap: tuple[float, float] | None = None  # (last old, first new) frame times
        self._lost = False  # the connection was lost since the last data frame
        self.status_file: Path | None = None

    def _on_config(self, cfg: c.ConfigFrame) -> None:
        codec = c.DataCodec(cfg)
        self._blocks = [(start, p.idcode, p.station) for (start, _), p in zip(codec.offsets, cfg.pmus)]
        self._time_base = cfg.time_base

    def _on_state(self, up: bool) -> None:
        if not up:
            self._lost = True

    def _on_frame(self, raw: bytes) -> None:
        arrival = time.time()
        stream, soc, frac = _TS.unpack_from(raw, 4)
        frac &= 0xFFFFFF
        ft = soc + frac / self._time_base
        data = False
        for off, pid, station in self._blocks:
            stat = (raw[off] << 8) | raw[off + 1]
            self._rows.append((stream, pid, station, soc, frac, self._time_base, ft, arrival, stat))
            data = data or (stat & 0xC000) != 0x8000  # bits 15-14 = 10: absent data inserted by a PDC
        self.frames += 1
        if data:
            paused = ft - self.last_frame_time >= self.gap  # False while last_frame_time is NaN
            if paused or (self._lost and not math.isnan(self.last_frame_time)):
                self.last_gap = (self.last_frame_time, ft)
            self._lost = False
            self.last_frame_time, self.last_arrival = ft, arrival

    def flush(self) -> int:
        """Append the buffered rows to the file (its header first); return how many rows were written.

        Floats are written as ``repr`` (shortest round-trip form), so :func:`read_frames` gives back
        the exact float64 values.
        """
        if self._file is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            new = not self.out.exists() or self.out.stat().st_size == 0
            self._file = self.out.open("a", newline="")
            if new:
                csv.writer(self._file).writerow(COLUMNS)
        rows, self._rows = self._rows, []
        csv.writer(self._file).writerows(rows)
        self._file.flush()
        return len(rows)

    def status(self, closed: bool = False) -> dict[str, object]:
        """Frames so far, frame time and arrival (UNIX s, ``None`` before any frame) of the last one."""
        def num(x: float) -> float | None:
            return None if x != x else x  # NaN -> None (JSON)
        return {"frames": self.frames, "last_frame_time": num(self.last_frame_time),
                "last_arrival": num(self.last_arrival), "last_gap": list(self.last_gap) if self.last_gap else None,
                "written_at": time.time(), "closed": closed}

    def write_status(self, closed: bool = False) -> None:
        """Atomically rewrite :attr:`status_file` (if set) with :meth:`status`."""
        if self.status_file is None:
            return
        tmp = self.status_file.with_name(self.status_file.name + ".tmp")
        tmp.write_text(json.dumps(self.status(closed)))
        os.replace(tmp, self.status_file)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            self.flush()
            self.write_status()

    def start(self) -> None:
        """Start recording (in the running event loop)."""
        self.client.start()
        self._flusher = asyncio.ensure_future(self._flush_loop())

    async def close(self) -> None:
        """Stop the client, write the remaining rows and close the file."""
        await self.client.close()
        if self._flusher is not None:
            self._flusher.cancel()
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        self.write_status(closed=True)


def read_frames(source: str | Path | IO[str]) -> pd.DataFrame:
    """A recorder's CSV file (a path or an open text stream) as a DataFrame with the dtypes of :data:`COLUMNS`."""
    import pandas as pd  # the host's side: the recorder itself writes with the standard library alone

    return pd.read_csv(source, dtype=COLUMNS, float_precision="round_trip")


async def _run(args: argparse.Namespace) -> None:
    from labkit.grid.pmu import wait_port_file

    port = args.port if args.port_file is None else await wait_port_file(args.port_file)
    rec = Recorder(args.host, port, args.idcode, args.out, args.flush_every, backoff_max=args.backoff_max,
                   gap=args.gap)
    rec.status_file = Path(args.status_file) if args.status_file else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rec.start()
    watcher = asyncio.ensure_future(_watch_stop_file(Path(args.stop_file), stop, args.flush_every)) \
        if args.stop_file else None
    print(f"recording {args.host}:{port} -> {args.out}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except asyncio.TimeoutError:
        pass
    if watcher is not None:
        watcher.cancel()
    await rec.close()
    log.info("recorded %d frames", rec.frames)


async def _watch_stop_file(path: Path, stop: asyncio.Event, every: float) -> None:
    """Set ``stop`` once ``path`` exists (checked every ``every`` seconds)."""
    while not path.exists():
        await asyncio.sleep(every)
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m labkit.grid.recorder``."""
    ap = argparse.ArgumentParser(prog="python -m labkit.grid.recorder", description="C37.118 frame recorder")
    cli.add_upstream(ap)
    ap.add_argument("--out", required=True, help="CSV file to write")
    ap.add_argument("--duration", type=float, default=None, help="seconds to record (default: until SIGTERM)")
    ap.add_argument("--flush-every", type=float, default=1.0)
    ap.add_argument("--stop-file", default=None, help="stop (and close the file) once this file exists")
    ap.add_argument("--status-file", default=None, help="JSON summary rewritten at every flush")
    ap.add_argument("--backoff-max", type=float, default=2.0, help="longest reconnect delay (seconds)")
    ap.add_argument("--gap", type=float, default=0.5,
                    help="seconds between data frames that make a gap (status); a lost connection makes one too")
    cli.add_logging(ap)
    args = ap.parse_args(argv)
    cli.setup_logging(args)
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
