"""Island operation (thesis 6.1, Fig. 6.2): a leaf cut off keeps its own stream; the root loses it.

The leaf running the low-level PDC and its PMU (both required there:
:func:`~labkit.experiments.stream.colocated_env`) is cut off from the lab network for
``isolation_s`` seconds and comes back. One recorder runs *inside* that leaf, beside the low PDC
(connected to its pod address), one in the root for the high PDC. The thesis (Fig. 6.2): the
isolated low PDC keeps receiving, the high PDC stops. When the isolation outlasts NotReady +
eviction, the root's replacements stay Pending (the PMU and the low PDC are *required* on that
leaf) and the isolated copies keep running until the leaf returns.

Table ``island``: ``frames_lost`` per stream and PMU during the isolation (labels ``expected``,
``received``, ``start``, ``end``: the cut and the return, UNIX s), ``frame_rate`` per second and
stream, and the fault log.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit import reference
from labkit.config import Env
from labkit.experiments.base import Tables, param
from labkit.experiments.reaction import tunnel_window
from labkit.experiments.stream import colocated_env, island_table, kept, measure_island, plot_island
from labkit.experiments.stream.common import StreamParameters
from labkit.fidelity import Check, Method, within
from labkit.testbed import Testbed

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)
#: The figure id of :data:`labkit.experiments.EXPERIMENTS`.
FIGURE = "Fig. 6.2"
#: Share of the isolated source's frames the high PDC must have lost (%).
HIGH_LOSS_MIN_PCT = 95.0
#: The eviction wait of Table 7.1 (s), and the longest a root takes to give a cut-off leaf up: Liqo's tunnel check
#: (NotReady at most 11 s after the cut, reaction.tunnel_window) plus that wait.
EVICTION_S = 5.0
GIVE_UP_S = tunnel_window()[1] + EVICTION_S


class Parameters(StreamParameters):
    """What an island run measures."""

    isolation_s: float = param(30.0, "seconds the leaf is cut off (the thesis gives no duration)", gt=0)
    before_s: float = param(10.0, "seconds recorded before the cut", ge=0)
    after_s: float = param(20.0, "seconds recorded after the leaf is back", ge=0)


def beds(env: Env, params: Parameters) -> list[Env]:
    """The env's test bed (reduced to ``clusters`` when given), each low PDC required beside its PMUs."""
    return [colocated_env(kept(env, params.clusters))]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """One isolation of the low PDC's leaf (:func:`~labkit.experiments.stream.measure_island`)."""
    return {NAME: measure_island(testbed, env, isolation_s=params.isolation_s, before_s=params.before_s,
                                 after_s=params.after_s, with_db=params.with_db, run_id="", scenario="")}


def headline(tables: Tables) -> dict[str, float]:
    """The isolation measured (s, from the cut to the return) and the frames each PDC lost during it."""
    lost = island_table(tables[NAME])
    rows = tables[NAME].query("metric == 'frames_lost'")
    out = {"isolation_s": float((rows["end"] - rows["start"]).max())} if len(rows) else {}
    return out | {f"{stream}_frames_lost": float(v) for stream, v in lost.groupby("stream")["lost"].sum().items()}


def compare(tables: Tables) -> pd.DataFrame:
    """Nothing: the thesis published no number for Fig. 6.2 (an empty comparison)."""
    return reference.compare([])


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 6.2's checks: the isolated low PDC lost no frame, the high PDC lost (almost) all of the isolated
    source's, and the isolation outlasted NotReady and eviction (so the root had given the leaf up)."""
    rows = tables[NAME]
    lost = island_table(rows)
    per = lost.groupby("stream")[["expected", "lost"]].sum()
    isolation = rows.loc[rows["metric"] == "frames_lost"]
    isolated_s = float((isolation["end"] - isolation["start"]).max()) if len(isolation) else None
    low = per.loc["low"] if "low" in per.index else None
    high = per.loc["high"] if "high" in per.index else None
    return [
        within(FIGURE, "low PDC (isolated with its PMU): frames lost during the isolation",
               float(low["lost"]) if low is not None else None, high=0, unit="frames", thesis="keeps receiving",
               n=int(low["expected"]) if low is not None else None,
               reason="thesis 6.1: the isolated lower PDC continues to receive data from its sources"),
        within(FIGURE, "high PDC (in the root): share of the isolated source's frames lost",
               100 * float(high["lost"] / high["expected"]) if high is not None and high["expected"] else None,
               low=HIGH_LOSS_MIN_PCT, high=100, unit="%", thesis="stops receiving",
               n=int(high["expected"]) if high is not None else None,
               reason="thesis 6.1: the higher PDC stops receiving the isolated source's stream; a frame or two "
                      "in flight at the cut may still arrive"),
        within(FIGURE, "isolation long enough for the root to give the leaf up", isolated_s, low=GIVE_UP_S,
               unit="s", basis="software",
               reason=f"NotReady within {GIVE_UP_S - EVICTION_S:g} s (Liqo's tunnel check) plus the {EVICTION_S:g} s "
                      "eviction wait of Table 7.1: a shorter cut ends before the root acts, and island operation "
                      "is not what is shown"),
    ]


def methods(tables: Tables) -> list[Method]:
    """Fig. 6.2: the thesis' disconnection of the low PDC's cluster, ours."""
    rows = tables[NAME]
    isolation = rows.loc[rows["metric"] == "frames_lost"]
    isolated_s = float((isolation["end"] - isolation["start"]).max()) if len(isolation) else float("nan")
    return [Method(
        FIGURE,
        thesis="the cluster hosting the lower PDC and its data sources disconnected from the network; the data "
               "stream seen by the lower PDC and by the higher PDC shortly before and after (duration not given)",
        ours=f"the leaf running the low PDC and its PMU (both required there) cut off the lab network for "
             f"{isolated_s:.0f} s; a recorder inside the leaf beside the low PDC, one in the root for the high PDC; "
             "frames per second at both and the frames lost during the cut",
        environment="network namespaces on one 2-core machine; the cut is the leaf VM's veth",
        implementation="the kit's PMU and PDCs (C37.118 in Python) instead of openPDC v2.4; the kit's Galera image "
                       "instead of the Percona operator")]


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 6.2: frames per second at both PDCs around the isolation."""
    return {"Fig. 6.2": plot_island(tables[NAME], Path(out_dir) / "fig-6-2-island.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Frames expected, received and lost during the isolation, per stream and PMU."""
    return {"frames during the isolation": island_table(tables[NAME])}
