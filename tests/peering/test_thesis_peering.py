"""The thesis env (envs/thesis.yaml) peered as labkit.topology plans it, on real clusters.

Five single-VM clusters (root + 4 leaves), one virtual kubelet per planned peering, one
WireGuard tunnel per pair of clusters; the target is every virtual node Ready within 60 s of
the clusters being up, and each virtual kubelet idling under 50 MB RSS.
"""

from __future__ import annotations

import time

import pytest
from peering_helpers import require_peering
from embedded_helpers import node_affinity, pause_deployment, running_pods, wait_for
from kubernetes import client

from labkit import config
from labkit.topology import planner

pytestmark = pytest.mark.embedded


def test_thesis_env_peers_within_60_s() -> None:
    """``up(env)`` peers the plan's 10 pairs and offloads ``test``; a pod placed by affinity lands on leaf-3."""
    require_peering()
    from labkit.testbed.embedded import EmbeddedTestbed
    from labkit.testbed.embedded.liqo import pod_constraints
    from labkit.testbed.embedded.liqo.peering import vk_memory
    env = config.load_env("thesis")
    plan = planner.plan(env)
    pairs = {(v.consumer, v.provider) for v in plan.virtual_nodes}
    tb = EmbeddedTestbed()
    try:
        tb.up(env)
        took = tb.timings["peering_s"]
        print(f"{len(pairs)} peerings ({len(tb.liqo.tunnels)} tunnels) Ready in {took:.1f} s")
        assert set(tb.liqo.peerings) == pairs and len(tb.liqo.tunnels) == 10
        assert took <= 60
        for consumer, provider in pairs:
            node = client.CoreV1Api(tb.kube(consumer)).read_node(f"liqo-{provider}")
            assert node.metadata.labels["topology.labkit.io/cluster"] == provider
        manifest = pause_deployment("pmu", "labkit.local/pause:1", node_affinity("topology.labkit.io/cluster", ["leaf-3"]))
        manifest["spec"]["template"]["spec"]["tolerations"] = pod_constraints("Remote")["tolerations"]
        client.AppsV1Api(tb.kube("root")).create_namespaced_deployment("test", manifest)  # offloaded by up()
        pod = wait_for(lambda: running_pods(client.CoreV1Api(tb.kube("root")), "app=pmu", "test"), 90, "pmu Running")[0]
        assert pod.spec.node_name == "liqo-leaf-3"
        assert running_pods(client.CoreV1Api(tb.kube("leaf-3")), "app=pmu", "test")  # EnforceSameName
        time.sleep(10)
        rss = [mib for _, mib in vk_memory()]
        print(f"virtual kubelets RSS MB: min {min(rss):.1f} max {max(rss):.1f} ({len(rss)} processes)")
        assert len(rss) == len(pairs) and max(rss) <= 50
    finally:
        tb.down()
