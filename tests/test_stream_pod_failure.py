"""labkit.experiments.stream: what each repetition of the pod and cluster failures starts from, and the
profiles and sweep points the two experiments run (the test bed replaced by recording fakes)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from labkit.experiments import cluster_failure, pod_failure
from labkit.experiments.stream import scenarios
from labkit.workloads.timers import FAST, THESIS

pytestmark = pytest.mark.unit


class _Watch:
    """A stand-in for the owner's pod watch."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def collect(self) -> pd.DataFrame:
        return pd.DataFrame()


def _fake_bed(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    chain = type("Chain", (), {"low": "pdc-low", "high": "pdc-high"})()
    monkeypatch.setattr(scenarios, "chain_of", lambda env: chain)
    monkeypatch.setattr(scenarios, "record_chain", lambda testbed, chain, with_db, timers:
                        calls.append(f"deploy {type(timers).__name__}") or {"low": None, "high": None})
    monkeypatch.setattr(scenarios, "hosting_cluster", lambda testbed, chain, name: "leaf-1")
    monkeypatch.setattr(scenarios, "replace_pod", lambda testbed, chain, recorders, name, timeout:
                        calls.append(f"replace {name}"))
    monkeypatch.setattr(scenarios, "pod_watch", lambda testbed, chain, name, cluster=None: _Watch())
    monkeypatch.setattr(scenarios, "restart_logs", lambda testbed, chain, cluster, t: calls.append(f"logs {t:.0f}"))
    monkeypatch.setattr(scenarios, "pdc_logs", lambda *args: pd.DataFrame())
    monkeypatch.setattr(scenarios, "container_restarts", lambda *args: {"restarts": 1})
    monkeypatch.setattr(scenarios, "stop_recorders", lambda recorders: pd.DataFrame())
    monkeypatch.setattr(scenarios, "repetition_rows", lambda **kw: [])
    monkeypatch.setattr(scenarios, "experiment_table", lambda rows, frames, log, keys: pd.DataFrame([keys]))

    def fail_once(testbed: Any, chain: Any, recorders: Any, rep: int, after_s: float, *args: Any) -> tuple[float, str]:
        calls.append(f"fault {rep} after {after_s:g}")
        return float(rep), "leaf-2"

    monkeypatch.setattr(scenarios, "pod_failure_once", fail_once)


@pytest.mark.parametrize("fresh_pod", [True, False])
def test_a_fresh_pod_before_every_repetition_only_when_asked(monkeypatch: pytest.MonkeyPatch, fresh_pod: bool) -> None:
    calls: list[str] = []
    _fake_bed(monkeypatch, calls)
    scenarios.measure_pod_failure(object(), object(), repetitions=3, after_s=60.0, settle_s=0.0, timers=THESIS,
                                  fresh_pod=fresh_pod)
    replace = ["replace pdc-low"] if fresh_pod else []
    assert calls == ["deploy Timers", "fault 1 after 60", "logs 1", *replace, "fault 2 after 60", "logs 2",
                     *replace, "fault 3 after 60", "logs 3"]


def test_an_unrecovered_repetition_is_recorded_and_ends_only_its_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _fake_bed(monkeypatch, calls)
    recorded: list[dict[str, Any]] = []
    monkeypatch.setattr(scenarios, "repetition_rows", lambda **kw: recorded.append(kw) or [])

    def fail_twice(testbed: Any, chain: Any, recorders: Any, rep: int, after_s: float, *args: Any) -> tuple:
        calls.append(f"fault {rep}")
        if rep == 2:
            raise scenarios.Unrecovered(2.0, "leaf-2", "repetition 2: not back within 420 s; what was seen")
        return float(rep), "leaf-2"

    monkeypatch.setattr(scenarios, "pod_failure_once", fail_twice)
    params = pod_failure.Parameters(repetitions={"thesis": 3, "fast": 1}, settle_s=0.0)
    pod_failure.measure(object(), object(), params)  # type: ignore[arg-type]
    assert [c for c in calls if c.startswith(("deploy", "fault"))] == [
        "deploy Timers", "fault 1", "fault 2", "deploy FastTimers", "fault 1"]   # thesis' 3rd skipped, fast runs
    assert [r["rep"] for r in recorded] == [1, 2, 1]
    assert recorded[1]["failure"].startswith("repetition 2: not back") and recorded[1]["t_fault"] == 2.0


def test_pod_failure_runs_each_profile_then_each_sweep_point(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _fake_bed(monkeypatch, calls)
    params = pod_failure.Parameters(repetitions={"thesis": 2, "fast": 1}, after_s=60.0, fresh_after_s=10.0,
                                    sweep={"readiness_period_s": (1, 10)}, sweep_repetitions=1, settle_s=0.0)
    tables = pod_failure.measure(object(), object(), params)  # type: ignore[arg-type]
    assert calls == ["deploy Timers", "fault 1 after 60", "logs 1", "fault 2 after 60", "logs 2",  # one pod
                     "deploy FastTimers", "fault 1 after 10", "logs 1",                            # fresh pods
                     "deploy Timers", "fault 1 after 10", "logs 1",                                # sweep: base
                     "deploy Timers", "fault 1 after 10", "logs 1"]                                # readiness 1 s
    assert list(tables["pod_failure"]["profile"]) == ["thesis", "fast", "sweep", "sweep"]
    assert list(tables["pod_failure"]["sweep_parameter"].fillna("")) == ["", "", "base", "readiness_period_s"]
    timers = tables["pod_failure_timers"].query("setting == 'readiness_period_s'")
    assert list(timers["value"]) == [10, FAST.readiness_period_s, 10, 1]  # thesis, fast, sweep base, sweep point
    assert list(timers["source"])[:2] == ["software default", "kit"]


def test_the_sweep_refuses_points_the_kubelets_back_off_would_delay() -> None:
    # fresh_after_s 5 s with the fast liveness (2 s x 3): failures >= 9 s apart; the 3rd restart waits 10 s
    with pytest.raises(ValueError, match="back-off from failure 3"):
        pod_failure.Parameters(sweep={"readiness_period_s": (1,)}, fresh_after_s=5.0, sweep_repetitions=3)
    pod_failure.Parameters(sweep={"readiness_period_s": (1,)}, fresh_after_s=15.0, sweep_repetitions=3)


def test_the_sweep_base_moves_every_point_and_a_reconnect_point_is_a_fixed_interval() -> None:
    params = pod_failure.Parameters(sweep_base={"pdc_start_delay_s": 5.0},
                                    sweep={"pdc_start_delay_s": (0.0, 5.0), "pdc_reconnect_s": (0.1,)})
    points = [(s, v, t.pdc_start_delay_s, t.pdc_reconnect_s, t.pdc_reconnect_max_s) for s, v, t in params.sweep_points()]
    assert points == [("base", None, 5.0, 1.5, 1.5), ("pdc_start_delay_s", 0.0, 0.0, 1.5, 1.5),   # 5.0 is the base
                      ("pdc_reconnect_s", 0.1, 5.0, 0.1, 0.1)]
    assert params.sweep_points()[0][2].liveness_period_s == FAST.liveness_period_s   # the fast liveness probe


@pytest.mark.parametrize("bad, words", [({"sweep": {"readiness_probe": (0,)}}, "cannot sweep"),
                                        ({"sweep_base": {"profiles": 1}}, "cannot sweep"),
                                        ({"sweep": {"readiness_period_s": ()}}, "lists no value"),
                                        ({"repetitions": {"thesis": 2}}, "no count for profile"),
                                        ({"profiles": ("fast", "fast")}, "named twice"),
                                        ({"fast": {"pdc_reconnect_s": 2.0}}, "shorter than")])
def test_parameters_name_what_is_wrong(bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        pod_failure.Parameters.model_validate(bad)


def test_a_partial_profile_override_keeps_that_profiles_other_settings() -> None:
    params = pod_failure.Parameters.model_validate({"fast": {"readiness_period_s": 2}})
    assert params.fast.readiness_period_s == 2 and params.fast.pdc_reconnect_s == FAST.pdc_reconnect_s
    assert params.thesis == THESIS


@pytest.mark.parametrize("with_db", [True, False])
def test_cluster_failures_wait_for_a_complete_db_domain_before_the_next(monkeypatch: pytest.MonkeyPatch,
                                                                       with_db: bool) -> None:
    calls: list[str] = []
    _fake_bed(monkeypatch, calls)
    monkeypatch.setattr(scenarios, "wait_databases", lambda testbed, chain: calls.append("db complete"))

    def cut_once(testbed: Any, chain: Any, recorders: Any, rep: int, *args: Any) -> tuple:
        calls.append(f"cut {rep}")
        return float(rep), "leaf-2", pd.DataFrame(), pd.DataFrame()

    monkeypatch.setattr(scenarios, "cluster_failure_once", cut_once)
    params = cluster_failure.Parameters(repetitions={"thesis": 3, "fast": 1}, with_db=with_db, settle_s=0.0)
    tables = cluster_failure.measure(object(), object(), params)  # type: ignore[arg-type]
    waits = ["db complete"] if with_db else []
    assert [c for c in calls if not c.startswith("logs")] == [
        "deploy Timers", "cut 1", *waits, "cut 2", *waits, "cut 3", "deploy FastTimers", "cut 1"]
    assert list(tables["cluster_failure"]["profile"]) == ["thesis", "fast"]
