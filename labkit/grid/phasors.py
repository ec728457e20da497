"""Synthetic PMU phasors from a pandapower power flow, with seeded noise inside the TVE budget.

The generator follows ``state-estimation.md`` B4 (own code; pandapower's virtual PMU helper is
not used): run a Newton-Raphson power flow on a shipped network, take the true bus voltage
phasors and the branch-end current phasors ``I_f = Y_f V``, ``I_t = Y_t V`` (per unit, from the
network's admittance matrices), and add noise per measurement drawn from
``numpy.random.default_rng(seed)``::

    |z| = |x| (1 + sigma_mag * e1),   angle(z) = angle(x) + sigma_ang * e2

With the defaults (sigma_mag = 0.2 %, sigma_ang = 0.05 deg) the Total Vector Error is far inside
the 1 % limit of IEEE C37.118.1 (0.01 rad of phase error alone is 1 % TVE); draws are clipped
at 4 sigma so the TVE bound holds for every frame, not only on average.

Channel names (at most 16 characters, as CFG-2 CHNAM allows) say what is measured:
``V:<bus>`` for a bus voltage, ``I:line:<idx>:f`` / ``I:trafo:<idx>:t`` for the current
leaving a branch at its from/to end (pandapower indices). Values are in engineering units:
volts phase-to-neutral and amperes (positive sequence).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["NETWORKS", "Channel", "NetworkModel", "PhasorSource", "load_network", "network_model",
           "tve", "SIGMA_MAG", "SIGMA_ANG"]

#: Default relative magnitude noise (0.2 %).
SIGMA_MAG = 0.002
#: Default angle noise in radians (0.05 degree).
SIGMA_ANG = math.radians(0.05)
#: Draws are clipped at this many sigmas, which bounds the TVE of every single measurement.
CLIP_SIGMA = 4.0


def _networks() -> dict[str, Callable[[], object]]:
    import pandapower.networks as pn

    return {"case14": pn.case14, "case33bw": pn.case33bw,
            "cigre_mv": lambda: pn.create_cigre_network_mv(with_der=False)}


#: Shipped networks a PMU can be placed on.
NETWORKS: tuple[str, ...] = ("case14", "case33bw", "cigre_mv")


@dataclass(frozen=True)
class Channel:
    """One measured phasor: a bus voltage or a branch-end current."""

    name: str
    kind: str               # "V" or "I"
    bus: int                # pandapower bus where the PMU sits
    element: str = "bus"    # "bus", "line" or "trafo"
    index: int = -1         # pandapower element index (branches)
    side: str = ""          # "f" or "t" (branches)

    @staticmethod
    def parse(name: str, bus: int = -1) -> Channel:
        """Parse a channel name (``V:3``, ``I:line:4:f``); raises ``ValueError`` naming it."""
        parts = name.strip().split(":")
        try:
            if parts[0] == "V" and len(parts) == 2:
                return Channel(name.strip(), "V", int(parts[1]))
            if parts[0] == "I" and len(parts) == 4 and parts[1] in ("line", "trafo") and parts[3] in ("f", "t"):
                return Channel(name.strip(), "I", bus, parts[1], int(parts[2]), parts[3])
        except ValueError:
            pass
        raise ValueError(f"channel name {name!r} is not V:<bus> or I:<line|trafo>:<idx>:<f|t>")


@dataclass
class NetworkModel:
    """A solved network and its admittance matrices over the (full) pandapower ppc.

    Attributes
    ----------
    ybus, yf, yt
        scipy sparse admittance matrices (per unit on ``base_mva``), all ppc branches; branches
        out of service have zero rows.
    v
        True complex bus voltages (per unit) of the power flow, per ppc bus.
    bus_lookup
        pandapower bus index -> ppc bus row.
    branch_rows
        (element, pandapower index) -> ppc branch row, for in-service branches.
    aux_buses
        ppc buses that are not pandapower buses (e.g. the open end of a switched line).
    """

    name: str
    net: object
    base_mva: float
    base_kv: np.ndarray
    ybus: object
    yf: object
    yt: object
    v: np.ndarray
    bus_lookup: dict[int, int]
    branch_rows: dict[tuple[str, int], int]
    f_bus: np.ndarray
    t_bus: np.ndarray
    aux_buses: tuple[int, ...]

    @property
    def n(self) -> int:
        """Number of ppc buses (state size is 2n)."""
        return len(self.v)

    def v_base(self, ppc_bus: int | np.ndarray) -> np.ndarray | float:
        """Phase-to-neutral voltage base in volts."""
        return self.base_kv[ppc_bus] * 1e3 / math.sqrt(3.0)

    def i_base(self, ppc_bus: int | np.ndarray) -> np.ndarray | float:
        """Current base in amperes at a ppc bus (three-phase base power)."""
        return self.base_mva * 1e6 / (math.sqrt(3.0) * self.base_kv[ppc_bus] * 1e3)

    def channels_at(self, bus: int) -> list[Channel]:
        """The voltage at ``bus`` and every in-service branch current leaving it."""
        if bus not in self.bus_lookup:
            raise ValueError(f"bus {bus} is not a bus of network {self.name} (buses: {sorted(self.bus_lookup)})")
        row = self.bus_lookup[bus]
        out = [Channel(f"V:{bus}", "V", bus)]
        for (element, idx), br in sorted(self.branch_rows.items()):
            if self.f_bus[br] == row:
                out.append(Channel(f"I:{element}:{idx}:f", "I", bus, element, idx, "f"))
            if self.t_bus[br] == row:
                out.append(Channel(f"I:{element}:{idx}:t", "I", bus, element, idx, "t"))
        return out

    def measurement_row(self, ch: Channel) -> tuple[object, float]:
        """Row of ``H_c`` (sparse, per unit) and the per-unit -> engineering-unit factor of ``ch``."""
        if ch.kind == "V":
            if ch.bus not in self.bus_lookup:
                raise ValueError(f"channel {ch.name}: bus {ch.bus} not in network {self.name}")
            r = self.bus_lookup[ch.bus]
            import scipy.sparse as sp

            return sp.csr_matrix(([1.0 + 0j], ([0], [r])), shape=(1, self.n)), float(self.v_base(r))
        key = (ch.element, ch.index)
        if key not in self.branch_rows:
            raise ValueError(f"channel {ch.name}: no in-service {ch.element} {ch.index} in network {self.name}")
        br = self.branch_rows[key]
        mat, end = (self.yf, self.f_bus[br]) if ch.side == "f" else (self.yt, self.t_bus[br])
        return mat[br], float(self.i_base(end))

    def true_phasor(self, ch: Channel) -> complex:
        """True phasor of ``ch`` in engineering units."""
        row, scale = self.measurement_row(ch)
        return complex((row @ self.v)[0]) * scale


def load_network(name: str) -> object:
    """A shipped pandapower network with its power flow solved."""
    import pandapower as pp

    nets = _networks()
    if name not in nets:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(nets)}")
    net = nets[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)
    return net


@lru_cache(maxsize=8)
def network_model(name: str) -> NetworkModel:
    """Solved network ``name`` and its matrices (cached; treat as read-only)."""
    from pandapower.pypower.makeYbus import makeYbus

    net = load_network(name)
    ppc = net._ppc  # pinned pandapower 3.5.6: ppc holds all buses/branches with results
    bus, branch = ppc["bus"], ppc["branch"]
    ybus, yf, yt = makeYbus(ppc["baseMVA"], bus, branch)
    v = bus[:, 7].real * np.exp(1j * np.deg2rad(bus[:, 8].real))
    lookup = net._pd2ppc_lookups
    bus_lookup = {int(b): int(lookup["bus"][b]) for b in net.bus.index}
    status = branch[:, 10].real > 0
    rows: dict[tuple[str, int], int] = {}
    for element in ("line", "trafo"):
        if element not in lookup["branch"]:
            continue
        start, _ = lookup["branch"][element]
        for k, idx in enumerate(net[element].index):
            if status[start + k]:
                rows[(element, int(idx))] = start + k
    aux = tuple(sorted(set(range(len(bus))) - set(bus_lookup.values())))
    return NetworkModel(name=name, net=net, base_mva=float(ppc["baseMVA"]), base_kv=bus[:, 9].real.copy(),
                        ybus=ybus.tocsr(), yf=yf.tocsr(), yt=yt.tocsr(), v=v, bus_lookup=bus_lookup,
                        branch_rows=rows, f_bus=branch[:, 0].real.astype(int), t_bus=branch[:, 1].real.astype(int),
                        aux_buses=aux)


def tve(measured: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Total Vector Error |z - x| / |x| (IEEE C37.118.1)."""
    return np.abs(np.asarray(measured) - np.asarray(true)) / np.abs(np.asarray(true))


class PhasorSource:
    """Noisy PMU phasors for a set of PMU sites on a network.

    Parameters
    ----------
    network
        One of :data:`NETWORKS`.
    buses
        pandapower buses with a PMU (each PMU measures its bus voltage and the currents of the
        branches leaving the bus).
    seed
        Seed of the noise generator (``numpy.random.default_rng``).
    sigma_mag, sigma_ang
        Relative magnitude noise and angle noise (radians).
    """

    def __init__(self, network: str, buses: Sequence[int], seed: int = 0,
                 sigma_mag: float = SIGMA_MAG, sigma_ang: float = SIGMA_ANG) -> None:
        if sigma_mag < 0 or sigma_ang < 0:
            raise ValueError(f"noise sigmas must be >= 0, got sigma_mag={sigma_mag}, sigma_ang={sigma_ang}")
        self.model = network_model(network)
        self.buses = [int(b) for b in buses]
        self.channels = [self.model.channels_at(b) for b in self.buses]
        self.truth = [np.array([self.model.true_phasor(c) for c in chans]) for chans in self.channels]
        self.sigma_mag, self.sigma_ang = sigma_mag, sigma_ang
        self.rng = np.random.default_rng(seed)
        self._all_truth = np.concatenate(self.truth) if self.truth else np.zeros(0, complex)
        self._splits = np.cumsum([len(t) for t in self.truth])[:-1]

    def sample(self) -> list[np.ndarray]:
        """One noisy draw: a complex array (engineering units) per PMU, same order as ``buses``."""
        x = self._all_truth
        e = np.clip(self.rng.standard_normal((2, x.size)), -CLIP_SIGMA, CLIP_SIGMA)
        z = np.abs(x) * (1.0 + self.sigma_mag * e[0]) * np.exp(1j * (np.angle(x) + self.sigma_ang * e[1]))
        return np.split(z, self._splits)

    def max_tve(self) -> float:
        """Upper bound of the TVE of any draw (noise clipped at ``CLIP_SIGMA``)."""
        dm, da = CLIP_SIGMA * self.sigma_mag, CLIP_SIGMA * self.sigma_ang
        return float(abs((1 + dm) * complex(math.cos(da), math.sin(da)) - 1))

    def long_form(self, t: float, draws: list[np.ndarray]) -> pd.DataFrame:
        """Measurements of one draw as the long-form table of state-estimation.md B4."""
        rows = []
        for pmu, (chans, z) in enumerate(zip(self.channels, draws)):
            for ch, val in zip(chans, z):
                rows.append({"pmu_id": pmu, "bus": ch.bus, "branch": f"{ch.element}:{ch.index}" if ch.kind == "I" else "",
                             "side": ch.side, "quantity": ch.kind, "t": t, "mag": abs(val),
                             "ang_rad": float(np.angle(val)), "sigma_mag": self.sigma_mag * abs(val),
                             "sigma_ang": self.sigma_ang})
        return pd.DataFrame(rows)
