"""The thesis env (envs/thesis.yaml) peered as labkit.topology plans it, on real clusters.

Five single-VM clusters (root + 4 leaves), one virtual kubelet per planned peering, one
WireGuard tunnel per pair of clusters; the target is every virtual node Ready within 60 s of
the clusters being up, and each virtual kubelet idling under 50 MB RSS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require_peering
from embedded_helpers import node_affinity, pause_deployment, running_pods, wait_for
from kubernetes import client

from labkit import config
from labkit.topology import planner

pytestmark = pytest.mark.embedded


def _vk_rss_mb() -> list[float]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if cmd and cmd[0].endswith(b"/vk") and any(a.startswith(b"--foreign-cluster-id=") for a in cmd):
                status = (proc / "status").read_text()
                out.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024)
        except (OSError, AttributeError):
            continue
    return out


def test_thesis_env_peers_within_60_s() -> None:
    require_peering()
    from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec
    from labkit.testbed.embedded.liqo import Liqo, offload, pod_constraints
    env = config.load_env("thesis")
    plan = planner.plan(env)
    clusters = tuple(ClusterSpec(c.name, tuple(VmSpec(n.name) for n in c.nodes), pod_cidr=str(plan.cidrs[c.name].pod),
                                 service_cidr=str(plan.cidrs[c.name].service)) for c in env.clusters)
    pairs = [(v.consumer, v.provider) for v in plan.virtual_nodes]
    tb = EmbeddedTestbed()
    liqo = None
    try:
        tb.up(EmbeddedEnv(clusters=clusters, dns=False))
        liqo = Liqo(tb, cluster_labels={k: dict(v) for k, v in plan.cluster_labels.items()})
        import time
        start = time.monotonic()
        liqo.peer_all(pairs)
        took = time.monotonic() - start
        print(f"{len(pairs)} peerings ({len(liqo.tunnels)} tunnels) Ready in {took:.1f} s")
        assert took <= 60
        for consumer, provider in pairs:
            node = client.CoreV1Api(tb.kube(consumer)).read_node(f"liqo-{provider}")
            assert node.metadata.labels["topology.labkit.io/cluster"] == provider
        providers = {v.provider: dict(v.labels) for v in plan.virtual_nodes if v.consumer == "root"}
        offload(tb, "root", "pmu", providers)
        manifest = pause_deployment("pmu", "labkit.local/pause:1", node_affinity("topology.labkit.io/cluster", ["leaf-3"]))
        manifest["spec"]["template"]["spec"]["tolerations"] = pod_constraints("LocalAndRemote")["tolerations"]
        client.AppsV1Api(tb.kube("root")).create_namespaced_deployment("pmu", manifest)
        pod = wait_for(lambda: running_pods(client.CoreV1Api(tb.kube("root")), "app=pmu", "pmu"), 90, "pmu Running")[0]
        assert pod.spec.node_name == "liqo-leaf-3"
        assert running_pods(client.CoreV1Api(tb.kube("leaf-3")), "app=pmu", "pmu-root")
        time.sleep(10)
        rss = _vk_rss_mb()
        print(f"virtual kubelets RSS MB: min {min(rss):.1f} max {max(rss):.1f} ({len(rss)} processes)")
        assert len(rss) == len(pairs) and max(rss) <= 50
    finally:
        if liqo is not None:
            liqo.down()
        tb.down()
