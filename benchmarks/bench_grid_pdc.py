"""PDC capacity: how many 30-fps PMUs one PDC process concentrates on one core.

For each N, this script starts N synthetic PMUs (one asyncio process, one TCP server per PMU,
real C37.118 on loopback: each answers the CFG-2 / start commands and sends a data frame per
1/30 s with the current timestamp and CRC), writes a PDC config with the N inputs, starts the
real PDC program (``python -m labkit.grid.pdc``) pinned to one CPU, and records its output stream
for a measuring window after a warm-up. A PMU frame counts as *late or dropped* when its block
is absent (STAT bits 15-14 = 10) in an output frame, or when a whole output frame is missing.

PMUs: ``--phasors K`` gives each K float phasors; ``--kit-pmus`` gives them the configurations
of the kit's own PMUs (``labkit.grid.pmu``: case14, one bus each, buses taken in turn: 2 to 6
phasors) and data frames the kit's PMU encoded. The script first prints where C37.118's 16-bit
FRAMESIZE caps one concentrated stream for these PMUs (the PDC's CFG-2 and data frame must
each fit in 65,535 bytes; the PDC rejects inputs beyond that with a logged error).

    python benchmarks/bench_grid_pdc.py --n 500 1000 1300 --seconds 10
    python benchmarks/bench_grid_pdc.py --kit-pmus --n 200 400 500 --seconds 10

prints one line per N: the PMU frames/s the emulator wrote, output fps, late-or-dropped PMU
frames per second (all PMUs together), the PDC's CPU share and its CPU time per input frame
(which sets how many PMUs one core can take: 1 / (30 x that)), and the lag of the last received
frame behind the clock (a pipeline that falls behind real time shows as out fps < 30 and a
growing lag, even with nothing dropped). Capacity = the largest N with <= 1 late-or-dropped
frame per second.
The synthetic PMUs and the measuring client share one process (and the machine); on a loaded
machine their own scheduling delay shows up as late frames, so compare with the PDC's CPU share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit.grid import c37118 as c
from labkit.grid.pdc import _CFG2_FIXED, StreamClient, _cfg2_size

HOST = "127.0.0.1"
RATE = 30


class _PmuProto(asyncio.Protocol):
    def __init__(self, owner: SyntheticPmu) -> None:
        self.owner = owner
        self.parser = c.StreamParser()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for raw in self.parser.feed(data):
            cmd = c.decode_frame(raw)
            if isinstance(cmd, c.CommandFrame) and cmd.command == c.Command.CFG2:
                self.transport.write(self.owner.cfg_bytes)
            elif isinstance(cmd, c.CommandFrame) and cmd.command == c.Command.START:
                self.owner.clients.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.clients.discard(self.transport)


class SyntheticPmu:
    """A C37.118 PMU sending a template data frame with the current time; ``cfg`` is its CFG-2."""

    def __init__(self, cfg: c.ConfigFrame, frame: bytes) -> None:
        self.cfg = cfg
        self.cfg_bytes = c.encode_frame(cfg)
        self.template = bytearray(frame)
        self.clients: set = set()

    @classmethod
    def with_phasors(cls, idcode: int, phasors: int) -> SyntheticPmu:
        """``phasors`` float phasors (a voltage, then currents)."""
        names = ["V:0"] + [f"I:line:{k}:f" for k in range(phasors - 1)]
        pmu = c.default_pmu_config(f"SYN{idcode}", idcode, names)
        cfg = c.ConfigFrame(idcode=idcode, pmus=(pmu,), data_rate=RATE)
        blk = pmu.to_wire([7000 + 100j] + [100 - 20j] * (phasors - 1), 50.0)
        return cls(cfg, c.DataCodec(cfg).encode(c.DataFrame(idcode, 0, 0, (blk,))))

    @classmethod
    def like_the_kit(cls, idcode: int, bus: int) -> SyntheticPmu:
        """The configuration and a data frame of the kit's PMU of case14 bus ``bus`` (``labkit.grid.pmu``)."""
        from labkit.grid.pmu import PmuServer

        pmu = PmuServer(idcode, "case14", [bus], rate=RATE, seed=idcode)
        return cls(pmu.cfg, pmu.frame_at(0))

    def frame(self, soc: int, frac: int) -> bytes:
        t = self.template
        struct.pack_into(">II", t, 6, soc, frac)
        struct.pack_into(">H", t, len(t) - 2, c.crc_ccitt(memoryview(t)[:-2]))
        return bytes(t)


async def _pmu_ticker(pmus: list[SyntheticPmu], sent: list[int]) -> None:
    """Send every started PMU's frame of each reporting instant; ``sent[0]`` counts the frames written."""
    k = int(time.time() * RATE) + 1
    while True:
        delay = k / RATE - time.time()
        await asyncio.sleep(max(0.0, delay))  # always yield: the measuring client shares this loop
        soc, idx = divmod(k, RATE)
        frac = round(idx * 1_000_000 / RATE)
        for p in pmus:
            if p.clients:
                data = p.frame(soc, frac)
                for tr in p.clients:
                    tr.write(data)
                    sent[0] += 1
        k += 1


def make_pmus(n: int, phasors: int, kit: bool) -> list[SyntheticPmu]:
    """``n`` PMUs with IDCODEs 1..n: ``phasors`` float phasors each, or the kit's (case14 buses in turn)."""
    if kit:
        return [SyntheticPmu.like_the_kit(i + 1, i % 14) for i in range(n)]
    return [SyntheticPmu.with_phasors(i + 1, phasors) for i in range(n)]


def framesize_cap(pmus: list[SyntheticPmu]) -> tuple[int, int]:
    """How many of ``pmus`` (in order) fit one concentrated stream: (by the CFG-2, by the data frame)."""
    cfg_size, data_size, by_cfg, by_data = _CFG2_FIXED, 16, None, None
    for i, p in enumerate(pmus):
        cfg_size += _cfg2_size(p.cfg) - _CFG2_FIXED
        data_size += p.cfg.data_frame_size - 16
        if by_cfg is None and cfg_size > c.MAX_FRAME:
            by_cfg = i
        if by_data is None and data_size > c.MAX_FRAME:
            by_data = i
    return by_cfg or len(pmus), by_data or len(pmus)


async def run_one(n: int, seconds: float, warmup: float, cpu: int | None, wait: float = 0.2,
                  phasors: int = 1, kit: bool = False) -> dict:
    loop = asyncio.get_running_loop()
    pmus = make_pmus(n, phasors, kit)
    servers = [await loop.create_server(lambda p=p: _PmuProto(p), HOST, 0) for p in pmus]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    sent = [0]
    ticker = asyncio.ensure_future(_pmu_ticker(pmus, sent))
    tmp = Path(tempfile.mkdtemp(prefix="bench_pdc_"))
    cfg = {"name": "bench", "idcode": 60000, "wait_window": wait, "output_port": 0, "config_timeout": 60,
           "inputs": [{"name": f"p{i}", "host": HOST, "port": port, "idcode": i + 1} for i, port in enumerate(ports)]}
    (tmp / "pdc.json").write_text(json.dumps(cfg))
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.Popen([sys.executable, "-m", "labkit.grid.pdc", "--config", str(tmp / "pdc.json"),
                             "--port-file", str(tmp / "port"), "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "pdc.log", "w"), preexec_fn=pre)
    stats = {"frames": 0, "absent": 0, "times": []}
    offsets: list[int] = []
    measuring = False

    def on_config(cfgf: c.ConfigFrame) -> None:
        offsets[:] = [a for a, _ in c.DataCodec(cfgf).offsets]

    def on_frame(raw: bytes) -> None:
        if not measuring:
            return
        stats["frames"] += 1
        stats["times"].append(struct.unpack_from(">II", raw, 6))
        stats["absent"] += sum(1 for o in offsets if raw[o] & 0xC0 == 0x80)

    try:
        deadline = time.monotonic() + 120
        while not (tmp / "port").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"PDC did not start: {(tmp / 'pdc.log').read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        port = int((tmp / "port").read_text())
        client = StreamClient(HOST, port, 60000, on_frame=on_frame, on_config=on_config, idle_timeout=30)
        client.start()
        while len(offsets) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PDC output never listed {n} PMUs (got {len(offsets)})")
            await asyncio.sleep(0.2)
        await asyncio.sleep(warmup)
        cpu0 = _cpu_seconds(proc.pid)
        sent0 = sent[0]
        t0 = time.monotonic()
        measuring = True
        await asyncio.sleep(seconds)
        measuring = False
        elapsed = time.monotonic() - t0
        in_rate = (sent[0] - sent0) / elapsed
        last = stats["times"][-1] if stats["times"] else (0, 0)
        lag = time.time() - (last[0] + last[1] / 1e6)
        cpu = (_cpu_seconds(proc.pid) - cpu0) / elapsed
        await client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:   # a PDC swamped by its inputs: do not leave it running
            proc.kill()
            proc.wait()
        ticker.cancel()
        for s in servers:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)
    ks = sorted(soc * RATE + round(frac * RATE / 1e6) for soc, frac in stats["times"])
    missing_out = (ks[-1] - ks[0] + 1 - len(ks)) if ks else int(seconds * RATE)
    late = stats["absent"] + missing_out * n
    return {"n": n, "fps": stats["frames"] / elapsed, "late_per_s": late / elapsed, "cpu": cpu,
            "missing_output_frames": missing_out, "lag": lag, "in_rate": in_rate,
            "us_per_frame": cpu / in_rate * 1e6 if in_rate else float("nan")}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[50, 200, 500, 1000])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--cpu", type=int, default=0, help="CPU the PDC is pinned to (-1: not pinned)")
    ap.add_argument("--wait", type=float, default=0.2, help="PDC wait window (lag time), seconds")
    ap.add_argument("--phasors", type=int, default=1, help="float phasors per PMU")
    ap.add_argument("--kit-pmus", action="store_true", help="the kit's own PMUs (case14 buses in turn, 2-6 phasors)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    probe = make_pmus(4000 if not a.kit_pmus else 2000, a.phasors, a.kit_pmus)
    by_cfg, by_data = framesize_cap(probe)
    what = "kit PMUs (case14 buses in turn)" if a.kit_pmus else f"{a.phasors}-phasor PMUs"
    print(f"FRAMESIZE cap for {what}: the output CFG-2 holds {by_cfg}, a data frame {by_data} "
          f"(one stream: {min(by_cfg, by_data)})")
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'PMUs':>6}{'in fr/s':>9}{'out fps':>9}{'late+dropped/s':>16}{'PDC CPU':>9}{'PDC us/in frame':>17}"
          f"{'lag s':>8}  verdict", flush=True)
    for n in a.n:
        r = asyncio.run(run_one(n, a.seconds, a.warmup, None if a.cpu < 0 else a.cpu, a.wait, a.phasors, a.kit_pmus))
        ok = r["late_per_s"] <= 1.0 and r["fps"] >= RATE - 1 and r["lag"] < 1.0
        print(f"{r['n']:>6}{r['in_rate']:>9.0f}{r['fps']:>9.1f}{r['late_per_s']:>16.2f}{100 * r['cpu']:>8.0f}%"
              f"{r['us_per_frame']:>17.1f}{r['lag']:>8.2f}  "
              f"{'ok' if ok else 'over'}  (load {' '.join(Path('/proc/loadavg').read_text().split()[:3])})",
              flush=True)


if __name__ == "__main__":
    main()
