"""State estimation per frame: labkit's linear PMU WLS vs pandapower's AC WLS, same measurements.

PMUs on every bus (bus voltage + currents of every branch leaving the bus), noise sigma_mag = 0.2 %,
sigma_ang = 0.05 deg, seeded. For each network: median per-frame solve time and median/max error
against the power-flow truth, for ``--frames`` frames (linear) and ``--pp-frames`` (pandapower,
timed around ``estimate``, which includes its own table conversion). pandapower gets ``v``/``va``
at buses and ``i`` magnitudes at line ends (it ignores current angles, and transformer currents
bias it, see :func:`labkit.grid.se.pandapower_wls`); the last column is pandapower with the voltage
phasors only, for networks where its flat-start WLS with current magnitudes does not converge.

    python benchmarks/bench_grid_se.py [--frames 200 --pp-frames 10]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from labkit.grid.phasors import PhasorSource, network_model
from labkit.grid.se import LinearPmuEstimator, errors, pandapower_wls


def bench(name: str, frames: int, pp_frames: int) -> dict:
    m = network_model(name)
    src = PhasorSource(name, sorted(m.bus_lookup), seed=42)
    chans = [ch for cs in src.channels for ch in cs]
    est = LinearPmuEstimator(m, chans)
    truth = est.true_v()
    draws = [np.concatenate(src.sample()) for _ in range(max(frames, pp_frames))]
    est.estimate(draws[0])  # factorise once
    lin_t, lin_e = [], []
    for z in draws[:frames]:
        r = est.estimate(z)
        lin_t.append(r.solve_time)
        lin_e.append(errors(r.v, truth))
    pp_t, pp_e, pp_fail = [], [], 0
    for z in draws[:pp_frames]:
        v, t, ok = pandapower_wls(m, chans, z)
        pp_t.append(t)
        if ok:
            pp_e.append(errors(v, truth))
        else:
            pp_fail += 1
    v_only = [i for i, ch in enumerate(chans) if ch.kind == "V"]
    ppv_e = []
    for z in draws[:pp_frames]:
        v, _, ok = pandapower_wls(m, [chans[i] for i in v_only], z[v_only])
        if ok:
            ppv_e.append(errors(v, truth))

    def agg(es: list[dict], key: str, fn) -> float:
        return float(fn([e[key] for e in es])) if es else float("nan")
    return {"net": name, "m": len(chans), "n2": 2 * m.n, "lin_ms": 1e3 * np.median(lin_t),
            "pp_ms": 1e3 * np.median(pp_t), "lin_dv": agg(lin_e, "max_abs_dv", np.median),
            "lin_dv_max": agg(lin_e, "max_abs_dv", np.max), "lin_dth": agg(lin_e, "max_abs_dtheta", np.median),
            "pp_dv": agg(pp_e, "max_abs_dv", np.median), "pp_dth": agg(pp_e, "max_abs_dtheta", np.median),
            "pp_fail": pp_fail, "ppv_dv": agg(ppv_e, "max_abs_dv", np.median)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--pp-frames", type=int, default=10)
    ap.add_argument("--networks", nargs="+", default=["case14", "case33bw", "cigre_mv"])
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'network':<10}{'phasors':>8}{'2n':>5}{'linear ms':>11}{'pandapower ms':>15}{'speed-up':>10}"
          f"{'lin |dV| med/max':>20}{'lin dth med':>12}{'pp |dV| med':>12}{'pp dth med':>11}{'pp failed':>10}"
          f"{'pp V-only |dV|':>15}")
    for name in a.networks:
        r = bench(name, a.frames, a.pp_frames)
        print(f"{r['net']:<10}{r['m']:>8}{r['n2']:>5}{r['lin_ms']:>11.3f}{r['pp_ms']:>15.1f}"
              f"{r['pp_ms'] / r['lin_ms']:>9.0f}x{r['lin_dv']:>11.2e}/{r['lin_dv_max']:.2e}{r['lin_dth']:>11.4f}°"
              f"{r['pp_dv']:>12.2e}{r['pp_dth']:>10.4f}°{r['pp_fail']:>6}/{a.pp_frames}{r['ppv_dv']:>15.2e}", flush=True)


if __name__ == "__main__":
    main()
