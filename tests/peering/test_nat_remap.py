"""The look-alike: two real clusters with the same pod CIDR, peered: the gateways remap with nftables NAT."""

from __future__ import annotations

import ipaddress

import pytest
from peering_helpers import require_peering
from embedded_helpers import node_affinity, pause_deployment, running_pods, wait_for
from kubernetes import client

pytestmark = pytest.mark.embedded


def test_colliding_pod_cidrs_are_remapped() -> None:
    require_peering()
    from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec
    from labkit.testbed.embedded.liqo import LookAlike, offload, pod_constraints
    env = EmbeddedEnv(clusters=(ClusterSpec("home", (VmSpec("home-a"),)), ClusterSpec("away", (VmSpec("away-a"),))),
                      dns=False)  # both 10.42.0.0/16 (the k3s default)
    tb = EmbeddedTestbed()
    liqo = None
    try:
        tb.up(env)
        liqo = LookAlike(tb, cluster_labels={"away": {"topology.labkit.io/cluster": "away"}})
        liqo.peer("home", "away")
        seen = ipaddress.ip_network(liqo.pod_cidr_seen("home", "away"))
        assert not seen.overlaps(ipaddress.ip_network("10.42.0.0/16"))
        offload(tb, "home", "work", {"away": {"topology.labkit.io/cluster": "away", "liqo.io/type": "virtual-node"}})
        manifest = pause_deployment("pmu", "labkit.local/pause:1", node_affinity("topology.labkit.io/cluster", ["away"]))
        manifest["spec"]["template"]["spec"]["tolerations"] = pod_constraints("Remote")["tolerations"]
        client.AppsV1Api(tb.kube("home")).create_namespaced_deployment("work", manifest)
        home = client.CoreV1Api(tb.kube("home"))
        pod = wait_for(lambda: running_pods(home, "app=pmu", "work"), 90, "the offloaded pod Running")[0]
        remote = running_pods(client.CoreV1Api(tb.kube("away")), "app=pmu", "work-home")[0]
        print(f"provider pod {remote.status.pod_ip} is {pod.status.pod_ip} at home")
        assert ipaddress.ip_address(remote.status.pod_ip) in ipaddress.ip_network("10.42.0.0/16")
        assert ipaddress.ip_address(pod.status.pod_ip) in seen
        assert remote.status.pod_ip.split(".")[2:] == pod.status.pod_ip.split(".")[2:]
        client.AppsV1Api(tb.kube("home")).create_namespaced_deployment("default", pause_deployment(
            "local", "labkit.local/pause:1"))  # a home pod, so home-a's cni0 holds 10.42.0.1
        wait_for(lambda: running_pods(home, "app=local"), 60, "a local pod")
        host = tb.host("home-a")
        # DNAT at the provider's gateway; then from a home pod address (cni0): SNAT at home as well
        assert host.ping(pod.status.pod_ip, count=2).received == 2
        res = host.run(["ping", "-n", "-c", "2", "-W", "2", "-I", "10.42.0.1", pod.status.pod_ip], timeout=20)
        assert res.ok, res.stdout + res.stderr
    finally:
        if liqo is not None:
            liqo.down()
        tb.down()
