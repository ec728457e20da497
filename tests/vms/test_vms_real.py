"""The real thing on real VMs: runs only with ``LABKIT_VMS_INVENTORY=<env file like envs/crownlabs.yaml>``.

Brings the env up (k3s + Liqo + Percona), checks nodes, virtual nodes and a link fault through
the Testbed protocol, and tears everything down. Takes tens of minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.config import load_env
from labkit.testbed import base
from labkit.testbed.vms import VmsTestbed
from labkit.testbed.vms.liqo import cluster_id
from labkit.testbed.vms.runbook import topology_plan

pytestmark = pytest.mark.vms


@pytest.fixture(scope="module")
def env() -> Any:
    return load_env(os.environ["LABKIT_VMS_INVENTORY"])


@pytest.fixture(scope="module")
def testbed(env: Any) -> Iterator[VmsTestbed]:
    tb = VmsTestbed()
    try:
        tb.up(env)
        yield tb
    finally:
        tb.down()


def _nodes(tb: VmsTestbed, cluster: str) -> dict[str, Any]:
    from kubernetes import client

    return {n.metadata.name: n for n in client.CoreV1Api(tb.kube(cluster)).list_node().items}


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_is_a_testbed(testbed: VmsTestbed) -> None:
    assert isinstance(testbed, base.Testbed)


def test_every_cluster_has_its_nodes_and_virtual_nodes_ready_with_the_plan_labels(env: Any, testbed: VmsTestbed) -> None:
    topo = topology_plan(env)
    assert sorted(testbed.clusters()) == sorted(c.name for c in env.clusters)
    for cluster in env.clusters:
        nodes = _nodes(testbed, cluster.name)
        for node in cluster.nodes:
            assert _ready(nodes[node.name])
            assert topo.node_labels[cluster.name][node.name].items() <= nodes[node.name].metadata.labels.items()
        for vnode in (v for v in topo.virtual_nodes if v.consumer == cluster.name):
            labels = {**vnode.labels, "liqo.io/remote-cluster-id": cluster_id(env, vnode.provider)}
            assert _ready(nodes[vnode.name]) and labels.items() <= nodes[vnode.name].metadata.labels.items()


def test_a_disconnected_provider_becomes_not_ready_in_its_consumer_and_comes_back(env: Any, testbed: VmsTestbed) -> None:
    topo = topology_plan(env)
    link = topo.peerings[0]
    vm = testbed.host(env.cluster(link.provider).nodes[0].name)
    vm.iface_down()
    try:
        deadline = time.monotonic() + 120
        while _ready(_nodes(testbed, link.consumer)[f"liqo-{link.provider}"]):
            assert time.monotonic() < deadline, "virtual node still Ready 120 s after the provider's link went down"
            time.sleep(0.4)
    finally:
        vm.iface_up()
    deadline = time.monotonic() + 300
    while not _ready(_nodes(testbed, link.consumer)[f"liqo-{link.provider}"]):
        assert time.monotonic() < deadline, "virtual node not Ready again 300 s after the link came back"
        time.sleep(2)
    assert vm.ping(testbed.host(env.cluster(link.consumer).nodes[0].name).address, count=3).received == 3
