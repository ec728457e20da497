"""The thesis' Liqo v0.10.2 on real embedded clusters: installed, peered, offloaded and unpeered with liqoctl.

``root`` peers out of band with ``leaf1`` and ``leaf2`` (one VM each, distinct pod CIDRs) and
offloads namespace ``work`` (Remote) to both; the leaves form the group ``grid``. The tests
share the test bed and run in file order: the last ones cut leaf1 off, then the root (island
mode), and unpeer leaf2.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from embedded_helpers import node_affinity, pause_deployment, wait_for
from kubernetes import client
from peering_helpers import require_liqo

from labkit import paths
from labkit.measure.liqo import wait_api_server_established
from labkit.testbed.pods import probe_pod, start_pods, twin_pods
from labkit.topology.labels import CLUSTER, LIQO_REMOTE_CLUSTER_ID, LIQO_TYPE, group_key

pytestmark = pytest.mark.embedded

GROUP = group_key("grid")
NAMESPACE = "work"
LIQO_NS = "liqo"


def _labels(cluster: str) -> dict[str, str]:
    return {CLUSTER: cluster, GROUP: "member"}


@pytest.fixture(scope="module")
def bed() -> Iterator[Any]:
    """The three clusters, peered and offloaded by ``up()`` with liqoctl."""
    require_liqo()
    from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, OffloadSpec, VmSpec
    env = EmbeddedEnv(clusters=(
        ClusterSpec("root", (VmSpec("root"),), pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16"),
        ClusterSpec("leaf1", (VmSpec("leaf1"),), pod_cidr="10.44.0.0/16", service_cidr="10.45.0.0/16"),
        ClusterSpec("leaf2", (VmSpec("leaf2"),), pod_cidr="10.46.0.0/16", service_cidr="10.47.0.0/16"),
    ), peerings=(("root", "leaf1"), ("root", "leaf2")),
        cluster_labels={c: _labels(c) for c in ("root", "leaf1", "leaf2")},
        offloads=(OffloadSpec(NAMESPACE, "root", strategy="Remote", mapping="EnforceSameName"),), peering="liqo")
    tb = EmbeddedTestbed()
    tb.up(env)  # outside the try: a failed up() tears down itself
    try:
        yield tb
    finally:
        tb.down()  # raises when anything is left


def _ready(core: client.CoreV1Api, node: str) -> client.V1NodeCondition | None:
    return next((c for c in core.read_node(node).status.conditions or [] if c.type == "Ready"), None)


def test_liqoctl_peered_root_with_both_leaves(bed: Any) -> None:
    liqo = bed.liqo
    assert liqo.kind == "liqo" and set(liqo.peerings) == {("root", "leaf1"), ("root", "leaf2")}
    print(f"install {liqo.installed}; peerings { {k: p.steps for k, p in liqo.peerings.items()} }")
    core = client.CoreV1Api(bed.kube("root"))
    for leaf in ("leaf1", "leaf2"):
        node = core.read_node(f"liqo-{leaf}")
        labels = node.metadata.labels
        assert labels[LIQO_TYPE] == "virtual-node" and labels[LIQO_REMOTE_CLUSTER_ID] == liqo.cluster_id(leaf)
        assert labels[CLUSTER] == leaf and labels[GROUP] == "member"
        assert _ready(core, f"liqo-{leaf}").status == "True"
    custom = client.CustomObjectsApi(bed.kube("root"))
    fcs = custom.list_cluster_custom_object("discovery.liqo.io", "v1alpha1", "foreignclusters")["items"]
    conditions = {fc["metadata"]["name"]: {c["type"]: c["status"] for c in fc["status"]["peeringConditions"]}
                  for fc in fcs}
    for leaf in ("leaf1", "leaf2"):
        for kind in ("OutgoingPeering", "AuthenticationStatus", "NetworkStatus"):
            assert conditions[leaf][kind] == "Established", conditions
    teps = custom.list_cluster_custom_object("net.liqo.io", "v1alpha1", "tunnelendpoints")["items"]
    assert sorted(t["status"]["connection"]["status"] for t in teps) == ["Connected", "Connected"]
    images = {c.image for d in client.AppsV1Api(bed.kube("leaf1")).list_namespaced_deployment(LIQO_NS).items
              for c in d.spec.template.spec.containers}
    assert f"ghcr.io/liqotech/liqo-controller-manager:{liqo.version}" in images
    assert f"ghcr.io/liqotech/liqonet:{liqo.version}" in images


def _echo(image: str) -> dict[str, Any]:
    """A Deployment serving HTTP on 8080, required in group ``grid``, preferring leaf1."""
    term = {"matchExpressions": [{"key": GROUP, "operator": "In", "values": ["member"]}]}
    pod = probe_pod("echo", image, labels={"app": "echo"})["spec"]
    pod["containers"][0]["command"] = ["python", "-m", "http.server", "8080"]
    pod["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": CLUSTER, "operator": "In", "values": ["leaf1"]}]}}]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo"}},
                     "template": {"metadata": {"labels": {"app": "echo"}}, "spec": pod}}}


def _echo_pods(core: client.CoreV1Api) -> list[client.V1Pod]:
    return [p for p in core.list_namespaced_pod(NAMESPACE, label_selector="app=echo").items
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def test_pod_with_group_affinity_runs_in_leaf1_and_answers_by_service_name(bed: Any) -> None:
    image = bed.load_image("root", "runtime")
    for leaf in ("leaf1", "leaf2"):
        bed.load_image(leaf, "runtime")
    home = client.CoreV1Api(bed.kube("root"))
    client.AppsV1Api(bed.kube("root")).create_namespaced_deployment(NAMESPACE, _echo(image))
    home.create_namespaced_service(NAMESPACE, {"metadata": {"name": "echo"}, "spec": {
        "selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    pod = wait_for(lambda: _echo_pods(home), 120, "the offloaded echo pod Running at home")[0]
    assert pod.spec.node_name == "liqo-leaf1"
    twins = [p for p in twin_pods(client.CoreV1Api(bed.kube("leaf1")), pod.metadata.name)
             if p.status.phase == "Running"]
    assert len(twins) == 1 and twins[0].metadata.namespace == NAMESPACE  # EnforceSameName
    assert twins[0].status.pod_ip == pod.status.pod_ip and pod.status.pod_ip.startswith("10.44.")
    client_pod = start_pods(bed.kube("root"), "probe", [probe_pod("client", image, node="root")])[0]
    fetch = "import urllib.request; print(urllib.request.urlopen('http://echo.work.svc.cluster.local/', timeout=5).status)"
    result = wait_for(lambda: (r := client_pod.run(["python", "-c", fetch], timeout=20)).ok and r, 90,
                      "http://echo.work.svc from a pod of the root", interval=2)
    assert result.stdout.strip() == "200"


def _secret_values(tb: Any) -> list[bytes]:
    """Every WireGuard private key and peering token of the test bed, as Liqo keeps them in Secrets."""
    found = []
    for cluster in tb.clusters():
        core = client.CoreV1Api(tb.kube(cluster))
        for secret in core.list_namespaced_secret(LIQO_NS).items:
            data = secret.data or {}
            if secret.metadata.name == "wireguard-pubkey":
                found.append(base64.b64decode(data["privateKey"]))
            elif secret.metadata.name == "auth-token" or secret.metadata.name.startswith("remote-token-"):
                found.append(base64.b64decode(data["token"]))
    return found


def test_no_wireguard_key_or_token_in_data_logs_or_notebooks(bed: Any) -> None:
    from labkit.testbed.embedded import vm as vmlib
    secrets = _secret_values(bed)
    assert len([s for s in secrets if len(s) == 44]) == 3, "one WireGuard key per cluster"
    assert len(secrets) >= 3 + 1 + 2, "the keys, the leaves' tokens and the root's copies of them"
    roots = [paths.data_dir(), paths.repo_root() / "notebooks", paths.cache_dir() / "failed-starts",
             vmlib.STATE_ROOT / "supervisor.log"]
    roots += [vm_dir / sub for vm_dir in vmlib.STATE_ROOT.iterdir() if vm_dir.is_dir()
              for sub in ("logs", vmlib.PRIVATE_DIRS["/var/log/pods"])]
    scanned = 0
    for root in roots:
        files = [root] if root.is_file() else [Path(d, f) for d, _, fs in os.walk(root) for f in fs]
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            scanned += 1
            assert not any(s in data for s in secrets), f"a WireGuard key or peering token is in {path}"
    assert scanned > 10


def test_provider_cut_off_makes_its_virtual_node_not_ready_and_the_pod_moves(bed: Any) -> None:
    """leaf1's interface down: liqo-leaf1 NotReady within the band Liqo's timers imply (tunnel path:
    no pong for interval x threshold, observed every interval x threshold / 10, the last pong up to
    one interval before the cut), then the echo pod is recreated on leaf2."""
    tuning = bed.liqo.tuning
    window = tuning.gateway_ping_interval_s * tuning.gateway_ping_loss_threshold
    low, high = window - tuning.gateway_ping_interval_s, window + window / 10
    home = client.CoreV1Api(bed.kube("root"))
    old = _echo_pods(home)[0]
    assert old.spec.node_name == "liqo-leaf1"
    wait_api_server_established(client.CustomObjectsApi(bed.kube("root")), "leaf1", timeout=60.0)
    host = bed.host("leaf1")
    host.iface_down()
    cut = time.monotonic()
    try:
        cond = wait_for(lambda: (c := _ready(home, "liqo-leaf1")) and c.status != "True" and c, 60,
                        "liqo-leaf1 NotReady", interval=0.1)
        delay = time.monotonic() - cut
        network = next(c for c in home.read_node("liqo-leaf1").status.conditions if c.type == "NetworkUnavailable")
        print(f"NotReady after {delay:.2f} s ({cond.reason}; NetworkUnavailable {network.status} {network.reason}); "
              f"band {low:.0f}-{high:.0f} s + 2 s for the TunnelEndpoint and node updates")
        assert (cond.reason, network.reason) == ("KubeletNotReady", "LiqoNetworkingDown"), "the tunnel path fired"
        assert low <= delay <= high + 2.0, delay
        new = wait_for(lambda: [p for p in _echo_pods(home) if p.metadata.uid != old.metadata.uid], 90,
                       "the echo pod recreated elsewhere")[0]
        print(f"replacement Running on {new.spec.node_name} {time.monotonic() - cut:.1f} s after the cut")
        assert new.spec.node_name == "liqo-leaf2"
    finally:
        host.iface_up()
    wait_for(lambda: _ready(home, "liqo-leaf1").status == "True", 90, "liqo-leaf1 Ready again", interval=0.5)


#: An island-mode workload tolerates its node being NotReady or unreachable for as long as it takes.
ISLAND_TOLERATIONS = [{"key": key, "operator": "Exists", "effect": "NoExecute"} for key in (
    "virtual-node.liqo.io/not-allowed", "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
#: Longer than the root's node-monitor grace period (20 s) plus the eviction wait (5 s).
ISLAND_S = 35.0


def _virtual_ready_inside(tb: Any) -> dict[str, bool]:
    """Readiness of the root's virtual nodes, asked from inside the root VM (the host cannot reach a cut-off root)."""
    script = ("import json; from kubernetes import client, config; "
              "api = client.CoreV1Api(config.new_client_from_config('/etc/kubernetes/admin.kubeconfig')); "
              "print(json.dumps({n.metadata.name: any(c.type == 'Ready' and c.status == 'True' for c in "
              "n.status.conditions or []) for n in api.list_node(label_selector='liqo.io/type=virtual-node').items}))")
    res = tb.host("root").run([sys.executable, "-c", script], timeout=30)
    assert res.ok, res.stderr
    return json.loads(res.stdout)


def _running(core: client.CoreV1Api, selector: str, namespace: str = "default") -> list[client.V1Pod]:
    return [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def test_island_the_leaves_carry_on_and_reconcile(bed: Any) -> None:
    """Island mode (thesis ch. 8): the root cut off longer than its grace period and eviction wait;
    the leaves keep the offloaded pod (same uid, no restart) and deploy on their own; back, the
    root's virtual nodes are Ready again and its home pod still reflects the same twin."""
    root = client.CoreV1Api(bed.kube("root"))
    leaf1, leaf2 = (client.CoreV1Api(bed.kube(c)) for c in ("leaf1", "leaf2"))
    pmu = pause_deployment("pmu", "labkit.local/pause:1", node_affinity(CLUSTER, ["leaf1"]))
    pmu["spec"]["template"]["spec"]["tolerations"] = ISLAND_TOLERATIONS
    client.AppsV1Api(bed.kube("root")).create_namespaced_deployment(NAMESPACE, pmu)
    home = wait_for(lambda: _running(root, "app=pmu", NAMESPACE), 90, "the offloaded pod Running at home")[0]
    assert home.spec.node_name == "liqo-leaf1"
    twin = wait_for(lambda: _running(leaf1, "app=pmu", NAMESPACE), 30, "its twin Running in leaf1")[0]
    restarts = sum(c.restart_count for c in twin.status.container_statuses or [])
    host = bed.host("root")
    host.iface_down()
    cut = time.monotonic()
    try:
        assert not bed.host("leaf1").ping(host.address, count=2, interval=0.2).received
        wait_for(lambda: not any(_virtual_ready_inside(bed).values()), 40, "the virtual nodes NotReady in the root",
                 interval=1.0)
        for name, core, cluster in (("local-1", leaf1, "leaf1"), ("local-2", leaf2, "leaf2")):
            client.AppsV1Api(bed.kube(cluster)).create_namespaced_deployment(
                "default", pause_deployment(name, "labkit.local/pause:1"))
            wait_for(lambda c=core, n=name: _running(c, f"app={n}"), 60, f"{name} Running in {cluster} on its own")
        time.sleep(max(0.0, ISLAND_S - (time.monotonic() - cut)))
        during = _running(leaf1, "app=pmu", NAMESPACE)
        assert [p.metadata.uid for p in during] == [twin.metadata.uid], "the leaf kept its offloaded pod"
        assert sum(c.restart_count for c in during[0].status.container_statuses or []) == restarts
        assert not any(_virtual_ready_inside(bed).values())
    finally:
        host.iface_up()
    print(f"island lasted {time.monotonic() - cut:.1f} s")
    wait_for(lambda: all(_ready(root, f"liqo-{leaf}").status == "True" for leaf in ("leaf1", "leaf2")), 90,
             "the virtual nodes Ready again", interval=0.5)
    assert [p.metadata.uid for p in _running(leaf1, "app=pmu", NAMESPACE)] == [twin.metadata.uid]
    homes = wait_for(lambda: [p for p in _running(root, "app=pmu", NAMESPACE) if p.status.pod_ip == twin.status.pod_ip],
                     30, "the home pod reflecting its twin")
    assert [p.metadata.uid for p in homes] == [home.metadata.uid], "the home pod was not replaced"
    assert _running(leaf1, "app=local-1") and _running(leaf2, "app=local-2")
    client.AppsV1Api(bed.kube("root")).delete_namespaced_deployment("pmu", NAMESPACE)


def test_liqoctl_unpeers_leaf2(bed: Any) -> None:
    client.AppsV1Api(bed.kube("root")).delete_namespaced_deployment("echo", NAMESPACE)
    bed.liqo.unpeer("root", "leaf2")
    assert ("root", "leaf2") not in bed.liqo.peerings
    home = client.CoreV1Api(bed.kube("root"))
    wait_for(lambda: not home.list_node(field_selector="metadata.name=liqo-leaf2").items, 60,
             "the virtual node liqo-leaf2 removed")
    custom = client.CustomObjectsApi(bed.kube("root"))
    fc = custom.get_cluster_custom_object("discovery.liqo.io", "v1alpha1", "foreignclusters", "leaf2")
    outgoing = {c["type"]: c["status"] for c in fc["status"]["peeringConditions"]}.get("OutgoingPeering")
    assert outgoing in (None, "None"), fc["status"]
    assert _ready(home, "liqo-leaf1").status == "True", "the other peering is untouched"
