"""labkit.experiments.latency: the thesis' table arithmetic and comparison, on synthetic rows."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from labkit.config import load_env
from labkit.experiments import latency
from labkit.measure.base import CollectorError
from labkit.testbed.base import PingResult

pytestmark = pytest.mark.unit


def _rows(step: str, leaf_samples: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"step": step, "leaf": leaf, "metric": "rtt", "value": v}
                         for leaf, values in leaf_samples.items() for v in values])


def test_single_cluster_keeps_the_vms_as_nodes_of_one_cluster() -> None:
    env = latency.single_cluster(load_env("thesis"), leaves=3)
    assert [c.name for c in env.clusters] == ["single"]
    assert [n.name for n in env.clusters[0].nodes] == ["root", "leaf-1", "leaf-2", "leaf-3"]
    assert env.tuning == load_env("thesis").tuning
    assert latency.leaf_names(env, 2) == ["leaf-1", "leaf-2"]


def test_table_means_pooled_std_and_avg_row() -> None:
    rows = _rows("vm-to-vm", {"leaf-1": [1.0, 3.0], "leaf-2": [2.0, 2.0, 2.0]})
    summary = latency.table(rows).set_index("leaf")
    assert summary.loc["leaf-1", "mean"] == 2.0 and summary.loc["leaf-1", "std"] == pytest.approx(np.sqrt(2))
    assert summary.loc["avg", "mean"] == 2.0 and summary.loc["avg", "n"] == 5
    assert summary.loc["avg", "std"] == pytest.approx(1.0)  # sqrt((2 + 0) / 2)


def test_compare_maps_steps_to_thesis_tables_and_derives_the_liqo_overhead() -> None:
    rows = pd.concat([_rows("pod-same-cluster", {"leaf-1": [0.8, 1.0], "leaf-4": [5.0, 5.0]}),
                      _rows("pod-peered", {"leaf-1": [1.2, 1.6]})])
    table = latency.compare({"latency": rows}).set_index("key")
    assert "latency_ms.table_7_3_same_cluster.leaf-1" in table.index
    assert "latency_ms.table_7_3_same_cluster.leaf-4" not in table.index  # the thesis had three leaves
    overhead = table.loc["latency_ms.table_7_5_liqo_overhead"]
    assert overhead["labkit_mean"] == pytest.approx(1.4 - 2.95) and overhead["thesis_mean"] == 0.458


class _BarrierHost:
    """A ping source that only answers once ``parties`` sources ping at the same time."""

    def __init__(self, name: str, barrier: threading.Barrier) -> None:
        self.name, self.barrier = name, barrier

    def ping(self, target: str, count: int, interval: float, timeout: float) -> PingResult:
        self.barrier.wait(timeout=2.0)  # BrokenBarrierError unless every source pings at once
        return PingResult(target=target, sent=count, received=count, rtt_ms=(0.5,) * count)


@pytest.mark.parametrize("concurrent", [True, False])
def test_ping_each_pings_from_every_leaf_at_once_only_when_concurrent(concurrent: bool) -> None:
    barrier = threading.Barrier(3)
    sources = [(_BarrierHost(f"vm-{i}", barrier), f"leaf-{i}") for i in range(3)]
    if not concurrent:
        with pytest.raises(CollectorError, match="ping failed"):
            latency.ping_each(sources, "10.0.0.1", step="vm-to-vm", count=2, interval=0.2, concurrent=False,
                              run_id="r", scenario="s")
        return
    rows = latency.ping_each(sources, "10.0.0.1", step="vm-to-vm", count=2, interval=0.2, concurrent=True,
                              run_id="r", scenario="s")
    rtt = rows[rows["metric"] == "rtt"]
    assert sorted(rtt["leaf"].unique()) == ["leaf-0", "leaf-1", "leaf-2"]
    assert len(rtt) == 6
