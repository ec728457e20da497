"""Linear PMU-only weighted least squares state estimation in rectangular coordinates.

Following ``state-estimation.md`` B5: the state is ``x = [Re V; Im V]`` over every bus of the
network's ppc (no slack: the PMU time base fixes the angle reference). Voltage phasors at buses
and current phasors at branch ends are linear in ``V``::

    z_c = H_c V + e,    H_c = [I_n[B,:]; Y_f[F,:]; Y_t[T,:]]   (per unit)
    H = [[Re H_c, -Im H_c], [Im H_c, Re H_c]],  z = [Re z_c; Im z_c]
    x = (H^T W H)^-1 H^T W z

``W`` is diagonal, from the polar-to-rectangular variance propagation
``var(Re) = s_V^2 cos^2 t + s_t^2 V^2 sin^2 t``, ``var(Im) = s_V^2 sin^2 t + s_t^2 V^2 cos^2 t``
evaluated once (on the first frame) so that the gain matrix ``G = H^T W H`` is factorised
once (sparse LU) and each frame costs one sparse product and one triangular solve. Buses of
the ppc that are no pandapower bus (the open end of a switched line) get zero-injection rows
``Ybus[k,:] V = 0`` with a tiny variance. The normal equations are followed by one step of
iterative refinement, since ``G`` can be ill-conditioned (CIGRE MV: cond(G) ~ 1e12). Frames with absent values (NaN) drop those rows and
refactorise (cached per pattern of missing rows).

:func:`pandapower_wls` runs pandapower's AC WLS on the same measurements (``v``/``va`` at
buses, ``i`` magnitudes at branch ends; pandapower ignores current angles) for comparison.

:class:`StateEstimator` is the streaming part: a client of the high-level PDC that estimates
every frame and records error against the power-flow truth and solve time.

CLI::

    python -m labkit.grid.se --port 4712 --idcode 200 --network case14 --out se.csv
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import math
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from labkit.grid import c37118 as c
from labkit.grid import cli
from labkit.grid.phasors import SIGMA_ANG, SIGMA_MAG, Channel, NetworkModel, network_model

__all__ = ["LinearPmuEstimator", "Estimate", "StateEstimator", "pandapower_wls", "errors", "main"]

log = logging.getLogger("labkit.grid.se")

#: Standard deviation (per unit) of the zero-injection pseudo-measurements.
ZERO_INJECTION_SIGMA = 1e-5


@dataclass(frozen=True)
class Estimate:
    """Result of one estimation: complex voltages per pandapower bus (per unit) and diagnostics."""

    v: np.ndarray            # complex, ordered like ``buses``
    buses: np.ndarray        # pandapower bus indices
    solve_time: float        # seconds (factorisation excluded once cached)
    objective: float         # J(x) = r^T W r
    dof: int                 # m - 2n


def errors(est: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Max |dV| (p.u. magnitude), max |dtheta| (degrees) and max |V_est - V| (p.u.)."""
    dth = np.angle(est * np.conj(true), deg=True)
    return {"max_abs_dv": float(np.max(np.abs(np.abs(est) - np.abs(true)))),
            "max_abs_dtheta": float(np.max(np.abs(dth))),
            "max_abs_dvec": float(np.max(np.abs(est - true)))}


class LinearPmuEstimator:
    """Linear WLS estimator for a fixed list of measured channels.

    Parameters
    ----------
    network
        Network name (see :data:`labkit.grid.phasors.NETWORKS`) or a :class:`NetworkModel`.
    channels
        The measured channels in the order of the measurement vector.
    sigma_mag, sigma_ang
        Measurement noise (relative magnitude, radians) used for the weights.
    """

    def __init__(self, network: str | NetworkModel, channels: Sequence[Channel],
                 sigma_mag: float = SIGMA_MAG, sigma_ang: float = SIGMA_ANG) -> None:
        self.model = network if isinstance(network, NetworkModel) else network_model(network)
        self.channels = list(channels)
        self.sigma_mag, self.sigma_ang = sigma_mag, sigma_ang
        rows, scales = zip(*(self.model.measurement_row(ch) for ch in self.channels)) if self.channels else ((), ())
        aux = list(self.model.aux_buses)
        zrows = [self.model.ybus[k] for k in aux]
        self.m_meas = len(rows)
        self.hc = sp.vstack(list(rows) + zrows).tocsr() if rows or zrows else sp.csr_matrix((0, self.model.n))
        self.scale = np.concatenate([np.asarray(scales, float), np.ones(len(zrows))])
        self.buses = np.array(sorted(self.model.bus_lookup))
        self._bus_rows = np.array([self.model.bus_lookup[b] for b in self.buses])
        hr, hi = self.hc.real, self.hc.imag
        self.h = sp.bmat([[hr, -hi], [hi, hr]]).tocsr()
        self._w: np.ndarray | None = None
        self._cache: dict[bytes, tuple] = {}

    @property
    def observable(self) -> bool:
        """True when H has full column rank 2n (dense rank check; small networks only)."""
        return bool(np.linalg.matrix_rank(self.h.toarray()) == 2 * self.model.n)

    def weights(self, z_pu: np.ndarray) -> np.ndarray:
        """Diagonal weights [W_re; W_im] from the polar noise propagated to rectangular form."""
        mag, th = np.abs(z_pu), np.angle(z_pu)
        sv2, st2 = (self.sigma_mag * mag) ** 2, (self.sigma_ang * mag) ** 2
        var_re = sv2 * np.cos(th) ** 2 + st2 * np.sin(th) ** 2
        var_im = sv2 * np.sin(th) ** 2 + st2 * np.cos(th) ** 2
        floor = (1e-3 * max(self.sigma_mag, self.sigma_ang) * max(float(np.median(mag)), 1e-6)) ** 2
        var_re, var_im = np.maximum(var_re, floor), np.maximum(var_im, floor)
        nz = len(self.model.aux_buses)
        var_re[self.m_meas:] = var_im[self.m_meas:] = ZERO_INJECTION_SIGMA ** 2 if nz else var_re[self.m_meas:]
        return 1.0 / np.concatenate([var_re, var_im])

    def _factor(self, keep: np.ndarray) -> tuple:
        key = np.packbits(keep).tobytes()
        hit = self._cache.get(key)
        if hit is None:
            h = self.h[keep] if not keep.all() else self.h
            w = self._w[keep]
            ht_w = (h.T.multiply(w)).tocsr()
            g = (ht_w @ h).tocsc()
            lu = spla.splu(g)
            hit = (h, w, ht_w, lu)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def estimate(self, z_eng: np.ndarray) -> Estimate:
        """Estimate from measured phasors in engineering units (same order as ``channels``)."""
        z_eng = np.asarray(z_eng, dtype=complex)
        if z_eng.shape != (self.m_meas,):
            raise ValueError(f"expected {self.m_meas} measurements, got shape {z_eng.shape}")
        t0 = time.perf_counter()
        zc = np.concatenate([z_eng / self.scale[:self.m_meas], np.zeros(len(self.model.aux_buses), complex)])
        ok = np.isfinite(zc)
        if self._w is None:
            first = np.where(ok, zc, 1.0)
            self._w = self.weights(first)
        keep = np.concatenate([ok, ok])
        h, w, ht_w, lu = self._factor(keep)
        z = np.concatenate([zc.real, zc.imag])[keep]
        x = lu.solve(ht_w @ z)
        x += lu.solve(ht_w @ (z - h @ x))  # one step of iterative refinement (G can be ill-conditioned)
        elapsed = time.perf_counter() - t0
        n = self.model.n
        v = x[:n] + 1j * x[n:]
        r = z - h @ x
        return Estimate(v=v[self._bus_rows], buses=self.buses, solve_time=elapsed, objective=float(r @ (w * r)),
                        dof=int(keep.sum()) - 2 * n)

    def true_v(self) -> np.ndarray:
        """Power-flow voltages (per unit) at ``buses``."""
        return self.model.v[self._bus_rows]


def pandapower_wls(model: NetworkModel, channels: Sequence[Channel], z_eng: np.ndarray,
                   sigma_mag: float = SIGMA_MAG, sigma_ang: float = SIGMA_ANG) -> tuple[np.ndarray, float, bool]:
    """pandapower AC WLS on the same PMU measurements.

    Voltage phasors become ``v`` (p.u.) + ``va`` (degrees) bus measurements and currents become
    ``i`` magnitudes (kA) at line ends (pandapower does not use current angles, see
    state-estimation.md B2). Transformer currents are left out: with them pandapower 3.5.6 returns
    a biased estimate even from noise-free data (case14: 0.015 p.u.), although the values equal
    its own ``res_trafo.i_hv_ka``/``i_lv_ka``. Returns (complex voltages at pandapower buses in bus order,
    seconds spent in ``estimate``, success flag).
    """
    import pandapower as pp
    from pandapower.estimation import estimate

    net = copy.deepcopy(model.net)
    z_eng = np.asarray(z_eng, dtype=complex)
    for ch, z in zip(channels, z_eng):
        if not np.isfinite(z):
            continue
        if ch.kind == "V":
            row = model.bus_lookup[ch.bus]
            vm = abs(z) / model.v_base(row)
            pp.create_measurement(net, "v", "bus", vm, sigma_mag * vm, element=ch.bus)
            pp.create_measurement(net, "va", "bus", math.degrees(np.angle(z)), math.degrees(sigma_ang), element=ch.bus)
        elif ch.element == "line":
            ika = abs(z) / 1000.0
            pp.create_measurement(net, "i", "line", ika, max(sigma_mag * ika, 1e-9), element=ch.index,
                                  side="from" if ch.side == "f" else "to")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = estimate(net, algorithm="wls", init="flat", tolerance=1e-6, maximum_iterations=50)
    elapsed = time.perf_counter() - t0
    ok = bool(res["success"]) if isinstance(res, dict) else bool(res)
    buses = sorted(model.bus_lookup)
    if not ok or not set(buses) <= set(net.res_bus_est.index):
        return np.full(len(buses), np.nan + 0j), elapsed, False
    est = net.res_bus_est.loc[buses]
    v = est["vm_pu"].to_numpy() * np.exp(1j * np.deg2rad(est["va_degree"].to_numpy()))
    return v, elapsed, ok


class StateEstimator:
    """Streaming estimator: a client of a (high-level) PDC, one estimate per data frame.

    Each frame yields one row: ``frame_time``, ``arrival``, ``solve_time`` (s),
    ``max_abs_dv`` (p.u.), ``max_abs_dtheta`` (deg), ``max_abs_dvec`` (p.u.) against the power-flow
    truth, ``n_meas`` and ``objective``; :meth:`tidy` gives them as results rows.
    """

    def __init__(self, host: str, port: int, idcode: int, network: str, sigma_mag: float = SIGMA_MAG,
                 sigma_ang: float = SIGMA_ANG) -> None:
        from labkit.grid.pdc import StreamClient

        self.network = network
        self.model = network_model(network)
        self.sigma_mag, self.sigma_ang = sigma_mag, sigma_ang
        self.rows: list[dict] = []
        self.est: LinearPmuEstimator | None = None
        self._codec: c.DataCodec | None = None
        self._cfg: c.ConfigFrame | None = None
        self.client = StreamClient(host, port, idcode, on_frame=self._on_frame, on_config=self._on_config,
                                   name=f"se {host}:{port}")

    def _on_config(self, cfg: c.ConfigFrame) -> None:
        channels = []
        for p in cfg.pmus:
            for name in p.phasor_names:
                channels.append(Channel.parse(name))
        self._cfg, self._codec = cfg, c.DataCodec(cfg)
        self.est = LinearPmuEstimator(self.model, channels, self.sigma_mag, self.sigma_ang)
        log.info("SE on %s: %d phasors from %d PMUs, 2n=%d", self.network, len(channels), len(cfg.pmus),
                 2 * self.model.n)

    def _on_frame(self, raw: bytes) -> None:
        arrival = time.time()
        if self._codec is None or self.est is None or self._cfg is None:
            return
        frame = self._codec.decode(raw, check=False)
        z = np.concatenate([p.phasor_values(d) for p, d in zip(self._cfg.pmus, frame.pmus)])
        try:
            res = self.est.estimate(z)
        except (ValueError, RuntimeError) as exc:  # unobservable with this set of missing values
            log.warning("frame %d.%d not estimated: %s", frame.soc, frame.fracsec, exc)
            return
        err = errors(res.v, self.est.true_v())
        self.rows.append({"frame_time": frame.soc + frame.fracsec / self._cfg.time_base, "arrival": arrival,
                          "solve_time": res.solve_time, "n_meas": int(np.isfinite(z).sum()),
                          "objective": res.objective, **err})

    def frame_table(self) -> pd.DataFrame:
        """Per-frame rows as a DataFrame."""
        return pd.DataFrame(self.rows)

    def tidy(self, **labels) -> pd.DataFrame:
        """Per-frame results as tidy rows (metrics ``se_solve_time``, ``se_max_abs_dv``, ...)."""
        from labkit.results import tidy

        units = {"solve_time": "s", "max_abs_dv": "pu", "max_abs_dtheta": "deg", "max_abs_dvec": "pu"}
        out = []
        for r in self.rows:
            t = pd.Timestamp(r["frame_time"], unit="s", tz="UTC")
            for key, unit in units.items():
                out.append({"metric": f"se_{key}", "unit": unit, "t": t, "value": r[key], "network": self.network})
        defaults = {"run_id": "", "scenario": "", "step": "", "cluster": "", **labels}
        return tidy(out, **defaults)


async def _run(args: argparse.Namespace) -> None:
    from labkit.grid.pmu import wait_port_file

    model = network_model(args.network)  # load before waiting: the solve is the slow part of startup
    print(f"model {args.network} ready: {model.n} buses", flush=True)
    port = args.port if args.port_file is None else await wait_port_file(args.port_file)
    se = StateEstimator(args.host, port, args.idcode, args.network)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    se.client.start()
    print(f"estimating {args.network} from {args.host}:{port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except asyncio.TimeoutError:
        pass
    await se.client.close()
    table = se.frame_table()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)  # CSV: the runtime image has no pyarrow
    if len(table):
        log.info("estimated %d frames: median solve %.3f ms, max |dV| %.2e pu, max |dtheta| %.4f deg",
                 len(table), 1e3 * table["solve_time"].median(), table["max_abs_dv"].max(),
                 table["max_abs_dtheta"].max())


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m labkit.grid.se``."""
    ap = argparse.ArgumentParser(prog="python -m labkit.grid.se", description="linear PMU state estimation")
    cli.add_upstream(ap)
    ap.add_argument("--network", default="case14")
    ap.add_argument("--out", default=None, help="CSV file for the per-frame rows")
    ap.add_argument("--duration", type=float, default=None, help="seconds to run (default: until SIGTERM)")
    cli.add_logging(ap)
    args = ap.parse_args(argv)
    cli.setup_logging(args)
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
