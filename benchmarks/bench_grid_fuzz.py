"""Fuzz the C37.118 decoder and stream parser: a million inputs by default, each timed against a bound.

Inputs come from ``tests/grid/c37118_fuzz.py`` (seeded): mutated valid frames (most inputs, a few
hundred bytes each), and long structured inputs: streams of valid frames with corrupted fields,
runs of false frame starts up to 256 KiB (the issue's ``AA 01 FF FF`` and its variants), valid
headers claiming a huge FRAMESIZE. Each input is decoded as one frame (with and without a
configuration), then parsed as a TCP stream in random chunk sizes, with the work budget a
server connection uses on every other input, and every frame found is decoded.

A *crash* is any exception besides ``FrameError`` from the decoder, or any exception from the
parser: the script stops and prints the seed and index that reproduce it. Every input is timed
(CPU time of this process: on a shared machine, wall time would charge other processes' turns
to the input) against ``--bound-ms`` + ``--bound-us-per-byte`` x its length; the script reports
how many went over, the worst time per byte (inputs of at least 4 KiB, where fixed costs no
longer dominate) and the most CRC work per byte beyond the parser's constant credit (the
parser's own count, deterministic: ``(crc_bytes - CREDIT_CAP) / bytes``; bounded work per byte
is what "linear" means here). ``--kinds`` exercises only some kinds (the inputs are generated
all the same, so each keeps its place in the seeded sequence); ``--long-only`` draws only the
long kinds.

    python benchmarks/bench_grid_fuzz.py [--inputs 1000000] [--seed 26] [--kinds false_syncs huge] [--long-only]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "grid"))

import c37118_fuzz as fuzz  # noqa: E402

from labkit.grid.c37118 import StreamParser  # noqa: E402
from labkit.grid.connection import SLICE_WORK  # noqa: E402

CREDIT_CAP = StreamParser.CREDIT_CAP


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--bound-ms", type=float, default=20.0, help="time bound per input: fixed part (ms)")
    ap.add_argument("--bound-us-per-byte", type=float, default=2.0, help="time bound per input: per byte (us)")
    ap.add_argument("--kinds", nargs="+", choices=fuzz.KINDS, default=list(fuzz.KINDS), help="kinds to exercise")
    ap.add_argument("--long-only", action="store_true", help="draw only the long kinds (in their usual proportions)")
    a = ap.parse_args()
    weights = tuple(0.0 if k == "mutant" else w for k, w in zip(fuzz.KINDS, fuzz.WEIGHTS)) if a.long_only \
        else fuzz.WEIGHTS
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    per_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0, -1e9])  # n, bytes, s, worst s/B, crc/B
    over, worst = [], (0.0, None)
    t_start = time.perf_counter()
    for i, (kind, data, rng) in enumerate(tqdm(fuzz.inputs(a.seed, a.inputs, weights), total=a.inputs, unit="input",
                                               mininterval=2.0)):
        if kind not in a.kinds:
            continue
        t0 = time.process_time()
        try:
            out = fuzz.exercise(kind, data, rng, budget=SLICE_WORK if i % 2 else None)
        except Exception as exc:  # noqa: BLE001 - any exception is the finding
            print(f"CRASH at input {i} (seed {a.seed}, kind {kind}, {len(data)} bytes): {exc!r}")
            raise
        dt = time.process_time() - t0
        k = per_kind[kind]
        k[0] += 1
        k[1] += len(data)
        k[2] += dt
        if len(data) >= 4096:
            k[3] = max(k[3], dt / len(data))
        k[4] = max(k[4], (out.crc_bytes - CREDIT_CAP) / max(1, len(data)))
        if dt > a.bound_ms / 1e3 + a.bound_us_per_byte / 1e6 * len(data):
            over.append((i, kind, len(data), dt))
        if dt > worst[0]:
            worst = (dt, (i, kind, len(data)))
    wall = time.perf_counter() - t_start
    print(f"\n{a.inputs:,} inputs (seed {a.seed}; exercised: {' '.join(a.kinds)}) in {wall:.0f} s; load average {' '.join(load0)} before, "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])} after; no crash")
    print(f"{'kind':<12}{'inputs':>10}{'MiB':>9}{'CPU s':>8}{'mean us/B':>11}{'worst us/B (>=4 KiB)':>22}"
          f"{'max CRC B/B beyond the credit cap':>35}")
    for kind in fuzz.KINDS:
        n, size, secs, worst_pb, crc = per_kind[kind]
        if not n:
            continue
        print(f"{kind:<12}{n:>10,}{size / 2**20:>9.1f}{secs:>8.1f}{secs / max(size, 1) * 1e6:>11.3f}"
              f"{worst_pb * 1e6:>22.3f}{crc:>35.2f}")
    print(f"slowest input: {worst[0] * 1e3:.1f} ms of CPU (index, kind, bytes = {worst[1]})")
    print(f"over the time bound ({a.bound_ms} ms + {a.bound_us_per_byte} us/B): {len(over)}"
          + (f", e.g. {over[:5]}" if over else ""))
    crc_max = max(v[4] for v in per_kind.values())
    linear = crc_max <= fuzz.MAX_CRC_PER_BYTE
    print(f"CRC work per byte beyond the constant credit cap ({CREDIT_CAP} B) at most {crc_max:.2f} "
          f"(bound {fuzz.MAX_CRC_PER_BYTE}): {'linear' if linear else 'NOT LINEAR'}")
    return 0 if linear and not over else 1


if __name__ == "__main__":
    raise SystemExit(main())
