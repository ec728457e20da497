"""Cluster failure (thesis 7.4.2, Fig. 7.4): how long the PMU stream stays down when the low PDC's cluster fails.

Every VM of the leaf that runs the low-level PDC loses its lab interface. The root sees the
leaf's virtual node NotReady (*detection*), evicts the pod after the 5 s toleration and the
Deployment creates its replacement (*eviction*), which is scheduled on another leaf and starts
(*restart*, *startup*, *config fetch*, *reconnect*, *readiness*, *high reconnect*, *first frame*:
:mod:`labkit.experiments.stream`). The thesis explained its median as 9.75 + 5 + 16.41 s (Fig. 7.2,
Table 7.1, Fig. 7.3): a composition of numbers measured elsewhere, not a median it measured. Here
each term is measured, under both timer profiles (:mod:`labkit.workloads.timers`; the timers
change the restart term; NotReady and eviction are the test bed's, Table 7.1). The low PDC may
only run on leaves without its PMU and the high PDC (:func:`~labkit.experiments.stream.movable_low_env`),
so each repetition disconnects the low PDC alone; the leaf is reconnected once the stream is back,
and the next repetition disconnects wherever the PDC moved, once the DB domain is complete again.

Tables ``cluster_failure`` and ``cluster_failure_timers``: as ``pod_failure``'s (:mod:`labkit.experiments.pod_failure`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from labkit import reference
from labkit.config import Env
from labkit.experiments.base import Tables, param
from labkit.experiments.pod_failure import downtime_headline
from labkit.experiments.stream import (ProfiledParameters, compare_cluster_failure, composition, concat,
                                       decomposition, kept, measure_cluster_failure, missing_table,
                                       movable_low_env, plot_cluster_failure, repetitions_table, table,
                                       timer_rows, timers_table)
from labkit.fidelity import Check, Method
from labkit.testbed import Testbed
from labkit.workloads.timers import ProfileName

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns: the measurement, and the timers each profile ran with.
TABLES = (NAME, f"{NAME}_timers")
#: Thesis key of the composition of Fig. 7.4 (NotReady + eviction + restart).
REFERENCE_KEY = "stream_downtime_s.figure_7_4_cluster_failure_composition"


class Parameters(ProfiledParameters):
    """What a cluster-failure run measures."""

    repetitions: dict[ProfileName, int] = param({"thesis": 10, "fast": 10}, "disconnections per profile, one after "
                                                "another (the thesis does not say how many it ran)")
    settle_s: float = param(3.0, "seconds after the stream is back before the PDCs' logs are read", ge=0)
    timeout_s: float = param(180.0, "seconds the stream may take to come back before the run fails", gt=0)


def beds(env: Env, params: Parameters) -> list[Env]:
    """The env's test bed (reduced to ``clusters`` when given), its low PDC movable between free leaves."""
    return [movable_low_env(kept(env, params.clusters))]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """Each profile's disconnections of the low PDC's cluster
    (:func:`~labkit.experiments.stream.measure_cluster_failure`)."""
    common: dict[str, Any] = {"with_db": params.with_db, "settle_s": params.settle_s, "timeout_s": params.timeout_s,
                              "run_id": "", "scenario": ""}
    parts, timers = [], []
    for profile in params.profiles:
        parts.append(measure_cluster_failure(testbed, env, repetitions=params.repetitions[profile],
                                             timers=params.timers(profile), profile=profile, **common))
        timers += timer_rows(params.timers(profile), profile=profile)
    return {NAME: concat(parts), f"{NAME}_timers": pd.DataFrame(timers).assign(
        t=pd.Timestamp.now(tz="UTC"), run_id="", scenario="", step="measure", cluster="")}


def headline(tables: Tables) -> dict[str, float]:
    """Per profile: repetitions, recovered, the median downtime at each PDC, the median of each term of Fig. 7.4 (s)."""
    rows = tables[NAME]
    out: dict[str, float] = {}
    for profile in ("thesis", "fast"):
        if (rows["profile"] == profile).any():
            terms = composition(rows, "high", profile).median()
            out |= {f"{profile}.{k}": v for k, v in downtime_headline(rows, profile=profile).items()}
            out |= {f"{profile}.{term}_s_median": float(v) for term, v in terms.items() if v == v}
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """The thesis' composition of Fig. 7.4, term by term and composed, beside our medians per profile and PDC."""
    return compare_cluster_failure(tables[NAME])


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 7.4's fidelity checks: none yet (issue #22 item 2 adds them)."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Fig. 7.4's method beside the thesis': not yet recorded (issue #22 item 2)."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 7.4: phases per repetition, each profile's measured terms beside the thesis' composition, downtimes."""
    path = plot_cluster_failure(tables[NAME], Path(out_dir) / "fig-7-4-cluster-failure.png",
                                reference.lookup(REFERENCE_KEY))
    return {"Fig. 7.4": path}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """The profiles' timers, Fig. 7.4's terms per profile, the decomposition, statistics and each repetition."""
    rows = tables[NAME]
    terms = {p: composition(rows, "high", p).median() for p in ("thesis", "fast") if (rows["profile"] == p).any()}
    return {"timer profiles": timers_table(tables[f"{NAME}_timers"]),
            "Fig. 7.4's terms at the high PDC, median per profile (s)": pd.DataFrame(terms).T,
            "median phases at the high PDC per profile (s)": decomposition(rows, "high"),
            "downtime and phases (s)": table(rows),
            "repetitions": repetitions_table(rows),
            "milestones not observed": missing_table(rows)}
