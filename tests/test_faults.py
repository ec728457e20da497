"""labkit.faults on a fake test bed: targets, recovery that always runs, and the log."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from labkit.config import load_env
from labkit.faults import (ClusterDisconnect, FaultError, FaultLog, FaultSpec, Island, LinkDown, LivenessFail, PodKill,
                           choose, inject, injected, nft_drop_script)
from labkit.testbed.base import CommandResult

pytestmark = pytest.mark.unit
ENV = load_env("thesis")


class FakeHost:
    def __init__(self, name: str, address: str, calls: list[tuple[str, str]]) -> None:
        self.name, self.address, self.calls = name, address, calls

    def iface_down(self) -> None:
        self.calls.append((self.name, "down"))

    def iface_up(self) -> None:
        self.calls.append((self.name, "up"))

    def run(self, argv: list[str], timeout: float = 60) -> CommandResult:
        self.calls.append((self.name, " ".join(argv)))
        return CommandResult(tuple(argv), 0, "", "")


class FakeTestbed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        names = [n.name for c in ENV.clusters for n in c.nodes]
        self.hosts = {n: FakeHost(n, f"10.250.0.{i + 1}", self.calls) for i, n in enumerate(names)}

    def host(self, vm: str) -> FakeHost:
        return self.hosts[vm]


def test_cluster_disconnect_and_recover() -> None:
    tb, log = FakeTestbed(), FaultLog()
    spec = FaultSpec(name="cut", action=ClusterDisconnect(cluster="leaf-2"))
    with injected(tb, ENV, spec, log) as fault:
        assert fault.targets == ["leaf-2"] and tb.calls == [("leaf-2", "down")]
    assert tb.calls == [("leaf-2", "down"), ("leaf-2", "up")]
    assert [e.phase for e in log.events] == ["inject", "recover"]
    table = log.table(run_id="r", scenario="s", step="x")
    assert table["value"].tolist() == [1.0, 0.0] and set(table["metric"]) == {"fault"}
    injected_t, recovered_t = (e.t.timestamp() for e in log.events)
    assert log.recovered_after(injected_t) == recovered_t
    assert log.recovered_after(recovered_t + 0.001) is None


def test_recovery_runs_when_the_block_fails() -> None:
    tb, log = FakeTestbed(), FaultLog()
    with pytest.raises(RuntimeError), injected(tb, ENV, FaultSpec(name="island", action=Island()), log):
        raise RuntimeError("measurement crashed")
    assert tb.calls == [("root", "down"), ("root", "up")]
    assert log.injected_at("island") <= log.events[-1].t


def test_link_down_drops_both_directions_and_is_undone() -> None:
    tb, log = FakeTestbed(), FaultLog()
    spec = FaultSpec(name="l", action=LinkDown(cluster="leaf-1", peer="leaf-3"))
    fault = inject(tb, ENV, spec, log)
    scripts = [c for c in tb.calls if "nft -f" in c[1]]
    assert {vm for vm, _ in scripts} == {"leaf-1", "leaf-3"}
    assert any("ip daddr 10.250.0.4 drop" in cmd for vm, cmd in scripts if vm == "leaf-1")  # leaf-3's address
    fault.recover()
    fault.recover()  # idempotent
    assert [c for c in tb.calls if "delete table" in c[1]] == [
        ("leaf-1", "nft delete table inet labkit_faults"), ("leaf-3", "nft delete table inet labkit_faults")]


def test_nft_script_is_one_table_of_the_kit() -> None:
    script = nft_drop_script("10.250.0.9")
    assert script.startswith("table inet labkit_faults {") and script.count("10.250.0.9") == 4


def test_choose_modes() -> None:
    rng = random.Random(1)
    kill = PodKill(cluster="leaf-1", namespace="test", mode="fixed", count=2)
    assert len(choose(["a", "b", "c"], kill, "k", rng)) == 2
    assert choose(["b", "a"], kill.model_copy(update={"mode": "all"}), "k", rng) == ["a", "b"]
    with pytest.raises(FaultError, match="wants 2 targets, the selector matches 1"):
        choose(["a"], kill, "k", rng)
    with pytest.raises(FaultError, match="fault 'k': the selector .*'namespace': 'test'.* matches nothing"):
        choose([], kill, "k", rng)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"action": "cluster-disconnect"}, r"cluster-disconnect.cluster\n  Field required"),
    ({"action": {"kind": "link-down", "cluster": "leaf-1"}}, r"link-down.peer\n  Field required"),
    ({"action": {"kind": "pod-kill", "cluster": "leaf-1"}}, r"pod-kill.namespace\n  Field required"),
    ({"action": {"kind": "pod-liveness-fail", "cluster": "leaf-1", "namespace": "test"}}, "after_s"),
    ({"action": {"kind": "pod-kill", "cluster": "leaf-1", "namespace": "t", "after_s": 1}}, "Extra inputs"),
    ({"action": "reboot"}, "does not match any of the expected tags"),
    ({"action": "island", "duration_s": -1}, "greater than 0"),
])
def test_spec_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FaultSpec(name="f", **kwargs)


def test_unknown_cluster_is_named() -> None:
    spec = FaultSpec(name="f", action=ClusterDisconnect(cluster="leaf-9"))
    with pytest.raises(FaultError, match=r"unknown cluster\(s\) \['leaf-9'\]"):
        inject(FakeTestbed(), ENV, spec, FaultLog())


def test_a_liveness_fault_carries_its_own_after_s() -> None:
    spec = FaultSpec(name="live", action=LivenessFail(cluster="leaf-1", namespace="test", labels={"app": "pdc"},
                                                      after_s=60.0))
    assert spec.action.after_s == 60.0 and spec.action.label_selector() == "app=pdc"
    assert spec.action.clusters() == ["leaf-1"] and Island().clusters() == []
    log = FaultLog()
    log.add(spec, "pdc-0", "inject")
    assert log.table(run_id="r", scenario="s", step="x")["action"].tolist() == ["pod-liveness-fail"]


def test_pod_actions_skip_pods_being_deleted() -> None:
    """A replaced pod lingers while it terminates: a liveness fault must hit its replacement, not it."""
    from types import SimpleNamespace

    from labkit.faults import _running_pods

    def pod(name: str, phase: str, deleting: bool) -> SimpleNamespace:
        return SimpleNamespace(metadata=SimpleNamespace(name=name, deletion_timestamp="now" if deleting else None),
                               status=SimpleNamespace(phase=phase))

    pods = [pod("old", "Running", True), pod("new", "Running", False), pod("next", "Pending", False)]
    core = SimpleNamespace(list_namespaced_pod=lambda ns, label_selector: SimpleNamespace(items=pods))
    assert _running_pods(core, LivenessFail(cluster="leaf-1", namespace="test", after_s=1.0)) == ["new"]
