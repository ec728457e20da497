"""Codec throughput: labkit.grid.c37118 vs the `synchrophasor` package (pypmu 1.0.0a0), side by side.

Two measures, the same on both sides. *encode+decode*: a data frame object built once is
encoded to bytes and the bytes decoded back to a frame object (labkit: ``DataCodec.encode`` ->
``DataCodec.decode``, CRC checked; pypmu: ``DataFrame.convert2bytes`` ->
``DataFrame.convert2frame(raw, cfg)`` with an explicit ``ConfigFrame2``, CRC checked). *from
values*: the same, plus building the frame object from the values in every round trip
(labkit: ``PmuData``/``DataFrame`` tuples; pypmu: its ``DataFrame(...)`` constructor, which
also validates). Cases: a 1-PMU and a 50-PMU stream, each
PMU with 4 phasors (rectangular), FREQ/DFREQ, 1 analog and 1 digital word, all float32, and
the same with 16-bit integers.

Timing: single thread, in CPU time of the process (``time.process_time``: a preempted process
is not charged for the other processes' turns); for each case, ``--rounds`` rounds alternate
labkit and pypmu, each round timing one side for ``--seconds``; the *ratio of a round* is labkit's rate over pypmu's
rate measured right after it, so both see the same machine load. A run prints, per case, the
best rate of each side, and the median and range of the per-round ratios; ``--runs`` repeats
the whole and ends with the spread of the median ratios over the runs. The load average
(``/proc/loadavg``) is printed before and after each run: on a shared machine, read the
ratios, not the absolute rates.

    python benchmarks/bench_grid_codec.py [--runs 3] [--rounds 7] [--seconds 0.15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "c37118"))

from labkit.grid import c37118 as c  # noqa: E402

SOC, FRAC = 1_700_000_000, 500_000
NAMES = ["VA", "VB", "VC", "I1", "A1"] + [f"D{k}" for k in range(16)]


def _values(floats: bool) -> tuple:
    """(phasors, freq, dfreq, analogs, digitals) of one PMU block, as wire values."""
    if floats:
        return [(7000.5, -1200.25)] * 4, 0.01, 0.02, [1.5], [3]
    return [(14635, -1200)] * 4, 10, 2, [15], [3]


def labkit_case(n_pmus: int, floats: bool, build: bool) -> Callable[[], None]:
    """One labkit round trip: encode, decode (``build``: the frame object from the values first)."""
    pmus = tuple(c.PmuConfig(f"PMU{i}", i + 1, tuple(NAMES[:4]), phasor_float=floats, analog_float=floats,
                             freq_float=floats, analog_names=("A1",), digital_names=tuple(NAMES[5:]),
                             phunit=() if floats else (915527,) * 4) for i in range(n_pmus))
    codec = c.DataCodec(c.ConfigFrame(idcode=1, pmus=pmus))
    ph, freq, dfreq, an, dg = _values(floats)
    freq = 50.01 if floats else freq
    blocks = [(0, ph, freq, dfreq, an, dg)] * n_pmus
    pmu_data, data_frame, encode, decode = c.PmuData, c.DataFrame, codec.encode, codec.decode

    def roundtrip() -> None:
        frame = data_frame(1, SOC, FRAC, tuple([pmu_data(*b) for b in blocks]))
        decode(encode(frame))

    built = data_frame(1, SOC, FRAC, tuple([pmu_data(*b) for b in blocks]))

    def codec_only() -> None:
        decode(encode(built))
    return roundtrip if build else codec_only


def pypmu_case(n_pmus: int, floats: bool, build: bool) -> Callable[[], None]:
    """One pypmu round trip with an explicit ConfigFrame2: encode, decode (``build``: its DataFrame first)."""
    from make_interop_fixtures import pypmu_frame_module

    f = pypmu_frame_module()
    fmt = (False, floats, floats, floats)
    ph, freq, dfreq, an, dg = _values(floats)
    stat = ("ok", True, "timestamp", False, False, False, 0, "<10", 0)
    unit = [(0 if floats else 915527, "v")] * 4
    if n_pmus == 1:
        cfg = f.ConfigFrame2(1, 1_000_000, 1, "PMU1".ljust(16), 1, fmt, 4, 1, 1, [n.ljust(16) for n in NAMES],
                             unit, [(1, "pow")], [(0, 0xFFFF)], 50, 0, 30, SOC, FRAC)
        args = (stat, ph, freq, dfreq, an, dg)
    else:
        cfg = f.ConfigFrame2(1, 1_000_000, n_pmus, [f"PMU{i}".ljust(16) for i in range(n_pmus)],
                             list(range(1, n_pmus + 1)), [fmt] * n_pmus, [4] * n_pmus, [1] * n_pmus, [1] * n_pmus,
                             [[n.ljust(16) for n in NAMES]] * n_pmus, [unit] * n_pmus,
                             [[(1, "pow")]] * n_pmus, [[(0, 0xFFFF)]] * n_pmus, [50] * n_pmus, [0] * n_pmus, 30,
                             SOC, FRAC)
        args = ([stat] * n_pmus, [ph] * n_pmus, [freq] * n_pmus, [dfreq] * n_pmus, [an] * n_pmus, [dg] * n_pmus)

    def roundtrip() -> None:
        raw = f.DataFrame(1, *args, cfg, SOC, FRAC).convert2bytes()
        f.DataFrame.convert2frame(raw, cfg)

    built = f.DataFrame(1, *args, cfg, SOC, FRAC)

    def codec_only() -> None:
        f.DataFrame.convert2frame(built.convert2bytes(), cfg)
    return roundtrip if build else codec_only


def rate(fn: Callable[[], None], seconds: float) -> float:
    """Round trips per CPU second of ``fn`` over about ``seconds`` of this process's CPU time.

    CPU time, not wall time: on a shared machine a process is preempted often, and wall time
    would count the other processes' turns as the codec's.
    """
    n, t0 = 0, time.process_time()
    while True:
        for _ in range(10):
            fn()
        n += 10
        dt = time.process_time() - t0
        if dt > seconds:
            return n / dt


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


CASES = [(n, floats, build) for build in (False, True) for n in (1, 50) for floats in (True, False)]


def run_once(rounds: int, seconds: float) -> dict[str, float]:
    """One run: every case, alternating rounds; returns the median ratio per case."""
    print(f"load average before: {load()}")
    print(f"{'case':<30}{'labkit rt/cpu-s':>16}{'pypmu rt/cpu-s':>15}{'ratio median':>14}{'ratio range':>16}")
    medians = {}
    for n, floats, build in CASES:
        fl, fp = labkit_case(n, floats, build), pypmu_case(n, floats, build)
        fl(), fp()  # compile / warm caches
        lk, py, ratios = [], [], []
        for _ in range(rounds):
            a, b = rate(fl, seconds), rate(fp, seconds)
            lk.append(a)
            py.append(b)
            ratios.append(a / b)
        name = f"{n}-PMU {'float' if floats else 'int16'} {'from values' if build else 'encode+decode'}"
        medians[name] = statistics.median(ratios)
        print(f"{name:<30}{max(lk):>16,.0f}{max(py):>15,.0f}{medians[name]:>13.1f}x"
              f"{min(ratios):>9.1f}-{max(ratios):.1f}x", flush=True)
    print(f"load average after:  {load()}")
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="independent runs (the spread is over these)")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds per case and run")
    ap.add_argument("--seconds", type=float, default=0.15, help="CPU seconds of one side's timing in a round")
    a = ap.parse_args()
    runs = []
    for i in range(a.runs):
        print(f"--- run {i + 1} of {a.runs}")
        runs.append(run_once(a.rounds, a.seconds))
    print("--- median ratio per run, and the spread over the runs (goal >= 10x)")
    for name in runs[0]:
        vals = [r[name] for r in runs]
        print(f"{name:<30}" + " ".join(f"{v:6.1f}x" for v in vals) + f"   min {min(vals):.1f}x  max {max(vals):.1f}x")


if __name__ == "__main__":
    main()
