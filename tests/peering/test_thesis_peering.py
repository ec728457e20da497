"""The thesis env (envs/thesis.yaml) peered with Liqo v0.10.2 as labkit.topology plans it, on real clusters.

Five single-VM clusters (root + 4 leaves): ``liqoctl install`` on each, ``liqoctl peer
out-of-band`` for each of the plan's 10 (consumer, provider) pairs, one tunnel per pair, and
the namespace ``test`` offloaded to the leaves; a pod placed by affinity lands on leaf-3. The
timing targets (peering <= 120 s, idle PSS) are measured by ``benchmarks/bench_peering.py``.
"""

from __future__ import annotations

import pytest
from peering_helpers import require_liqo
from embedded_helpers import node_affinity, pause_deployment, running_pods, wait_for
from kubernetes import client

from labkit import config
from labkit.topology import planner

pytestmark = pytest.mark.embedded


def test_thesis_env_peers_with_liqoctl() -> None:
    """``up(env)`` peers the plan's 10 pairs and offloads ``test``; a pod placed by affinity lands on leaf-3."""
    require_liqo()
    from labkit.testbed.embedded import EmbeddedTestbed
    from labkit.testbed.embedded.liqo.peering import vk_memory
    env = config.load_env("thesis")
    plan = planner.plan(env)
    pairs = {(v.consumer, v.provider) for v in plan.virtual_nodes}
    tb = EmbeddedTestbed()
    tb.up(env)
    try:
        print(f"timings {tb.timings}; installs {tb.liqo.installed}")
        assert tb.liqo.kind == "liqo" and set(tb.liqo.peerings) == pairs and len(tb.liqo.tunnels) == 10
        for consumer, provider in pairs:
            node = client.CoreV1Api(tb.kube(consumer)).read_node(f"liqo-{provider}")
            assert node.metadata.labels["topology.labkit.io/cluster"] == provider
        manifest = pause_deployment("pmu", "labkit.local/pause:1", node_affinity("topology.labkit.io/cluster", ["leaf-3"]))
        client.AppsV1Api(tb.kube("root")).create_namespaced_deployment("test", manifest)  # offloaded by up()
        pod = wait_for(lambda: running_pods(client.CoreV1Api(tb.kube("root")), "app=pmu", "test"), 120,
                       "pmu Running")[0]
        assert pod.spec.node_name == "liqo-leaf-3"  # Liqo's webhook added the virtual node's toleration
        assert running_pods(client.CoreV1Api(tb.kube("leaf-3")), "app=pmu", "test")  # EnforceSameName
        rss = vk_memory()
        print(f"virtual kubelets RSS MiB: {rss}")
        assert sorted(p for p, _ in rss) == sorted(p for _, p in pairs)
    finally:
        tb.down()
