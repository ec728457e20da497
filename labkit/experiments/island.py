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
from labkit.experiments.stream import colocated_env, island_table, kept, measure_island, plot_island
from labkit.experiments.stream.common import StreamParameters
from labkit.fidelity import Check, Method
from labkit.testbed import Testbed

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)


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
    """Fig. 6.2's fidelity checks: none yet."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Fig. 6.2's method beside the thesis': not yet recorded."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 6.2: frames per second at both PDCs around the isolation."""
    return {"Fig. 6.2": plot_island(tables[NAME], Path(out_dir) / "fig-6-2-island.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Frames expected, received and lost during the isolation, per stream and PMU."""
    return {"frames during the isolation": island_table(tables[NAME])}
