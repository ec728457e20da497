"""Issue #23's target, on whatever host runs it: the thesis env comes up, peers, survives a pod
fault and a cluster fault, and tears down leaving nothing.

envs/thesis.yaml as labkit.topology plans it (five single-VM clusters, every planned peering);
a pause pod offloaded to ``leaf-3`` by node affinity; the pod fault deletes it with no grace
period (its Deployment in ``root`` makes a new one, again on ``liqo-leaf-3``); the cluster fault
takes every lab link of ``leaf-3`` down (its virtual node in ``root`` goes NotReady) and back up
(Ready again). No timing bound is asserted (the measurements of those reactions are the
experiments'); the times are printed, and the bring-up line is what the hosts tier records.
Run in the hosts tier's guest (a systemd cgroup v2 host) and in the embedded tier.
"""

from __future__ import annotations

import time

import pytest
from embedded_helpers import host_private_dirs, node_affinity, pause_deployment, require_embedded, running_pods, wait_for
from kubernetes import client

from labkit import config
from labkit.topology import planner

pytestmark = pytest.mark.embedded

LEAF = "leaf-3"
NODE = f"liqo-{LEAF}"


def _ready(core: client.CoreV1Api, node: str) -> str:
    conditions = core.read_node(node).status.conditions or []
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")


def test_thesis_env_up_peer_pod_fault_cluster_fault_and_down_leaves_nothing() -> None:
    require_embedded()
    from labkit.testbed.embedded import EmbeddedTestbed, leftovers
    from labkit.testbed.embedded.liqo import build, pod_constraints

    if not build.vk_cached():
        pytest.skip(f"virtual kubelet not built in {build.vk_dir()}: run `invoke setup`")
    env = config.load_env("thesis")
    plan = planner.plan(env)
    before = host_private_dirs()
    tb = EmbeddedTestbed()
    times: dict[str, float] = {}
    try:
        start = time.monotonic()
        tb.up(env)
        times["up"] = time.monotonic() - start
        print(f"thesis env: Ready in {times['up']:.1f} s (nodes {tb.timings.get('ready_s', float('nan')):.1f} s, "
              f"peerings {tb.timings.get('peering_s', float('nan')):.1f} s)")
        assert tb.liqo is not None
        assert set(tb.liqo.peerings) == {(v.consumer, v.provider) for v in plan.virtual_nodes}
        root = client.CoreV1Api(tb.kube("root"))

        manifest = pause_deployment("pmu", "labkit.local/pause:1", node_affinity("topology.labkit.io/cluster", [LEAF]))
        manifest["spec"]["template"]["spec"]["tolerations"] = pod_constraints("Remote")["tolerations"]
        client.AppsV1Api(tb.kube("root")).create_namespaced_deployment("test", manifest)  # offloaded by up()
        mark = time.monotonic()
        first = wait_for(lambda: running_pods(root, "app=pmu", "test"), 90, "the offloaded pod Running")[0]
        times["pod_running"] = time.monotonic() - mark
        assert first.spec.node_name == NODE

        # pod fault: the pod is deleted at once; its Deployment makes another, again in leaf-3
        mark = time.monotonic()
        root.delete_namespaced_pod(first.metadata.name, "test", grace_period_seconds=0)
        second = wait_for(lambda: [p for p in running_pods(root, "app=pmu", "test")
                                   if p.metadata.name != first.metadata.name], 120, "a new pmu pod Running")[0]
        times["pod_fault_recovered"] = time.monotonic() - mark
        assert second.spec.node_name == NODE

        # cluster fault: leaf-3 loses its lab links; its virtual node in root goes NotReady, then Ready again
        vms = [vm.name for vm in next(c for c in env.clusters if c.name == LEAF).nodes]
        mark = time.monotonic()
        for name in vms:
            tb.host(name).iface_down()
        try:
            wait_for(lambda: _ready(root, NODE) != "True", 120, f"{NODE} NotReady", interval=0.2)
            times["cluster_fault_not_ready"] = time.monotonic() - mark
        finally:
            for name in vms:
                tb.host(name).iface_up()
        mark = time.monotonic()
        wait_for(lambda: _ready(root, NODE) == "True", 180, f"{NODE} Ready again")
        times["cluster_fault_ready_again"] = time.monotonic() - mark
    finally:
        mark = time.monotonic()
        tb.down()
        times["down"] = time.monotonic() - mark
        print("thesis env scenario (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    rest = leftovers()
    assert rest.empty(), rest
    assert host_private_dirs() == before
