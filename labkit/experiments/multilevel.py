"""Pod failure on multi-level domains (thesis 6.2; not measured by the thesis).

The experiment of :mod:`labkit.experiments.pod_failure` on the two-level implementation of
section 6.2 (``envs/multilevel.yaml``): the low PDC runs in the low-level namespace that the main
primary ``p-1`` offloads to its secondaries, the high PDC in the high-level namespace the ACC
offloads to the group ``area-1``; the stream crosses the two namespaces, and each PDC reads its
level's DB domain. The thesis measured only the first implementation, so no thesis value stands
beside ours; :func:`fidelity` checks the measurement itself. ``clusters`` restricts the env to
some of its clusters (CI: one branch of each level, :data:`~labkit.experiments.stream.MULTILEVEL_CI`).

Table ``multilevel``: as ``pod_failure``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit import reference
from labkit.config import Env, load_env
from labkit.experiments.base import Tables, param, thesis
from labkit.experiments.pod_failure import downtime_headline
from labkit.experiments.stream import downtimes, kept, measure_pod_failure, phase_table, plot_downtime, table
from labkit.experiments.stream.common import FailureParameters
from labkit.fidelity import Check, Method, holds
from labkit.testbed import Testbed

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)
#: The figure id of :data:`labkit.experiments.EXPERIMENTS`.
FIGURE = "multi-level pod failure"
#: The phases a liveness failure's downtime splits into (labkit.experiments.stream.phases.PHASES without the
#: cluster failure's eviction and the process' startup, which a fast restart may not log apart).
DECOMPOSED = ("restart", "config fetch", "reconnect", "first frame")
#: How much earlier (s) the high PDC's stream may seem back than the low's: two frames (33 ms apart) of jitter.
HIGH_BEFORE_LOW_S = 0.07


class Parameters(FailureParameters):
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
                                      **params.options())}


def headline(tables: Tables) -> dict[str, float]:
    """Repetitions, how many recovered, and the median downtime at the low PDC (s)."""
    return downtime_headline(tables[NAME])


def compare(tables: Tables) -> pd.DataFrame:
    """Nothing: the thesis did not run this experiment, so no thesis value stands beside ours."""
    return reference.compare([])


def fidelity(tables: Tables) -> list[Check]:
    """Checks of the measurement itself (the thesis has no number here): every repetition's downtime split into
    its phases, each PDC configured from its level's DB domain, the high PDC back no sooner than the low."""
    rows = tables[NAME]
    phases = phase_table(rows)
    needed = [p for p in DECOMPOSED if p in phases.columns]
    complete = int(phases[needed].notna().all(axis=1).sum()) if len(needed) == len(DECOMPOSED) else 0
    fetches = rows[(rows["metric"] == "phase") & (rows.get("phase") == "config fetch")] if "phase" in rows else rows.head(0)
    from_db = int((fetches["config_source"] == "db").sum()) if "config_source" in fetches else 0
    low = downtimes(rows, "low").set_index("repetition")["downtime_s"]
    high = downtimes(rows, "high").set_index("repetition")["downtime_s"]
    both = pd.concat([low, high], axis=1, keys=["low", "high"]).dropna()
    early = int((both["high"] < both["low"] - HIGH_BEFORE_LOW_S).sum())
    n = len(phases)
    return [
        holds(FIGURE, "every repetition's downtime split into its phases", complete == n if n else None,
              expected=f"{', '.join(DECOMPOSED)} measured in every repetition", observed=complete,
              unit=f"of {n} repetitions", n=n,
              reason="a phase missing from the decomposition means a milestone (PDC log line, recorder frame) was "
                     "not seen, so the downtime is not explained"),
        holds(FIGURE, "every configuration fetched from the level's DB domain", from_db == len(fetches) if len(fetches)
              else None, expected="every config fetch from the DB", observed=from_db, unit=f"of {len(fetches)} fetches",
              n=len(fetches), reason="thesis 6.2: each level's PDCs read their configuration from the level's "
                                     "distributed database; a file fallback would hide the DB's part of the downtime"),
        holds(FIGURE, "the high PDC back no sooner than the low PDC", early == 0 if len(both) else None,
              expected=f"high downtime >= low - {HIGH_BEFORE_LOW_S:g} s in every repetition", observed=early,
              unit=f"of {len(both)} repetitions earlier", n=len(both),
              reason="the high PDC's stream comes through the low PDC: it cannot resume before the low's"),
    ]


def methods(tables: Tables) -> list[Method]:
    """The multi-level pod failure: not run by the thesis; ours."""
    n = len(downtimes(tables[NAME], "low"))
    return [Method(
        FIGURE,
        thesis="not run: chapter 6.2 describes the two-level implementation only; chapter 7 measures the first one",
        ours=f"{n} liveness failures of the low PDC in the low-level namespace ({Parameters.model_fields['after_s'].default:g} s "
             "after its start, as Fig. 7.3), the stream measured at both PDCs, each PDC configured from its level's "
             "DB domain",
        environment="network namespaces on one 2-core machine (up to 11 clusters, 18 peerings)",
        implementation="the kit's PMU and PDCs instead of openPDC v2.4; the kit's Galera image instead of the "
                       "Percona operator")]


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Phases per repetition and the downtime distribution (no thesis value: the thesis did not run it)."""
    path = plot_downtime(tables[NAME], Path(out_dir) / "multilevel-pod-failure.png",
                         "Multi-level (6.2) pod failure, not measured by the thesis")
    return {FIGURE: path}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Phases per repetition, and the statistics of the downtime and of every phase."""
    rows = tables[NAME]
    return {"phases per repetition (s)": phase_table(rows), "downtime and phases (s)": table(rows)}
