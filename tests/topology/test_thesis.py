"""The thesis test bed (Fig. 7.1, 7.1.4): root offloads to the 4 leaves; the leaves are in full mesh."""

from __future__ import annotations

import pytest

from labkit.config import load_env
from labkit.topology import Plan, plan
from labkit.topology import labels as L

pytestmark = pytest.mark.unit

LEAVES = ["leaf-1", "leaf-2", "leaf-3", "leaf-4"]


@pytest.fixture(scope="module")
def thesis() -> Plan:
    return plan(load_env("thesis"))


def test_root_peers_with_and_offloads_to_every_leaf(thesis: Plan) -> None:
    star = [(link.consumer, link.provider) for link in thesis.links("star")]
    assert star == [("root", leaf) for leaf in LEAVES]
    assert all(link.out_of_band for link in thesis.peerings)
    (offload,) = thesis.offloads
    assert (offload.namespace, offload.consumer, offload.providers) == ("test", "root", tuple(LEAVES))
    assert offload.pod_strategy == "Remote" and offload.mapping_strategy == "EnforceSameName"
    assert offload.cluster_selector == ({"matchExpressions": [
        {"key": "group.topology.labkit.io/domain-a", "operator": "Exists"}]},)


def test_leaves_form_a_unidirectional_full_mesh_of_six_links(thesis: Plan) -> None:
    mesh = thesis.links("mesh")
    assert len(mesh) == 6 == 4 * 3 // 2  # eq. 5.1 with N = 4
    assert {link.pair for link in mesh} == {frozenset((a, b)) for i, a in enumerate(LEAVES) for b in LEAVES[i + 1:]}
    assert all(link.reasons == ("mesh:pdc-config",) for link in mesh)
    assert len({(link.consumer, link.provider) for link in thesis.peerings}) == len(thesis.peerings) == 10
    assert not any("root" in link.pair for link in mesh)


def test_virtual_nodes_one_per_peering_in_the_consumer(thesis: Plan) -> None:
    assert dict(thesis.virtual_nodes_per_cluster) == {"root": 4, "leaf-1": 3, "leaf-2": 2, "leaf-3": 1, "leaf-4": 0}
    assert thesis.nodes_per_cluster()["root"] == 5
    root_nodes = [v for v in thesis.virtual_nodes if v.consumer == "root"]
    assert [v.name for v in root_nodes] == [f"liqo-{leaf}" for leaf in LEAVES]
    node = root_nodes[1]
    assert node.labels[L.LIQO_TYPE] == "virtual-node" and node.labels[L.LIQO_REMOTE_CLUSTER_ID] == "leaf-2"
    assert node.labels[L.CLUSTER] == "leaf-2" and node.labels[L.group_key("domain-a")] == "member"


def test_every_cluster_gets_a_distinct_pod_cidr(thesis: Plan) -> None:
    pods = [c.pod for c in thesis.cidrs.values()]
    assert all(not a.overlaps(b) for i, a in enumerate(pods) for b in pods[i + 1:])
    assert all(c.pod_source == "auto" and c.pod.prefixlen == 16 for c in thesis.cidrs.values())
    assert {str(c.service) for c in thesis.cidrs.values()} == {"10.43.0.0/16"}
    lab = thesis.env.backend.lab_cidr  # type: ignore[union-attr]
    assert not any(c.pod.overlaps(lab) for c in thesis.cidrs.values())


def test_labels_of_the_leaves(thesis: Plan) -> None:
    leaf = thesis.node_labels["leaf-1"]["leaf-1"]
    assert leaf == {"topology.labkit.io/site": "station-1", L.CLUSTER: "leaf-1", L.ROLE: "primary",
                    L.group_key("domain-a"): "member", L.db_key("pdc-config"): "member", L.NODE: "leaf-1"}
    assert L.group_key("domain-a") not in thesis.cluster_labels["root"]


def test_affinity_places_the_pdc_in_the_domain_preferring_its_leaf(thesis: Plan) -> None:
    pdc_low = thesis.env.grid.pdcs[0]
    assert thesis.affinity(pdc_low.placement) == {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "group.topology.labkit.io/domain-a", "operator": "Exists"}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": "topology.labkit.io/cluster", "operator": "In", "values": ["leaf-2"]}]}}]}}


def test_graph_and_namespaces(thesis: Plan) -> None:
    graph = thesis.graph()
    assert graph.number_of_nodes() == 5 and graph.number_of_edges() == 10
    assert graph.out_degree("root") == 4 and graph.in_degree("root") == 0
    assert thesis.namespaces("leaf-3") == ["test"] and thesis.namespaces("root") == ["test"]
    assert thesis.providers("leaf-2") == ["leaf-3", "leaf-4"] and thesis.consumers("leaf-2") == ["root", "leaf-1"]


@pytest.mark.parametrize("name", ["embedded", "crownlabs"])
def test_backends_of_the_thesis_share_its_plan(thesis: Plan, name: str) -> None:
    other = plan(load_env(name))
    assert other.peerings == thesis.peerings and dict(other.cidrs) == dict(thesis.cidrs)
