"""labkit.experiments.latency: the thesis' table arithmetic and comparison, on synthetic rows."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

from labkit.config import load_env
from labkit.experiments import latency
from labkit.measure.base import CollectorError
from labkit.testbed.base import CommandResult, PingResult

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
def test_ping_leaves_pings_from_every_leaf_at_once_only_when_concurrent(concurrent: bool) -> None:
    barrier = threading.Barrier(3)
    legs = {f"leaf-{i}": [("vm-to-vm", _BarrierHost(f"vm-{i}", barrier), "10.0.0.1")] for i in range(3)}
    if not concurrent:
        with pytest.raises(CollectorError, match="ping failed"):
            latency.ping_leaves(legs, count=2, interval=0.2, concurrent=False, run_id="r", scenario="s")
        return
    rows = latency.ping_leaves(legs, count=2, interval=0.2, concurrent=True, run_id="r", scenario="s")
    rtt = rows[rows["metric"] == "rtt"]
    assert sorted(rtt["leaf"].unique()) == ["leaf-0", "leaf-1", "leaf-2"]
    assert len(rtt) == 6 and rtt["concurrent"].all() and not rtt["interleaved"].any()


class _TimedHost:
    """A ping source that records when each ping started and ended, and takes ``count * interval`` seconds."""

    def __init__(self, name: str, log: list[tuple[str, float, float]]) -> None:
        self.name, self.log = name, log

    def ping(self, target: str, count: int, interval: float, timeout: float) -> PingResult:
        start = time.monotonic()
        time.sleep(count * interval)
        self.log.append((self.name, start, time.monotonic()))
        return PingResult(target=target, sent=count, received=count, rtt_ms=(0.2,) * count)


def test_ping_leaves_interleaves_a_leafs_legs_half_an_interval_apart_and_the_leaves_in_turn() -> None:
    log: list[tuple[str, float, float]] = []
    legs = {leaf: [("vm-to-vm", _TimedHost(f"{leaf}-vm", log), "10.0.0.1"),
                   ("pod-peered", _TimedHost(f"{leaf}-pod", log), "10.64.0.5")] for leaf in ("leaf-1", "leaf-2")}
    rows = latency.ping_leaves(legs, count=2, interval=0.4, run_id="r", scenario="s")
    times = {name: (start, end) for name, start, end in log}
    offset = times["leaf-1-pod"][0] - times["leaf-1-vm"][0]
    assert offset >= 0.2 - 0.01 and times["leaf-1-pod"][0] < times["leaf-1-vm"][1]  # half an interval later, together
    assert times["leaf-2-vm"][0] >= max(times["leaf-1-vm"][1], times["leaf-1-pod"][1])  # leaf by leaf
    assert rows["interleaved"].all() and set(rows["step"]) == {"vm-to-vm", "pod-peered"}
    assert latency.protocol(rows[rows["leaf"] == "leaf-1"]) == ("2 probes 0.4 s apart, leaf by leaf, beside the other "
                                                               "table's, half an interval apart (faster than the "
                                                               "thesis' protocol)")


def test_the_thesis_protocol_takes_two_tables_time_with_interleaving() -> None:
    thesis = latency.Parameters()
    assert (thesis.count, thesis.interval, thesis.concurrent, thesis.interleave) == (1000, 1.0, False, True)
    assert latency.duration_s(thesis) == 2 * 3 * 1000  # 100 min: Table 7.3, then Tables 7.2 and 7.4 together
    assert latency.duration_s(thesis.model_copy(update={"interleave": False})) == 3 * 3 * 1000
    assert latency.duration_s(latency.Parameters(count=100, interval=0.05, concurrent=True)) == 2 * 5.0
    rows = pd.DataFrame({"step": "vm-to-vm", "count": 1000, "interval_s": 1.0, "concurrent": False,
                         "interleaved": False}, index=[0])
    assert latency.protocol(rows).endswith("(the thesis' protocol)")


class _LinkHost:
    """A host whose ``ip -j -s -d link show flannel.1`` prints ``device`` (or fails without one)."""

    def __init__(self, device: dict | None) -> None:
        self.device = device

    def run(self, argv: list[str], timeout: float = 60.0) -> CommandResult:
        if self.device is None:
            return CommandResult(tuple(argv), 1, "", 'Device "flannel.1" does not exist.')
        return CommandResult(tuple(argv), 0, json.dumps([self.device]), "")


def _flannel(tx: int) -> dict:
    return {"ifname": "flannel.1", "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 1, "port": 8472}},
            "stats64": {"tx": {"packets": tx}}}


def test_the_pod_network_is_named_by_what_carried_the_probes() -> None:
    before, after = latency.vxlan_device(_LinkHost(_flannel(100))), latency.vxlan_device(_LinkHost(_flannel(1150)))
    assert before == ("vxlan id 1 port 8472", 100)
    assert latency.pod_network(before, after, 1000) == "flannel VXLAN (flannel.1, vxlan id 1 port 8472)"
    assert latency.pod_network(before, before, 1000).startswith("not through flannel.1")  # the counter did not move
    assert latency.vxlan_device(_LinkHost(None)) is None
    assert latency.pod_network(None, None, 1000) == "routed, no encapsulation (no flannel.1)"


def _protocol_rows(count: int = 1000, interval: float = 1.0, concurrent: bool = False, rtt: float = 0.1,
                   steps: dict[str, float] | None = None, path_73: str = "flannel VXLAN (flannel.1, vxlan id 1 port 8472)",
                   loss: float = 0.0) -> pd.DataFrame:
    """Latency rows of three leaves under a protocol; ``steps``: the mean RTT of each step (ms)."""
    rng = np.random.default_rng(3)
    steps = steps or {"vm-to-vm": 0.10, "pod-same-cluster": 0.13, "pod-peered": 0.9}
    rows = []
    for step, base in steps.items():
        for leaf in ("leaf-1", "leaf-2", "leaf-3"):
            labels = {"step": step, "leaf": leaf, "count": count, "interval_s": interval, "concurrent": concurrent,
                      "interleaved": step != "pod-same-cluster",
                      "path": path_73 if step == "pod-same-cluster" else "Liqo v0.10.2" if step == "pod-peered" else None}
            rows += [{**labels, "metric": "rtt", "value": float(v)} for v in base + rng.normal(0, 0.01, 50)]
            rows.append({**labels, "metric": "loss", "value": loss})
    return pd.DataFrame(rows)


def _verdicts(rows: pd.DataFrame) -> dict[str, str]:
    return {c.name.split(":")[0]: c.verdict for c in latency.fidelity({"latency": rows})}


def test_latency_fidelity_passes_the_thesis_protocol_in_its_bands() -> None:
    verdicts = _verdicts(_protocol_rows())
    assert verdicts.pop("protocol") == "fail"  # 50 probes per leaf, not ~1000
    assert set(verdicts.values()) == {"pass"}, verdicts
    assert len(latency.fidelity({"latency": _protocol_rows()})) == 7


def test_latency_fidelity_fails_outside_every_band() -> None:
    assert _verdicts(_protocol_rows(interval=0.05, concurrent=True))["protocol"] == "fail"
    slow = _verdicts(_protocol_rows(steps={"vm-to-vm": 0.8, "pod-same-cluster": 0.85, "pod-peered": 1.2}))
    assert slow["Table 7.2"] == "fail"  # above the thesis' VMs on a real network
    inverted = _verdicts(_protocol_rows(steps={"vm-to-vm": 0.2, "pod-same-cluster": 0.1, "pod-peered": 0.9}))
    assert inverted["Table 7.3 - 7.2"] == "fail"  # the pod path cannot be faster than the VMs'
    heavy = _verdicts(_protocol_rows(steps={"vm-to-vm": 0.1, "pod-same-cluster": 0.13, "pod-peered": 2.0}))
    assert heavy["Table 7.5"] == "fail"
    routed = _verdicts(_protocol_rows(path_73="routed, no encapsulation (no flannel.1)"))
    assert routed["Table 7.3"] == "fail"
    assert _verdicts(_protocol_rows(loss=0.05))["probes lost, the worst leaf and step"] == "fail"
    overlap = _protocol_rows(interval=0.001)  # probes 0.5 ms apart: a 0.9 ms RTT overlaps the other table's
    assert _verdicts(overlap)["Tables 7.2 and 7.4 interleaved"] == "fail"


def test_latency_fidelity_without_the_peered_bed_is_not_measured_not_passed() -> None:
    rows = _protocol_rows(steps={"vm-to-vm": 0.1, "pod-same-cluster": 0.13})
    checks = {c.name.split(":")[0]: c for c in latency.fidelity({"latency": rows})}
    assert checks["Table 7.5"].verdict == "not measured" and checks["Table 7.3 - 7.2"].verdict == "pass"


def test_latency_methods_name_the_protocol_the_pod_network_and_the_peering() -> None:
    method = latency.methods({"latency": _protocol_rows(count=1000)})[0]
    assert "1000 probes 1 s apart, leaf by leaf" in method.ours and "flannel VXLAN" in method.ours
    assert "Liqo v0.10.2" in method.ours and "userspace WireGuard" in method.implementation
    routed = latency.methods({"latency": _protocol_rows(path_73="routed, no encapsulation (no flannel.1)")})[0]
    assert "not flannel's VXLAN" in routed.implementation
