"""labkit.experiments.stream: what each repetition of the pod and cluster failures starts from."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from labkit.experiments.stream import scenarios

pytestmark = pytest.mark.unit


def test_a_fresh_pod_before_every_repetition_but_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    chain = type("Chain", (), {"low": "pdc-low"})()
    monkeypatch.setattr(scenarios, "chain_of", lambda env: chain)
    monkeypatch.setattr(scenarios, "record_chain", lambda testbed, chain, with_db: {"low": None, "high": None})
    monkeypatch.setattr(scenarios, "replace_pod", lambda testbed, chain, recorders, name, timeout:
                        calls.append(f"replace {name}"))

    def fail_once(testbed: Any, chain: Any, recorders: Any, rep: int, *args: Any) -> tuple[float, str]:
        calls.append(f"fault {rep}")
        return float(rep), "leaf-2"

    monkeypatch.setattr(scenarios, "pod_failure_once", fail_once)
    monkeypatch.setattr(scenarios, "restart_logs", lambda testbed, chain, cluster, t: calls.append(f"logs {t:.0f}"))
    monkeypatch.setattr(scenarios, "stop_recorders", lambda recorders: pd.DataFrame())
    monkeypatch.setattr(scenarios, "repetition_rows", lambda **kw: [])
    monkeypatch.setattr(scenarios, "experiment_table", lambda rows, frames, log, keys: pd.DataFrame())
    scenarios.measure_pod_failure(object(), object(), repetitions=3, after_s=60.0, settle_s=0.0)
    assert calls == ["fault 1", "logs 1", "replace pdc-low", "fault 2", "logs 2", "replace pdc-low", "fault 3", "logs 3"]


@pytest.mark.parametrize("with_db", [True, False])
def test_cluster_failures_wait_for_a_complete_db_domain_before_the_next(monkeypatch: pytest.MonkeyPatch,
                                                                       with_db: bool) -> None:
    calls: list[str] = []
    monkeypatch.setattr(scenarios, "chain_of", lambda env: object())
    monkeypatch.setattr(scenarios, "record_chain", lambda testbed, chain, with_db: {})
    monkeypatch.setattr(scenarios, "wait_databases", lambda testbed, chain: calls.append("db complete"))

    def cut_once(testbed: Any, chain: Any, recorders: Any, rep: int, *args: Any) -> tuple:
        calls.append(f"cut {rep}")
        return float(rep), "leaf-2", pd.DataFrame(), pd.DataFrame()

    monkeypatch.setattr(scenarios, "cluster_failure_once", cut_once)
    monkeypatch.setattr(scenarios, "restart_logs", lambda *args: None)
    monkeypatch.setattr(scenarios, "stop_recorders", lambda recorders: pd.DataFrame())
    monkeypatch.setattr(scenarios, "repetition_rows", lambda **kw: [])
    monkeypatch.setattr(scenarios, "experiment_table", lambda rows, frames, log, keys: pd.DataFrame())
    scenarios.measure_cluster_failure(object(), object(), repetitions=3, with_db=with_db, settle_s=0.0)
    waits = ["db complete"] if with_db else []
    assert calls == ["cut 1", *waits, "cut 2", *waits, "cut 3"]
