"""The pure part of the pod network between a cluster's VMs (:mod:`labkit.testbed.embedded.flannel`).

What each node programs, from a cluster spec, as flannel's vxlan backend programs it.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from labkit.testbed.embedded import cluster, flannel
from labkit.testbed.embedded.spec import ClusterSpec, EmbeddedEnv, SpecError, VmSpec
from labkit.testbed.embedded.vm import Vm

pytestmark = pytest.mark.unit


def three_nodes() -> list[flannel.Member]:
    """Three VMs of one cluster as :meth:`Cluster.__init__` sees them (lab indices 4-6)."""
    spec = ClusterSpec("c1", (VmSpec("a"), VmSpec("b"), VmSpec("c")), pod_cidr="10.42.0.0/16")
    subnets = spec.pod_subnets()
    return [flannel.Member(vm.name, Vm(vm.name, 4 + i).address, subnets[vm.name]) for i, vm in enumerate(spec.vms)]


def test_each_node_gets_flannel_1_as_flannel_programs_it() -> None:
    nets = flannel.plan(three_nodes())
    b = nets["b"]
    assert b.backend == "vxlan" and b.pod_mtu == 1450
    assert b.device == flannel.Device(name="flannel.1", vni=1, port=8472, local="10.250.0.15", learning=False,
                                      mtu=1450, mac="0a:58:0a:fa:00:0f", address="10.42.1.0/32")


def test_each_node_gets_a_neighbour_fdb_entry_and_route_for_every_other_node() -> None:
    nets = flannel.plan(three_nodes())
    assert nets["b"].peers == (
        flannel.Peer("a", subnet="10.42.0.0/24", gateway="10.42.0.0", mac="0a:58:0a:fa:00:0e",
                     lab_address="10.250.0.14"),
        flannel.Peer("c", subnet="10.42.2.0/24", gateway="10.42.2.0", mac="0a:58:0a:fa:00:10",
                     lab_address="10.250.0.16"),
    )
    # what a peer is told about a node is what that node programs on itself
    for name, net in nets.items():
        for peer in net.peers:
            device = nets[peer.name].device
            assert device is not None
            assert (peer.mac, peer.lab_address, f"{peer.gateway}/32") == (device.mac, device.local, device.address)
            assert peer.name != name


def test_a_single_node_cluster_has_flannel_1_and_no_peers() -> None:
    (net,) = flannel.plan(three_nodes()[:1]).values()
    assert net.device is not None and net.peers == ()


def test_host_gw_routes_via_the_lab_addresses_without_a_device() -> None:
    nets = flannel.plan(three_nodes(), "host-gw")
    assert nets["a"].device is None and nets["a"].pod_mtu == 1500
    assert [(p.subnet, p.lab_address) for p in nets["a"].peers] == [("10.42.1.0/24", "10.250.0.15"),
                                                                    ("10.42.2.0/24", "10.250.0.16")]


def test_vtep_macs_are_unicast_locally_administered_and_distinct() -> None:
    macs = {flannel.vtep_mac(str(a)) for a in ipaddress.ip_network("10.250.0.0/24").hosts()}
    assert len(macs) == 254
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert (first & 0x01, first & 0x02) == (0, 0x02)  # unicast, locally administered (flannel's rule)
    assert flannel.vtep_mac("10.250.0.10") == flannel.vtep_mac("10.250.0.10")


def test_pod_mtu_is_flannels_rule() -> None:
    assert flannel.pod_mtu("vxlan", 1500) == 1450 and flannel.pod_mtu("vxlan", 9000) == 8950
    assert flannel.pod_mtu("host-gw", 1500) == 1500


def test_bad_plans_are_refused() -> None:
    members = three_nodes()
    with pytest.raises(flannel.FlannelError, match="udp"):
        flannel.plan(members, "udp")
    clash = [members[0], flannel.Member("d", "10.250.0.99", members[0].pod_subnet)]
    with pytest.raises(flannel.FlannelError, match="pod subnet"):
        flannel.plan(clash)


def test_spec_names_a_bad_backend() -> None:
    with pytest.raises(SpecError, match=r"clusters\['c1'\].flannel_backend 'wireguard'"):
        EmbeddedEnv(clusters=(ClusterSpec("c1", (VmSpec("a"),), flannel_backend="wireguard"),))


def test_cluster_plans_its_nodes_and_gives_pods_flannels_mtu() -> None:
    spec = ClusterSpec("c1", (VmSpec("a"), VmSpec("b")))
    nodes = [cluster.Node(Vm(v.name, i), {}, s) for i, (v, s) in enumerate(zip(spec.vms, spec.pod_subnets().values()))]
    c = cluster.Cluster(spec, nodes, tuning=None, binaries=None, images=None, supervisor=None)  # type: ignore[arg-type]
    assert [p.name for p in c.pod_network["a"].peers] == ["b"]
    assert c.pod_network["b"].device is not None and c.pod_network["b"].device.local == "10.250.0.11"
    bridge = json.loads(cluster.cni_config("10.42.0.0/24", c.pod_network["a"].pod_mtu))["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["mtu"] == 1450
