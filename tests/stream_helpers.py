"""Synthetic runs of the stream experiments: recorder frames and milestones made up, tidied by the same
functions a measurement uses (``labkit.experiments.stream``), for the replot and fidelity tests."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from labkit import results
from labkit.experiments import stream
from labkit.faults import FaultLog

FPS = 30
T0 = 1_800_000_000.0  # an arbitrary UNIX time


def frames_at(stream_name: str, start: float, end: float, gaps: list[tuple[float, float]],
              pmu: int = 1) -> pd.DataFrame:
    """Frames at FPS from ``start`` to ``end`` without those inside each ``(a, b)`` gap."""
    k = np.arange(int(start * FPS), int(end * FPS))
    t = k / FPS
    keep = np.ones(len(t), bool)
    for a, b in gaps:
        keep &= ~((t > a) & (t < b))
    t = t[keep]
    return pd.DataFrame({"pmu_idcode": pmu, "frame_time": t, "arrival": t + 0.02, "stat": 0, "stream": stream_name})


def logs_of(*milestones: tuple[float, str], input_name: str = "pmu-1") -> pd.DataFrame:
    """PDC log milestones as :func:`stream.parse_log` returns them (``(t, "config fetched <s>")`` for a fetch)."""
    rows = []
    for t, e in milestones:
        if e.startswith("config fetched"):
            rows.append({"t": t, "event": "config fetched", "input": "db", "seconds": float(e.split()[-1]),
                         "message": e})
        else:
            rows.append({"t": t, "event": e, "input": input_name if e == "input connected" else "",
                         "seconds": np.nan, "message": e})
    return pd.DataFrame(rows, columns=["t", "event", "input", "seconds", "message"])


#: The synthetic repetition's phases (s) after the last old frame: termination, restart (kill -> process
#: started), startup, config fetch, reconnect, readiness, first frame at the low recorder; then at the high
#: PDC its reconnect and first frame.
PHASE_S = {"termination": 0.2, "restart": 0.8, "startup": 0.3, "config fetch": 0.1, "reconnect": 0.1,
           "readiness": 2.0, "first frame": 0.5}
HIGH_S = {"high reconnect": 1.0, "first frame": 0.3}
#: The cluster failure's NotReady and eviction (s).
NOT_READY_S, EVICTION_S = 9.5, 5.0


def repetition(fault: float, cluster_failure: bool, extra_restart: float = 0.0, observed: bool = True,
               phases: Mapping[str, float] = PHASE_S, high: Mapping[str, float] = HIGH_S,
               not_ready: float = NOT_READY_S) -> tuple[float, float, float, list, pd.DataFrame, pd.DataFrame,
                                                        float | None]:
    """One synthetic repetition: (last old, first new low, first new high, scenario milestones, low PDC log,
    high PDC log, Ready). ``observed=False`` drops the old container's "stopped" line and the Ready."""
    if cluster_failure:
        last_old = fault
        before = [("detection", last_old + not_ready), ("eviction", last_old + not_ready + EVICTION_S)]
        t = last_old + not_ready + EVICTION_S
    else:
        last_old = fault + 5.0
        before = []
        t = last_old
    lines = [] if cluster_failure else [(last_old + 0.05, "stopping")]
    t += phases["termination"]
    if observed and not cluster_failure:
        lines.append((t, "stopped"))
    t += phases["restart"] + extra_restart
    lines.append((t, "process started"))
    t += phases["startup"] + phases["config fetch"]
    lines.append((t, f"config fetched {phases['config fetch']}"))
    t += phases["reconnect"]
    lines.append((t, "input connected"))
    ready = t + phases["readiness"]
    first_low = ready + phases["first frame"]
    high_connected = ready + high["high reconnect"]
    first_high = high_connected + high["first frame"]
    return (last_old, first_low, first_high, before, logs_of(*lines),
            logs_of((high_connected, "input connected"), input_name="pdc-low"), ready if observed else None)


def downtime_rows(scenario: str, cluster_failure: bool, reps: int = 3, profiles: tuple[str, ...] = ("",),
                  unobserved: int | None = None, extra_restart: Mapping[int, float] | None = None,
                  labels: Mapping[str, object] | None = None, **knobs: object) -> pd.DataFrame:
    """A run's table: per profile ``reps`` repetitions, each a gap at both PDCs with every milestone.

    Repetition ``rep`` restarts ``extra_restart[rep]`` s later (default ``rep`` - 1: a growing
    wait); repetition ``unobserved`` lacks the old container's "stopped" line and the Ready;
    ``labels`` label every row; ``knobs`` go to :func:`repetition` (``phases``, ``high``, ``not_ready``).
    """
    parts = []
    for k, profile in enumerate(profiles):
        reps_ = [(rep, T0 + 600.0 * k + 60.0 * rep) for rep in range(1, reps + 1)]
        extra = extra_restart if extra_restart is not None else {rep: rep - 1.0 for rep, _ in reps_}
        made = {rep: repetition(fault, cluster_failure, extra_restart=extra.get(rep, 0.0),
                                observed=rep != unobserved, **knobs)  # type: ignore[arg-type]
                for rep, fault in reps_}
        gaps = {"low": [(m[0] + 0.01, m[1] - 0.01) for m in made.values()],
                "high": [(m[0] + 0.01, m[2] - 0.01) for m in made.values()]}
        start, end = T0 + 600.0 * k, T0 + 600.0 * k + 60.0 * (reps + 2)
        frames = pd.concat([frames_at(s, start, end, gaps[s]) for s in ("low", "high")], ignore_index=True)
        keys = {"run_id": "t", "scenario": scenario, **({"profile": profile} if profile else {}), **(labels or {})}
        rows: list[dict] = []
        for rep, fault in reps_:
            _, _, _, before, logs, high_logs, ready = made[rep]
            rows += stream.repetition_rows(rep=rep, t_fault=fault, frames=frames, logs=logs, milestones_before=before,
                                           cluster=f"leaf-{rep + 1}", detection_before_downtime=not cluster_failure,
                                           ready_at=ready, high_logs=high_logs, high_input="pdc-low",
                                           terminated=not cluster_failure, **keys)
        parts.append(stream.experiment_table(rows, frames, FaultLog(), keys))
    return stream.concat(parts)


def timers_rows() -> pd.DataFrame:
    """The ``*_timers`` table of a run of both profiles at their defaults."""
    from labkit.workloads.timers import FAST, THESIS

    rows = stream.timer_rows(THESIS, profile="thesis") + stream.timer_rows(FAST, profile="fast")
    return results.tidy(pd.DataFrame(rows).assign(t=pd.Timestamp(T0, unit="s", tz="UTC")), run_id="t",
                        scenario="pod-failure", step="measure", cluster="")
