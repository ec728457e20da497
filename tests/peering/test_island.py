"""Island mode (thesis ch. 8, issue #11 part 5): the root cut off, the leaves carry on, and reconcile.

Three single-node clusters from ``envs/thesis.yaml`` (the root and two leaves), peered and
offloaded as ``labkit.topology`` plans them (``running(env)``). The root deploys a pod into its
offloaded namespace, bound by affinity to leaf-1. Then the root's lab interface goes down
(fault ``island``) for longer than the root's grace period and eviction wait (Table 7.1:
20 s + 5 s), and:

- every leaf keeps running its offloaded pod (the same pod, no restart), and can create new pods;
- on reconnection the virtual nodes are Ready again in the root, the offloaded pod is still the
  same one in the provider, and the home pod still reflects it.

The offloaded pod tolerates the virtual node being not-ready/unreachable (no ``tolerationSeconds``):
an island-mode workload must, or the root's 5 s eviction (Table 7.1) recalls it, and its
replacement, once the root is back, replaces the leaf's pod.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from peering_helpers import require_env_peering
from embedded_helpers import node_affinity, pause_deployment, running_pods, wait_for
from kubernetes import client

from labkit.config import load_env, validate_env
from labkit.faults import FaultLog, FaultSpec, injected
from labkit.testbed import running

pytestmark = pytest.mark.embedded

PAUSE = "labkit.local/pause:1"
NAMESPACE = "island"
#: Longer than the root's node-monitor grace period (20 s) plus the eviction wait (5 s).
ISLAND_S = 35.0
#: An island-mode workload tolerates its node being NotReady or unreachable for as long as it takes.
ISLAND_TOLERATIONS = [
    {"key": "virtual-node.liqo.io/not-allowed", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
]


def _island_env():  # noqa: ANN202 (labkit.config.Env)
    """The thesis' root and two leaves, the root offloading ``island`` to both (Remote)."""
    thesis = load_env("thesis")
    keep = ["root", "leaf-1", "leaf-2"]
    clusters = [c.model_dump(mode="json", exclude_none=True) for c in thesis.clusters if c.name in keep]
    raw = {"name": "island", "seed": thesis.seed, "backend": thesis.backend.model_dump(mode="json"),
           "tuning": thesis.tuning.model_dump(mode="json"), "clusters": clusters,
           "offloading": [{"namespace": NAMESPACE, "consumer": "root", "clusters": keep[1:], "pod_strategy": "Remote"}]}
    return validate_env(raw, source="test_island")


def _virtual_ready(core: client.CoreV1Api) -> dict[str, bool]:
    nodes = core.list_node(label_selector="liqo.io/type=virtual-node").items
    return {n.metadata.name: any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            for n in nodes}


def _virtual_ready_inside(tb) -> dict[str, bool]:  # noqa: ANN001
    """:func:`_virtual_ready` asked from inside the root VM (the test's host cannot reach a cut-off root)."""
    script = ("import json; from kubernetes import client, config; "
              "api = client.CoreV1Api(config.new_client_from_config('/etc/kubernetes/admin.kubeconfig')); "
              "print(json.dumps({n.metadata.name: any(c.type == 'Ready' and "
              "c.status == 'True' for c in n.status.conditions or []) for n in "
              "api.list_node(label_selector='liqo.io/type=virtual-node').items}))")
    res = tb.host("root").run([sys.executable, "-c", script], timeout=30)
    assert res.ok, res.stderr
    return json.loads(res.stdout)


def _restarts(pod: client.V1Pod) -> int:
    return sum(cs.restart_count for cs in pod.status.container_statuses or [])


def test_island_leaves_run_and_deploy_then_reconcile() -> None:
    require_env_peering()
    env = _island_env()
    with running(env) as tb:
        root = client.CoreV1Api(tb.kube("root"))
        leaf1, leaf2 = (client.CoreV1Api(tb.kube(c)) for c in ("leaf-1", "leaf-2"))
        assert _virtual_ready(root) == {"liqo-leaf-1": True, "liqo-leaf-2": True}
        manifest = pause_deployment("pmu", PAUSE, node_affinity("topology.labkit.io/cluster", ["leaf-1"]))
        manifest["spec"]["template"]["spec"]["tolerations"] = ISLAND_TOLERATIONS
        client.AppsV1Api(tb.kube("root")).create_namespaced_deployment(NAMESPACE, manifest)
        home = wait_for(lambda: running_pods(root, "app=pmu", NAMESPACE), 90, "the offloaded pod Running at home")[0]
        assert home.spec.node_name == "liqo-leaf-1"
        remote = wait_for(lambda: running_pods(leaf1, "app=pmu", NAMESPACE), 30, "its twin Running in leaf-1")[0]

        log = FaultLog()
        with injected(tb, env, FaultSpec(name="island", action="island"), log):
            cut = time.monotonic()
            assert not tb.host("leaf-1").ping(tb.host("root").address, count=2, interval=0.2).received
            # the root (asked from inside) sees its leaves go: the tunnel check marks the virtual nodes NotReady
            wait_for(lambda: not any(_virtual_ready_inside(tb).values()), 40, "the virtual nodes NotReady in the root",
                     interval=1.0)
            # each leaf deploys on its own while the root is away
            for name, core, cluster in (("local-1", leaf1, "leaf-1"), ("local-2", leaf2, "leaf-2")):
                apps = client.AppsV1Api(tb.kube(cluster))
                apps.create_namespaced_deployment("default", pause_deployment(name, PAUSE))
                wait_for(lambda c=core, n=name: running_pods(c, f"app={n}"), 60, f"{name} Running in {cluster}")
            time.sleep(max(0.0, ISLAND_S - (time.monotonic() - cut)))
            during = running_pods(leaf1, "app=pmu", NAMESPACE)
            assert [p.metadata.uid for p in during] == [remote.metadata.uid], "the leaf kept its offloaded pod"
            assert _restarts(during[0]) == _restarts(remote)
            assert _virtual_ready_inside(tb) == {"liqo-leaf-1": False, "liqo-leaf-2": False}
        print(f"island lasted {time.monotonic() - cut:.1f} s")

        # reconnected: the root sees its leaves again and nothing of theirs was lost
        wait_for(lambda: all(_virtual_ready(root).values()), 60, "the virtual nodes Ready again", interval=0.5)
        after = running_pods(leaf1, "app=pmu", NAMESPACE)
        assert [p.metadata.uid for p in after] == [remote.metadata.uid]
        assert _restarts(after[0]) == _restarts(remote)
        homes = wait_for(lambda: [p for p in running_pods(root, "app=pmu", NAMESPACE)
                                  if p.status.pod_ip == remote.status.pod_ip], 30, "the home pod reflecting its twin")
        assert [p.metadata.uid for p in homes] == [home.metadata.uid], "the home pod was not replaced"
        assert running_pods(leaf1, "app=local-1") and running_pods(leaf2, "app=local-2")
        assert tb.host("leaf-1").ping(tb.host("root").address, count=2, interval=0.2).received == 2
    # running() tears down; down() raises if it leaves anything behind
