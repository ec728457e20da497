"""Pod failure (thesis 7.4.1, Fig. 7.3): how long the PMU stream stays down when the low PDC's pod fails.

The low-level PDC's liveness probe starts failing once its container has run ``after_s`` seconds
(the thesis: 60 s); the kubelet of the cluster that really runs the pod restarts the container.
Two recorder pods in the root subscribe to the low and the high PDC's output; the downtime is the
timestamp of the first frame of the new stream minus that of the last frame of the old one
(thesis 7.4), split into measured phases (:mod:`labkit.experiments.stream`). Every repetition
fails a pod whose container never restarted (the previous one is replaced first): the kubelet's
restart back-off of one container doubles with each restart (10 s up to 300 s), which the
thesis' protocol, one failure per pod, never met.

Table ``pod_failure``: ``stream_downtime`` per repetition and stream (s), ``phase`` of the low
stream (s, label ``phase``), ``frame_rate`` per second and the fault log (``fault``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit import reference
from labkit.config import Env
from labkit.experiments.base import Tables, param, thesis
from labkit.experiments.stream import (compare_pod_failure, downtimes, kept, measure_pod_failure, phase_table,
                                       plot_downtime, table)
from labkit.experiments.stream.common import StreamParameters
from labkit.fidelity import Check, Method
from labkit.testbed import Testbed

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)
#: Thesis key of the published median downtime.
REFERENCE_KEY = "stream_downtime_s.figure_7_3_pod_failure_median"


class Parameters(StreamParameters):
    """What a pod-failure run measures."""

    repetitions: int = param(20, "liveness failures, one after another (the thesis does not say how many it ran)",
                             ge=1)
    after_s: float = thesis(60.0, "the probe fails once the pod has run 60 s (thesis 7.4.1: \"a failure check after "
                                  "the pod had been running for 60 seconds\")", gt=0)
    settle_s: float = param(5.0, "seconds after the stream is back before the PDC's logs are read", ge=0)
    timeout_s: float = param(120.0, "seconds the stream may take to come back before the run fails", gt=0)


def beds(env: Env, params: Parameters) -> list[Env]:
    """The env's own test bed, reduced to ``clusters`` when given."""
    return [kept(env, params.clusters)]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """``repetitions`` liveness failures of the low PDC (:func:`~labkit.experiments.stream.measure_pod_failure`)."""
    return {NAME: measure_pod_failure(testbed, env, repetitions=params.repetitions, after_s=params.after_s,
                                      with_db=params.with_db, settle_s=params.settle_s,
                                      timeout_s=params.timeout_s, run_id="", scenario="")}


def headline(tables: Tables) -> dict[str, float]:
    """Repetitions, how many recovered, and the median and longest downtime at the low PDC (s)."""
    return downtime_headline(tables[NAME], longest=True)


def downtime_headline(rows: pd.DataFrame, longest: bool = False) -> dict[str, float]:
    """Repetitions and recovered ones of a stream table, its median (and ``longest``: maximum) low downtime (s)."""
    low = downtimes(rows)["downtime_s"]
    out = {"repetitions": float(len(low)), "recovered": float(low.notna().sum())}
    if low.notna().any():
        out["downtime_s_median"] = float(low.median())
        if longest:
            out["downtime_s_max"] = float(low.max())
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """The thesis' median downtime (Fig. 7.3, 16.41 s) beside ours at the low PDC."""
    return compare_pod_failure(tables[NAME])


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 7.3's fidelity checks: none yet (issue #22 item 1 adds them)."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Fig. 7.3's method beside the thesis': not yet recorded (issue #22 item 1)."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 7.3: phases per repetition and the downtime distribution, the thesis' median drawn."""
    path = plot_downtime(tables[NAME], Path(out_dir) / "fig-7-3-pod-failure.png", "Fig. 7.3 pod failure",
                         thesis_median=reference.lookup(REFERENCE_KEY))
    return {"Fig. 7.3": path}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Phases per repetition, and the statistics of the downtime and of every phase."""
    rows = tables[NAME]
    return {"phases per repetition (s)": phase_table(rows), "downtime and phases (s)": table(rows)}
