"""Figs. 7.3 and 7.4's fidelity checks, on synthetic runs: each one passes on the run it describes and fails
on one that breaks it (a check that cannot fail is not a check)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from stream_helpers import HIGH_S, PHASE_S, downtime_rows, timers_rows

from labkit.experiments import cluster_failure, pod_failure
from labkit.experiments.stream import concat
from labkit.fidelity import Check

pytestmark = pytest.mark.unit

#: Phases that add up to about the thesis' 16.41 s at the high PDC (a PDC that starts as slowly as openPDC).
SLOW_START = {**PHASE_S, "restart": 6.0, "startup": 3.0}


def _pod(thesis: dict[str, Any] | None = None, fast: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """A pod-failure run: the thesis profile on one pod, the fast profile on fresh pods (7 and 3 failures)."""
    thesis_rows = downtime_rows("pod-failure", False, reps=7, profiles=("thesis",), labels={"protocol": "one pod"},
                                **{"extra_restart": {}, **(thesis or {})})
    fast_rows = downtime_rows("pod-failure", False, reps=3, profiles=("fast",), labels={"protocol": "fresh pods"},
                              **{"extra_restart": {}, **(fast or {})})
    return {"pod_failure": concat([thesis_rows, fast_rows]), "pod_failure_timers": timers_rows()}


def _checks(tables: dict[str, pd.DataFrame], module: Any = pod_failure) -> dict[str, Check]:
    return {c.name: c for c in module.fidelity(tables)}


def test_a_run_faster_than_the_thesis_fails_the_band_and_names_the_missing_phase() -> None:
    checks = _checks(_pod())
    band = checks["thesis profile: median downtime at the high PDC"]
    assert band.verdict == "fail" and band.observed == pytest.approx(4.8, abs=0.05)
    assert band.expected == "12.31–20.51 s" and band.n == 7
    named = checks["thesis profile: Fig. 7.3 reproduced, or the missing phase named"]
    assert named.verdict == "pass" and "openPDC" in named.reason and "11.61" in named.reason   # 16.41 - 4.8
    for name in ("thesis profile: readiness phase, median", "thesis profile: the high PDC's reconnect, median",
                 "thesis profile: every phase observed", "fast profile: every phase observed"):
        assert checks[name].verdict == "pass", checks[name]


def test_a_run_as_slow_as_the_thesis_passes_the_band() -> None:
    checks = _checks(_pod(thesis={"phases": SLOW_START}))
    assert checks["thesis profile: median downtime at the high PDC"].verdict == "pass"
    assert checks["thesis profile: Fig. 7.3 reproduced, or the missing phase named"].verdict == "pass"


def test_a_timer_phase_beyond_its_default_fails_and_the_gap_is_no_longer_explained() -> None:
    slow_ready = {**PHASE_S, "readiness": 12.5}          # > the 10 s period + 2 s of propagation
    checks = _checks(_pod(thesis={"phases": slow_ready}))
    assert checks["thesis profile: readiness phase, median"].verdict == "fail"
    checks = _checks(_pod(thesis={"high": {**HIGH_S, "high reconnect": 4.0}}))   # > 1.5 s + 2 s
    assert checks["thesis profile: the high PDC's reconnect, median"].verdict == "fail"
    assert checks["thesis profile: median downtime at the high PDC"].verdict == "fail"        # 7.8 s: below
    assert checks["thesis profile: Fig. 7.3 reproduced, or the missing phase named"].verdict == "fail"


def test_a_missing_milestone_fails_its_check_and_names_it() -> None:
    checks = _checks(_pod(thesis={"unobserved": 3}))
    observed = checks["thesis profile: every phase observed"]
    assert observed.verdict == "fail" and "readiness" in observed.reason and "termination" in observed.reason
    assert checks["thesis profile: Fig. 7.3 reproduced, or the missing phase named"].verdict == "fail"


def test_the_backoff_check_follows_the_kubelets_rule() -> None:
    # failures 60 s apart on one pod: the kubelet delays none of 7 restarts (10, 20, 40 s back-off < 60 s; 80 > 60)
    checks = _checks(_pod(thesis={"extra_restart": {7: 80.0}}))
    assert checks["thesis profile: the kubelet's back-off where its rule puts it (one pod)"].verdict == "fail"
    checks = _checks(_pod(thesis={"extra_restart": {6: 40.0}}))   # the 6th: 80 s of back-off > 60 s apart
    backoff = checks["thesis profile: the kubelet's back-off where its rule puts it (one pod)"]
    assert backoff.expected == "delayed restarts: [6, 7]" and backoff.verdict == "fail"   # the 7th was not delayed
    checks = _checks(_pod(thesis={"extra_restart": {6: 40.0, 7: 120.0}}))
    assert checks["thesis profile: the kubelet's back-off where its rule puts it (one pod)"].verdict == "pass"
    fresh = _checks(_pod(fast={"extra_restart": {2: 10.0}}))  # a fresh pod is never delayed
    assert fresh["fast profile: the kubelet's back-off where its rule puts it (fresh pods)"].verdict == "fail"


def test_the_fast_profile_meets_its_target_only_when_10x_below_the_thesis() -> None:
    quick = {**PHASE_S, "restart": 0.4, "startup": 0.1, "readiness": 0.3, "first frame": 0.1}   # 1.5 s at the high PDC
    checks = _checks(_pod(fast={"phases": quick, "high": {"high reconnect": 0.2, "first frame": 0.1}}))
    target = checks["fast profile: median downtime at the high PDC"]
    assert target.verdict == "pass" and target.expected == "≤ 1.641 s"
    assert _checks(_pod())["fast profile: median downtime at the high PDC"].verdict == "fail"


def test_pod_failure_methods_count_each_profiles_failures() -> None:
    (method,) = pod_failure.methods(_pod())
    assert method.figure == "Fig. 7.3" and "7 failures of one pod" in method.ours and "3 failures" in method.ours
    assert "openPDC" in method.implementation


def _cluster(**knobs: Any) -> dict[str, pd.DataFrame]:
    rows = downtime_rows("cluster-failure", True, reps=3, profiles=("thesis", "fast"), **knobs)
    return {"cluster_failure": rows, "cluster_failure_timers": timers_rows()}


def test_cluster_failure_terms_pass_in_their_windows_and_the_total_against_the_composition() -> None:
    checks = _checks(_cluster(), cluster_failure)
    for profile in ("thesis", "fast"):
        assert checks[f"{profile} profile: NotReady term, median"].verdict == "pass"
        assert checks[f"{profile} profile: eviction term, median"].verdict == "pass"
        assert checks[f"{profile} profile: every phase observed"].verdict == "pass"
    total = checks["thesis profile: median downtime at the high PDC"]
    assert total.verdict == "fail" and "composed" in total.thesis   # 9.5 + 5 + 5.8 s, short of 23.37 s
    slow = _checks(_cluster(phases=SLOW_START), cluster_failure)
    assert slow["thesis profile: median downtime at the high PDC"].verdict == "pass"


def test_a_notready_outside_liqos_window_fails() -> None:
    checks = _checks(_cluster(not_ready=12.3), cluster_failure)   # the kit's own look-alike check: 9.8-11.8 s + 1 s
    assert checks["thesis profile: NotReady term, median"].verdict == "fail"
    assert checks["thesis profile: NotReady term, median"].thesis == "9.75 s (Fig. 7.2)"
