"""Codec throughput: labkit.grid.c37118 vs the `synchrophasor` package (pypmu 1.0.0a0), side by side.

Encode + decode of a data frame from/to wire values, for a 1-PMU and a 50-PMU stream (each PMU:
4 float rectangular phasors, float FREQ/DFREQ, 1 float analog, 1 digital word; and the same
with 16-bit integer phasors). Prints frames/s of both and the ratio (goal >= 10x).

    python benchmarks/bench_grid_codec.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "c37118"))

from labkit.grid import c37118 as c  # noqa: E402

SOC, FRAC = 1_700_000_000, 500_000


def _rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(20):
            fn()
        n += 20
        dt = time.perf_counter() - t0
        if dt > seconds:
            return n / dt


def labkit_case(n_pmus: int, floats: bool):
    pmus = tuple(c.PmuConfig(f"PMU{i}", i + 1, ("VA", "VB", "VC", "I1"), phasor_float=floats, analog_float=floats,
                             freq_float=floats, analog_names=("A1",), digital_names=tuple(f"D{k}" for k in range(16)),
                             phunit=() if floats else (915527,) * 4) for i in range(n_pmus))
    cfg = c.ConfigFrame(idcode=1, pmus=pmus)
    codec = c.DataCodec(cfg)
    ph = ((7000.5, -1200.25),) * 4 if floats else ((14635, -1200),) * 4
    blk = c.PmuData(0, ph, 50.01 if floats else 10, 0.02 if floats else 2, (1.5,) if floats else (15,), (3,))
    frame = c.DataFrame(1, SOC, FRAC, (blk,) * n_pmus)

    def roundtrip() -> None:
        codec.decode(codec.encode(frame))
    return roundtrip


def pypmu_case(n_pmus: int, floats: bool):
    from make_interop_fixtures import pypmu_frame_module

    f = pypmu_frame_module()
    fmt = (False, floats, floats, floats)
    names = ["VA", "VB", "VC", "I1", "A1"] + [f"D{k}" for k in range(16)]
    ph = [(7000.5, -1200.25)] * 4 if floats else [(14635, -1200)] * 4
    stat = ("ok", True, "timestamp", False, False, False, 0, "<10", 0)
    if n_pmus == 1:
        cfg = f.ConfigFrame2(1, 1_000_000, 1, "PMU1".ljust(16), 1, fmt, 4, 1, 1, [n.ljust(16) for n in names],
                             [(0 if floats else 915527, "v")] * 4, [(1, "pow")], [(0, 0xFFFF)], 50, 0, 30, SOC, FRAC)
        args = (stat, ph, 0.01 if floats else 10, 0.02 if floats else 2, [1.5 if floats else 15], [3])
    else:
        cfg = f.ConfigFrame2(1, 1_000_000, n_pmus, [f"PMU{i}".ljust(16) for i in range(n_pmus)],
                             list(range(1, n_pmus + 1)), [fmt] * n_pmus, [4] * n_pmus, [1] * n_pmus, [1] * n_pmus,
                             [[n.ljust(16) for n in names]] * n_pmus, [[(0 if floats else 915527, "v")] * 4] * n_pmus,
                             [[(1, "pow")]] * n_pmus, [[(0, 0xFFFF)]] * n_pmus, [50] * n_pmus, [0] * n_pmus, 30,
                             SOC, FRAC)
        args = ([stat] * n_pmus, [ph] * n_pmus, [0.01 if floats else 10] * n_pmus, [0.02 if floats else 2] * n_pmus,
                [[1.5 if floats else 15]] * n_pmus, [[3]] * n_pmus)

    def roundtrip() -> None:
        raw = f.DataFrame(1, *args, cfg, SOC, FRAC).convert2bytes()
        f.DataFrame.convert2frame(raw, cfg)
    return roundtrip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one timing round")
    ap.add_argument("--rounds", type=int, default=12, help="alternating rounds; the best of each side is kept")
    a = ap.parse_args()
    print(f"{'case':<22}{'labkit fr/s':>14}{'pypmu fr/s':>14}{'ratio':>9}")
    for n in (1, 50):
        for floats in (True, False):
            fl, fp = labkit_case(n, floats), pypmu_case(n, floats)
            lk = py = 0.0
            for _ in range(a.rounds):  # alternate so both sides see the same machine load
                lk = max(lk, _rate(fl, a.seconds))
                py = max(py, _rate(fp, a.seconds))
            name = f"{n}-PMU {'float' if floats else 'int16'}"
            print(f"{name:<22}{lk:>14,.0f}{py:>14,.0f}{lk / py:>8.1f}x", flush=True)


if __name__ == "__main__":
    main()
