"""The fidelity checks of Fig. 6.2 (island) and of the multi-level pod failure, each fed tables that fail it.

The tables are made with the harness' own functions (``labkit.experiments.stream``) from synthetic
recorder frames and PDC log milestones, as a run would write them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labkit.experiments import island, multilevel, stream
from labkit.faults import FaultLog

pytestmark = pytest.mark.unit

FPS = 30
T0 = 1_800_000_000.0


def _frames(name: str, start: float, end: float, gaps: list[tuple[float, float]]) -> pd.DataFrame:
    t = np.arange(int(start * FPS), int(end * FPS)) / FPS
    keep = np.ones(len(t), bool)
    for a, b in gaps:
        keep &= ~((t > a) & (t < b))
    return pd.DataFrame({"pmu_idcode": 1, "frame_time": t[keep], "arrival": t[keep] + 0.02, "stat": 0, "stream": name})


def _island(isolation_s: float = 30.0, low_gap: float = 0.0, high_kept: float = 0.0) -> dict[str, pd.DataFrame]:
    """An island run: the low stream loses ``low_gap`` s after the cut, the high one keeps its first ``high_kept`` s."""
    cut, back = T0 + 10.0, T0 + 10.0 + isolation_s
    low = _frames("low", T0, T0 + 80.0, [(cut, cut + low_gap)] if low_gap else [])
    high = _frames("high", T0, T0 + 80.0, [(cut + high_kept, back + 2.0)])
    frames = pd.concat([low, high], ignore_index=True)
    rows = stream.island_rows(frames, cut, back, FPS, cluster="leaf-2", colocated=True, run_id="t", scenario="island")
    return {"island": stream.experiment_table(rows, frames, FaultLog(), {"run_id": "t", "scenario": "island"})}


def _verdicts(checks: list) -> dict[str, str]:  # noqa: ANN001 (fidelity.Check)
    return {c.name.split(":")[0].split(" (")[0]: c.verdict for c in checks}


def test_island_passes_when_the_low_pdc_keeps_its_stream_and_the_high_loses_it() -> None:
    checks = island.fidelity(_island())
    assert {c.verdict for c in checks} == {"pass"} and len(checks) == 3
    assert island.methods(_island())[0].ours.startswith("the leaf running the low PDC")


def test_island_fails_on_a_lost_low_frame_a_kept_high_stream_or_a_short_cut() -> None:
    assert _verdicts(island.fidelity(_island(low_gap=1.0)))["low PDC"] == "fail"
    assert _verdicts(island.fidelity(_island(high_kept=5.0)))["high PDC"] == "fail"  # 5 of 30 s still arrived
    short = _verdicts(island.fidelity(_island(isolation_s=12.0)))
    assert short["isolation long enough for the root to give the leaf up"] == "fail"  # under 11 + 5 s


def _multilevel(reps: int = 3, high_lead: float = 0.0, drop_restart: bool = False,
                source: str = "db") -> dict[str, pd.DataFrame]:
    """Pod failures: ``reps`` gaps at the low PDC; the high stream back ``high_lead`` s before the low one."""
    rows: list[dict] = []
    low_gaps, high_gaps, logs = [], [], []
    for rep in range(1, reps + 1):
        fault = T0 + 60.0 * rep
        last_old, first_new = fault + 5.0, fault + 8.0
        low_gaps.append((last_old, first_new))
        high_gaps.append((last_old, first_new - high_lead))
        restart = [] if drop_restart else [(last_old + 1.0, "process started")]
        milestones = [*restart, (last_old + 1.5, "listening"), (last_old + 2.0, "input connected")]
        log = pd.DataFrame([{"t": t, "event": e, "input": "pmu-1" if e == "input connected" else "",
                             "seconds": np.nan, "message": e} for t, e in milestones])
        fetch = pd.DataFrame([{"t": last_old + 1.7, "event": "config fetched", "input": source, "seconds": 0.1,
                               "message": f"config-fetch source={source} seconds=0.1"}])
        logs.append((rep, fault, pd.concat([log, fetch], ignore_index=True)))
    frames = pd.concat([_frames("low", T0, T0 + 60.0 * (reps + 1), low_gaps),
                        _frames("high", T0, T0 + 60.0 * (reps + 1), high_gaps)], ignore_index=True)
    for rep, fault, log in logs:
        rows += stream.repetition_rows(rep=rep, t_fault=fault, frames=frames, logs=log, milestones_before=[],
                                       cluster="s-1-1", detection_before_downtime=True, run_id="t",
                                       scenario="multilevel-pod-failure")
    table = stream.experiment_table(rows, frames, FaultLog(), {"run_id": "t", "scenario": "multilevel-pod-failure"})
    return {"multilevel": table}


def test_multilevel_has_no_thesis_value_and_its_checks_pass_on_a_sound_run() -> None:
    tables = _multilevel()
    assert multilevel.compare(tables).empty  # the thesis did not run it
    checks = multilevel.fidelity(tables)
    assert all(not c.thesis for c in checks)
    phases = stream.phase_table(tables["multilevel"])
    assert set(multilevel.DECOMPOSED) <= set(phases.columns), phases
    assert {c.name: c.verdict for c in checks} == {
        "every repetition's downtime split into its phases": "pass",
        "every configuration fetched from the level's DB domain": "pass",
        "the high PDC back no sooner than the low PDC": "pass"}
    assert multilevel.methods(tables)[0].thesis.startswith("not run")


def test_multilevel_fails_on_a_missing_phase_a_file_fallback_or_a_high_pdc_back_first() -> None:
    def verdict(tables: dict[str, pd.DataFrame], name: str) -> str:
        return next(c.verdict for c in multilevel.fidelity(tables) if c.name == name)

    assert verdict(_multilevel(drop_restart=True), "every repetition's downtime split into its phases") == "fail"
    assert verdict(_multilevel(source="file"), "every configuration fetched from the level's DB domain") == "fail"
    assert verdict(_multilevel(high_lead=1.0), "the high PDC back no sooner than the low PDC") == "fail"
