"""Pod failure on multi-level domains (thesis 6.2; not measured by the thesis).

The experiment of :mod:`labkit.experiments.pod_failure` on the two-level implementation of
section 6.2 (``envs/multilevel.yaml``): the low PDC runs in the low-level namespace that the main
primary ``p-1`` offloads to its secondaries, the high PDC in the high-level namespace the ACC
offloads to the group ``area-1``; the stream crosses the two namespaces, and each PDC reads its
level's DB domain. The thesis measured only the first implementation, so the comparison sets the
Fig. 7.3 median beside ours as the nearest published number. ``clusters`` restricts the env to
some of its clusters (CI: one branch of each level, :data:`~labkit.experiments.stream.MULTILEVEL_CI`).

Table ``multilevel``: as ``pod_failure``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit import reference
from labkit.config import Env, load_env
from labkit.experiments.base import Tables, param, thesis
from labkit.experiments.pod_failure import REFERENCE_KEY, downtime_headline
from labkit.experiments.stream import (compare_pod_failure, kept, measure_pod_failure, phase_table, plot_downtime,
                                       table)
from labkit.experiments.stream.common import StreamParameters
from labkit.fidelity import Check, Method
from labkit.testbed import Testbed

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)


class Parameters(StreamParameters):
    """What a multi-level pod-failure run measures."""

    two_level_env: str = param("multilevel", "the env file of the two-level implementation (thesis 6.2, Fig. 6.3)")
    repetitions: int = param(20, "liveness failures, one after another", ge=1)
    after_s: float = thesis(60.0, "as the thesis' pod failure: the probe fails once the pod has run 60 s (7.4.1)",
                            gt=0)
    settle_s: float = param(5.0, "seconds after the stream is back before the PDC's logs are read", ge=0)
    timeout_s: float = param(120.0, "seconds the stream may take to come back before the run fails", gt=0)


def beds(env: Env, params: Parameters) -> list[Env]:
    """The two-level env's test bed (not the run's env), reduced to ``clusters`` when given."""
    return [kept(load_env(params.two_level_env), params.clusters)]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """``repetitions`` liveness failures of the low PDC (:func:`~labkit.experiments.stream.measure_pod_failure`)."""
    return {NAME: measure_pod_failure(testbed, env, repetitions=params.repetitions, after_s=params.after_s,
                                      with_db=params.with_db, settle_s=params.settle_s,
                                      timeout_s=params.timeout_s, run_id="", scenario="")}


def headline(tables: Tables) -> dict[str, float]:
    """Repetitions, how many recovered, and the median downtime at the low PDC (s)."""
    return downtime_headline(tables[NAME])


def compare(tables: Tables) -> pd.DataFrame:
    """The thesis' Fig. 7.3 median (the nearest published number) beside our median downtime."""
    return compare_pod_failure(tables[NAME])


def fidelity(tables: Tables) -> list[Check]:
    """The multi-level test's fidelity checks: none yet."""
    return []


def methods(tables: Tables) -> list[Method]:
    """The multi-level test's method: not yet recorded."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Phases per repetition and the downtime distribution, the Fig. 7.3 median drawn for scale."""
    path = plot_downtime(tables[NAME], Path(out_dir) / "multilevel-pod-failure.png",
                         "Multi-level (6.2) pod failure", thesis_median=reference.lookup(REFERENCE_KEY))
    return {"multi-level pod failure": path}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Phases per repetition, and the statistics of the downtime and of every phase."""
    rows = tables[NAME]
    return {"phases per repetition (s)": phase_table(rows), "downtime and phases (s)": table(rows)}
