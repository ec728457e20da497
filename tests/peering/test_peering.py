"""The kit's Liqo look-alike (the fallback without Liqo's source) between two real Kubernetes v1.24.17 clusters.

``root`` (consumer) peers with ``leaf1`` (provider): a WireGuard tunnel between the root VMs,
the virtual node ``liqo-leaf1`` in ``root``, and an offloaded namespace. The tests run in file
order; the link-fault test disturbs the peering and runs last but one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peering_helpers import LEAF_LABELS
from embedded_helpers import node_affinity, pause_deployment, running_pods, wait_for
from kubernetes import client

from labkit import paths
from labkit.testbed.embedded.liqo import offloading

pytestmark = pytest.mark.embedded

PAUSE = "labkit.local/pause:1"
NODE = "liqo-leaf1"
REMOTE_NS = "work-root"


def _ready(core: client.CoreV1Api, name: str) -> client.V1NodeCondition | None:
    node = core.read_node(name)
    return next((c for c in node.status.conditions or [] if c.type == "Ready"), None)


def test_virtual_node_has_liqo_labels_capacity_and_is_ready(peered) -> None:  # noqa: ANN001
    tb, liqo = peered
    peering = liqo.peerings[("root", "leaf1")]
    print(f"peering took {peering.took_s:.1f} s: {peering.steps}")
    core = client.CoreV1Api(tb.kube("root"))
    node = core.read_node(NODE)
    labels = node.metadata.labels
    assert labels["liqo.io/type"] == "virtual-node"
    assert labels["liqo.io/remote-cluster-id"] == "leaf1"
    assert all(labels[k] == v for k, v in LEAF_LABELS.items())
    assert int(node.status.capacity["pods"]) == 2 * 110  # the provider's two nodes
    assert any(t.key == offloading.VIRTUAL_NODE_TAINT for t in node.spec.taints)
    assert _ready(core, NODE).status == "True"
    lease = client.CoordinationV1Api(tb.kube("root")).read_namespaced_lease(NODE, "kube-node-lease")
    assert lease.spec.lease_duration_seconds == 40


def test_pod_with_affinity_to_leaf_runs_in_leaf(peered) -> None:  # noqa: ANN001
    tb, liqo = peered
    selected = offloading.offload(tb, "root", "work", {"leaf1": dict(LEAF_LABELS, **{"liqo.io/type": "virtual-node"})})
    assert selected == {"leaf1": REMOTE_NS}
    with pytest.raises(offloading.OffloadingError):
        offloading.offload(tb, "leaf1", REMOTE_NS, {})  # no re-offloading
    home = client.CoreV1Api(tb.kube("root"))
    manifest = pause_deployment("pmu", PAUSE, node_affinity("topology.labkit.io/cluster", ["leaf1"]))
    manifest["spec"]["template"]["spec"]["tolerations"] = offloading.pod_constraints("LocalAndRemote")["tolerations"]
    home.create_namespaced_config_map("work", {"metadata": {"name": "pmu-config"}, "data": {"fps": "50"}})
    client.AppsV1Api(tb.kube("root")).create_namespaced_deployment("work", manifest)
    pod = wait_for(lambda: running_pods(home, "app=pmu", "work"), 90, "the offloaded pod Running at home")[0]
    assert pod.spec.node_name == NODE
    remote = client.CoreV1Api(tb.kube("leaf1"))
    rpods = running_pods(remote, "app=pmu", REMOTE_NS)
    assert len(rpods) == 1 and rpods[0].status.pod_ip == pod.status.pod_ip
    assert pod.status.pod_ip.startswith("10.44."), "the pod IP comes from the provider's pod CIDR"
    cms = wait_for(lambda: remote.list_namespaced_config_map(REMOTE_NS, field_selector="metadata.name=pmu-config").items,
                   10, "the ConfigMap reflected")
    assert cms[0].data == {"fps": "50"}
    # the consumer's root VM reaches the provider's pod through the tunnel
    assert tb.host("root-a").ping(pod.status.pod_ip, count=2).received == 2


def test_shadow_pod_recreated_by_provider(peered) -> None:  # noqa: ANN001
    tb, _ = peered
    remote = client.CoreV1Api(tb.kube("leaf1"))
    old = running_pods(remote, "app=pmu", REMOTE_NS)[0]
    remote.delete_namespaced_pod(old.metadata.name, REMOTE_NS, grace_period_seconds=0)
    new = wait_for(lambda: [p for p in running_pods(remote, "app=pmu", REMOTE_NS) if p.metadata.uid != old.metadata.uid],
                   60, "the provider recreating the pod")[0]
    home = client.CoreV1Api(tb.kube("root"))
    wait_for(lambda: (p := running_pods(home, "app=pmu", "work")) and p[0].status.pod_ip == new.status.pod_ip, 30,
             "the new pod IP reflected home")


def test_offloaded_pod_is_reachable_from_the_root_by_service_name(peered) -> None:  # noqa: ANN001
    """A server offloaded to leaf1 answers a client pod of the root through the root's Service and DNS."""
    from labkit.testbed.pods import probe_pod, start_pods
    tb, _ = peered
    image = tb.load_image("root", "runtime")
    tb.load_image("leaf1", "runtime")
    server = probe_pod("echo", image, affinity=node_affinity("topology.labkit.io/cluster", ["leaf1"]),
                       labels={"app": "echo"})
    server["spec"]["containers"][0]["command"] = ["python", "-m", "http.server", "8080"]
    server["spec"]["tolerations"] = offloading.pod_constraints("LocalAndRemote")["tolerations"]
    home = client.CoreV1Api(tb.kube("root"))
    home.create_namespaced_service("work", {"metadata": {"name": "echo"}, "spec": {
        "selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    served = start_pods(tb.kube("root"), "work", [server])[0]
    assert home.read_namespaced_pod("echo", "work").spec.node_name == NODE
    client_pod = start_pods(tb.kube("root"), "probe", [probe_pod("client", image, node="root-a")])[0]
    fetch = ("import urllib.request; "
             "print(urllib.request.urlopen('http://echo.work.svc.cluster.local/', timeout=5).status)")
    result = wait_for(lambda: (r := client_pod.run(["python", "-c", fetch], timeout=20)).ok and r, 60,
                      f"http://echo.work.svc from the root (server pod {served.address})", interval=2)
    assert result.stdout.strip() == "200"


def test_virtual_kubelet_idles_under_50_mb(peered) -> None:  # noqa: ANN001
    from labkit.testbed.embedded.liqo.peering import vk_memory
    time.sleep(5)
    memory = vk_memory()
    print(f"virtual kubelets RSS MiB: {memory}")
    assert [provider for provider, _ in memory] == ["leaf1"]
    assert memory[0][1] <= 50


def _provider_task_running(tb) -> bool:  # noqa: ANN001
    """Whether a pause container of the offloaded pod runs in leaf1 (asked from inside its VMs)."""
    script = ("from kubernetes import client, config; api = client.CoreV1Api(config.new_client_from_config("
              "'/etc/kubernetes/admin.kubeconfig')); "
              f"print(sum(p.status.phase == 'Running' for p in api.list_namespaced_pod('{REMOTE_NS}', "
              "label_selector='app=pmu').items))")
    res = tb.host("leaf1-a").run([sys.executable, "-c", script], timeout=30)
    return res.ok and res.stdout.strip() == "1"


def test_provider_link_down_marks_virtual_node_not_ready(peered) -> None:  # noqa: ANN001
    tb, liqo = peered
    core = client.CoreV1Api(tb.kube("root"))
    assert _ready(core, NODE).status == "True"
    host = tb.host("leaf1-a")
    host.iface_down()
    down_at = time.monotonic()
    try:
        cond = wait_for(lambda: (c := _ready(core, NODE)) and c.status != "True" and c, 40, "virtual node NotReady",
                        interval=0.1)
        delay = time.monotonic() - down_at
        print(f"NotReady after {delay:.2f} s, reason {cond.reason}")
        # Liqo's rule: no pong for 2 s x 5, observed every second, the last pong up to 2 s before
        # the cut: 8-11 s, plus the TunnelEndpoint's watch event and the status patch
        assert cond.reason == "LiqoTunnelDisconnected"
        assert 8.0 <= delay <= 13, delay
        assert _provider_task_running(tb), "the offloaded pod keeps running in the provider"
        time.sleep(20)  # longer than the node grace period: still running there
        assert _provider_task_running(tb)
    finally:
        host.iface_up()
    wait_for(lambda: _ready(core, NODE).status == "True", 60, "virtual node Ready again")


def test_wireguard_keys_in_no_file_under_data(peered) -> None:  # noqa: ANN001
    _, liqo = peered
    ifnames = [name for tunnel in liqo.tunnels.values() for name in tunnel.ifnames]
    keys = [subprocess.run(["wg", "show", name, "private-key"], capture_output=True, text=True).stdout.strip()
            for name in ifnames]
    assert len(keys) == 2 * len(liqo.tunnels) and all(len(k) == 44 for k in keys)
    roots = [paths.data_dir(), Path("/var/lib/lkt")]
    for root in roots:
        for folder, _, files in os.walk(root):  # containerd removes snapshots meanwhile: os.walk skips them
            for name in files:
                path = Path(folder, name)
                try:
                    if not path.is_file() or path.stat().st_size >= 50_000_000:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                assert not any(k.encode() in data for k in keys), f"a WireGuard key is in {path}"
