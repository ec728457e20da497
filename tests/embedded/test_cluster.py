"""A real 2-VM Kubernetes v1.24.17 cluster: Ready nodes, scheduling, probes, DNS, eviction.

The tests share one cluster (module fixture ``two_node``) and run in file order; the
link-fault test runs last because it disturbs the cluster.
"""

from __future__ import annotations

import time

import pytest
from embedded_helpers import TARGET_LABEL, node_affinity, node_ready, pause_deployment, running_pods, wait_for
from kubernetes import client

from labkit import images
from labkit.testbed import base

pytestmark = pytest.mark.embedded

PAUSE = "labkit.local/pause:1"


def test_nodes_ready_with_version_and_protocols(two_node) -> None:  # noqa: ANN001
    assert isinstance(two_node, base.Testbed)
    core = client.CoreV1Api(two_node.kube("c1"))
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"c1-a", "c1-b"}
    assert all(n.status.node_info.kubelet_version == "v1.24.17" for n in nodes.values())
    assert nodes["c1-b"].metadata.labels[TARGET_LABEL[0]] == TARGET_LABEL[1]
    version = client.VersionApi(two_node.kube("c1")).get_code()
    assert version.git_version == "v1.24.17"
    host = two_node.host("c1-a")
    assert isinstance(host, base.Host)
    ping = host.ping(two_node.host("c1-b").address, count=3)
    assert ping.received == 3 and max(ping.rtt_ms) < 50


def test_node_affinity_lands_on_labelled_node(two_node) -> None:  # noqa: ANN001
    api = two_node.kube("c1")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment("default", pause_deployment(
        "pinned", PAUSE, node_affinity(TARGET_LABEL[0], [TARGET_LABEL[1]]), replicas=2))
    pods = wait_for(lambda: (p := running_pods(core, "app=pinned")) and len(p) == 2 and p, 60, "2 pinned pods Running")
    assert {p.spec.node_name for p in pods} == {"c1-b"}


def test_pods_reach_each_other_across_vms(two_node) -> None:  # noqa: ANN001
    core = client.CoreV1Api(two_node.kube("c1"))
    apps = client.AppsV1Api(two_node.kube("c1"))
    apps.create_namespaced_deployment("default", pause_deployment(
        "on-a", PAUSE, node_affinity("kubernetes.io/hostname", ["c1-a"])))
    pod_a = wait_for(lambda: running_pods(core, "app=on-a"), 60, "a pod on c1-a")[0]
    pod_b = wait_for(lambda: running_pods(core, "app=pinned"), 60, "a pod on c1-b")[0]
    # from VM c1-a's network namespace to a pod on c1-b, and from c1-b to a pod on c1-a
    assert two_node.host("c1-a").ping(pod_b.status.pod_ip, count=2).received == 2
    assert two_node.host("c1-b").ping(pod_a.status.pod_ip, count=2).received == 2


def test_failing_liveness_probe_restarts_container(two_node) -> None:  # noqa: ANN001
    core = client.CoreV1Api(two_node.kube("c1"))
    core.create_namespaced_pod("default", {
        "metadata": {"name": "unhealthy"},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "pause", "image": PAUSE, "imagePullPolicy": "Never",
            "livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 1}}]}})

    def restarts() -> int:
        pod = core.read_namespaced_pod("unhealthy", "default")
        statuses = pod.status.container_statuses or []
        return statuses[0].restart_count if statuses else 0

    wait_for(lambda: restarts() >= 1, 60, "a first restart")
    first = restarts()
    wait_for(lambda: restarts() > first, 60, "the restart count to rise again")


def test_pod_reaches_service_by_dns_name(two_node) -> None:  # noqa: ANN001
    api = two_node.kube("c1")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    runtime = images.image_ref("runtime")
    try:
        archive = images.build("runtime")  # only the small labkit layer is rebuilt after a code change
    except images.ImageError as exc:
        pytest.skip(f"runtime image (python3) cannot be built here: {exc}")
    two_node.cluster("c1").import_image(archive)
    wait_for(lambda: running_pods(core, "k8s-app=kube-dns", "kube-system"), 90, "CoreDNS Running")
    apps.create_namespaced_deployment("default", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "affinity": node_affinity("kubernetes.io/hostname", ["c1-b"]),
                     "containers": [{"name": "web", "image": runtime, "imagePullPolicy": "Never",
                                     "command": ["python3", "-m", "http.server", "8000"]}]}}}})
    core.create_namespaced_service("default", {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    wait_for(lambda: running_pods(core, "app=web"), 90, "the web pod Running")
    script = ("import urllib.request,time\n"
              "for i in range(60):\n"
              "    try:\n"
              "        urllib.request.urlopen('http://web.default.svc.cluster.local', timeout=2).read(); break\n"
              "    except Exception as e:\n"
              "        print(e); time.sleep(1)\n"
              "else:\n"
              "    raise SystemExit(1)\n")
    core.create_namespaced_pod("default", {"metadata": {"name": "client"}, "spec": {
        "restartPolicy": "Never", "affinity": node_affinity("kubernetes.io/hostname", ["c1-a"]),
        "containers": [{"name": "client", "image": runtime, "imagePullPolicy": "Never",
                        "command": ["python3", "-c", script]}]}})
    phase = wait_for(lambda: (p := core.read_namespaced_pod("client", "default").status.phase)
                     in ("Succeeded", "Failed") and p, 120, "the client pod to finish")
    assert phase == "Succeeded", core.read_namespaced_pod_log("client", "default")


def test_link_down_makes_node_not_ready_and_pod_moves(two_node) -> None:  # noqa: ANN001
    """Table 7.1: NotReady after the 20 s grace period, pod replaced after the 5 s toleration."""
    api = two_node.kube("c1")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", pause_deployment(
        "mover", PAUSE, node_affinity("kubernetes.io/hostname", ["c1-b"], required=False)))
    pod = wait_for(lambda: running_pods(core, "app=mover"), 60, "the mover pod Running")[0]
    assert pod.spec.node_name == "c1-b"
    host = two_node.host("c1-b")
    t0 = time.monotonic()
    host.iface_down()
    try:
        wait_for(lambda: not node_ready(core, "c1-b"), 60, "c1-b NotReady", interval=0.1)
        not_ready_s = time.monotonic() - t0
        wait_for(lambda: [p for p in running_pods(core, "app=mover") if p.spec.node_name == "c1-a"], 60,
                 "the mover pod Running on c1-a", interval=0.1)
        moved_s = time.monotonic() - t0
    finally:
        host.iface_up()
    print(f"NotReady after {not_ready_s:.1f} s, pod Running on c1-a after {moved_s:.1f} s")
    # grace 20 s, heartbeats every 5 s (status) / 10 s (lease), monitor period 5 s
    assert 10.0 <= not_ready_s <= 30.0
    # toleration 5 s after the unreachable taint, then a new pod starts
    assert 5.0 <= moved_s - not_ready_s <= 25.0
    wait_for(lambda: node_ready(core, "c1-b"), 60, "c1-b Ready again")
