"""Pure parts of the kit's Liqo: offloading rules, manifests, timers, tunnel addressing."""

from __future__ import annotations

import pytest

from labkit.testbed.embedded.liqo import crds, offloading, peering, wireguard

pytestmark = pytest.mark.unit


def test_mapping_strategies() -> None:
    assert offloading.remote_name("work", "root", "DefaultName") == "work-root"
    assert offloading.remote_name("work", "root", "EnforceSameName") == "work"


def test_cluster_selector_matches_virtual_node_labels() -> None:
    leaf = {"liqo.io/type": "virtual-node", "topology.labkit.io/role": "leaf"}
    assert offloading._matches(None, leaf)
    terms = [{"matchExpressions": [{"key": "topology.labkit.io/role", "operator": "In", "values": ["leaf"]}]}]
    assert offloading._matches(terms, leaf)
    assert not offloading._matches(terms, {"topology.labkit.io/role": "root"})


def test_pod_constraints_per_strategy() -> None:
    assert offloading.pod_constraints("Local") == {}
    remote = offloading.pod_constraints("Remote")
    terms = remote["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "liqo.io/type", "operator": "In", "values": ["virtual-node"]}]}]
    both = offloading.pod_constraints("LocalAndRemote")
    terms = both["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert len(terms) == 2 and both["tolerations"][0]["key"] == "virtual-node.liqo.io/not-allowed"
    with pytest.raises(offloading.OffloadingError):
        offloading.pod_constraints("Anywhere")


def test_virtual_kubelet_flags_have_liqo_defaults() -> None:
    flags = peering.VkTimers().flags()
    assert "--node-ping-interval=10.0s" in flags and "--node-ping-timeout=1.0s" in flags
    assert "--node-lease-duration=40s" in flags and "--node-check-network=true" in flags


def test_vk_deployment_runs_in_tenant_namespace_with_provider_labels() -> None:
    dep = peering.vk_deployment("root", "leaf1", "labkit.local/vk:x", {"a": "b"}, peering.VkTimers(), "10.250.0.10")
    spec = dep["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    assert "--nodename=liqo-leaf1" in args and "--tenant-namespace=liqo-tenant-leaf1" in args
    assert "--node-extra-labels=a=b" in args
    assert spec["containers"][0]["imagePullPolicy"] == "Never"
    assert peering.tenant_namespace("leaf1") == "liqo-tenant-leaf1"


def test_crds_are_liqo_groups() -> None:
    names = {c["metadata"]["name"] for c in crds.all_crds()}
    assert names == {"tunnelendpoints.net.liqo.io", "namespaceoffloadings.offloading.liqo.io"}


def test_tunnel_inner_addresses_are_disjoint() -> None:
    assert wireguard.inner_addresses(0) == ("169.254.100.1/30", "169.254.100.2/30")
    assert wireguard.inner_addresses(1) == ("169.254.100.5/30", "169.254.100.6/30")
    with pytest.raises(wireguard.WireGuardError):
        wireguard.inner_addresses(10_000)


def test_nat_external_cidrs_avoid_taken_ranges() -> None:
    from labkit.testbed.embedded.liqo import nat
    assert nat.overlaps("10.42.0.0/16", "10.42.3.0/24")
    assert nat.allocate("10.42.0.0/16", ["10.42.0.0/16", "10.200.0.0/16"]) == "10.201.0.0/16"
    rules = nat.ruleset("lkt-wg0", "10.42.0.0/16", "10.201.0.0/16")
    assert 'iifname "lkt-wg0" ip daddr 10.201.0.0/16 dnat ip prefix to 10.42.0.0/16' in rules
    assert 'oifname "lkt-wg0" ip saddr 10.42.0.0/16 snat ip prefix to 10.201.0.0/16' in rules
