"""labkit.experiments.stream.measure_pod_failure: each repetition fails a pod that never restarted."""

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
