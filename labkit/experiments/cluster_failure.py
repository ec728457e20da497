"""Cluster failure (thesis 7.4.2, Fig. 7.4): how long the PMU stream stays down when the low PDC's cluster fails.

Every VM of the leaf that runs the low-level PDC loses its lab interface. The root sees the
leaf's virtual node NotReady (*detection*), evicts the pod after the 5 s toleration and the
Deployment creates its replacement (*eviction*), which is scheduled on another leaf and starts
(*restart*, *startup*, *config fetch*, *reconnect*, *first frame*: :mod:`labkit.experiments.stream`).
The thesis explained its median as 9.75 + 5 + 16.41 s (Fig. 7.2, Table 7.1, Fig. 7.3); here each
term is measured. The low PDC may only run on leaves without its PMU and the high PDC
(:func:`~labkit.experiments.stream.movable_low_env`), so each repetition disconnects the low PDC
alone; the leaf is reconnected once the stream is back, and the next repetition disconnects
wherever the PDC moved, once the DB domain is complete again.

Table ``cluster_failure``: as ``pod_failure`` (:mod:`labkit.experiments.pod_failure`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit import reference
from labkit.config import Env
from labkit.experiments.base import Tables, param
from labkit.experiments.pod_failure import downtime_headline
from labkit.experiments.stream import (compare_cluster_failure, composition, kept, measure_cluster_failure,
                                       movable_low_env, plot_downtime, table)
from labkit.experiments.stream.common import StreamParameters
from labkit.fidelity import Check, Method
from labkit.testbed import Testbed

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)
#: Thesis key of the composition of Fig. 7.4 (NotReady + eviction + restart).
REFERENCE_KEY = "stream_downtime_s.figure_7_4_cluster_failure_composition"


class Parameters(StreamParameters):
    """What a cluster-failure run measures."""

    repetitions: int = param(20, "disconnections, one after another (the thesis does not say how many it ran)", ge=1)
    settle_s: float = param(5.0, "seconds after the stream is back before the PDC's logs are read", ge=0)
    timeout_s: float = param(180.0, "seconds the stream may take to come back before the run fails", gt=0)


def beds(env: Env, params: Parameters) -> list[Env]:
    """The env's test bed (reduced to ``clusters`` when given), its low PDC movable between free leaves."""
    return [movable_low_env(kept(env, params.clusters))]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """``repetitions`` disconnections of the low PDC's cluster (:func:`.stream.measure_cluster_failure`)."""
    return {NAME: measure_cluster_failure(testbed, env, repetitions=params.repetitions,
                                          with_db=params.with_db, settle_s=params.settle_s,
                                          timeout_s=params.timeout_s, run_id="", scenario="")}


def headline(tables: Tables) -> dict[str, float]:
    """Repetitions, recovered, the median downtime at the low PDC and the median of each term of Fig. 7.4 (s)."""
    rows = tables[NAME]
    terms = composition(rows).median()
    return downtime_headline(rows) | {f"{term}_s_median": float(v) for term, v in terms.items() if v == v}


def compare(tables: Tables) -> pd.DataFrame:
    """The thesis' composition of Fig. 7.4, term by term and in total, beside our medians."""
    return compare_cluster_failure(tables[NAME])


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 7.4's fidelity checks: none yet (issue #22 item 2 adds them)."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Fig. 7.4's method beside the thesis': not yet recorded (issue #22 item 2)."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 7.4: phases per repetition, the downtime distribution and the thesis' composition beside ours."""
    terms = reference.lookup(REFERENCE_KEY)
    path = plot_downtime(tables[NAME], Path(out_dir) / "fig-7-4-cluster-failure.png",
                         "Fig. 7.4 cluster failure", thesis_median=sum(terms.values()), composition_ref=terms)
    return {"Fig. 7.4": path}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Each term of Fig. 7.4 per repetition, and the statistics of the downtime and of every phase."""
    rows = tables[NAME]
    return {"Fig. 7.4's terms per repetition (s)": composition(rows), "downtime and phases (s)": table(rows)}
