"""Peering formulas (eq. 5.1), CIDR allocation, labels/selectors, and properties over synthetic regions."""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.config import Placement, _check_labels, load_env
from labkit.topology import examples, peering, plan
from labkit.topology import labels as L

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("n", "star", "mesh"), [(1, 0, 0), (2, 1, 1), (4, 3, 6), (5, 4, 10), (5000, 4999, 12497500)])
def test_link_formulas(n: int, star: int, mesh: int) -> None:
    assert peering.star_links(n) == star
    assert peering.full_mesh_links(n) == mesh


@pytest.mark.parametrize("n", [2, 5, 21, 22, 50, 101])
def test_partial_mesh_star_formula_matches_the_planned_region(n: int) -> None:
    leaves = n - 1
    primaries = math.ceil(leaves / 20)
    planned = plan(examples.region(primaries, leaves - primaries))
    assert len(planned.peerings) == peering.partial_mesh_star_links(n, 20)


def test_examples_of_figures_5_2_and_5_3() -> None:
    independent = plan(examples.independent_groups())
    assert independent.cluster_labels["leaf-c"][L.group_key("group-1")] == "member"
    assert independent.cluster_labels["leaf-c"][L.group_key("group-2")] == "member"  # in two groups
    assert len(independent.links("mesh")) == 3
    dependent = plan(examples.dependent_groups())
    assert dependent.cluster_labels["leaf-d"][L.hierarchy_key("area")] == "south"
    assert dependent.cluster_labels["leaf-d"][L.hierarchy_key("voltage")] == "hv"
    assert len(dependent.links("mesh")) == 15  # worst case: every leaf in one DB domain


def test_thousand_clusters_get_smaller_distinct_blocks() -> None:
    big = plan(examples.region(50, 949))
    pods = [c.pod for c in big.cidrs.values()]
    assert len(set(pods)) == 1000 and {p.prefixlen for p in pods} == {20}  # /16 blocks would not fit in the /10
    assert all(p.subnet_of(ipaddress.IPv4Network("100.64.0.0/10")) for p in pods)  # type: ignore[arg-type]


def test_every_label_is_a_valid_kubernetes_label() -> None:
    for name in ("thesis", "region", "multilevel"):
        result = plan(load_env(name))
        for labels in [*result.cluster_labels.values(), *(v.labels for v in result.virtual_nodes)]:
            _check_labels(dict(labels))


def test_selector_terms_and_liqoctl_strings() -> None:
    env = examples.dependent_groups()
    terms = L.selector_terms(env, clusters=["leaf-a", "leaf-b"], groups=["north"], domains=["db"])
    assert terms == [{"matchExpressions": [{"key": L.hierarchy_key("area"), "operator": "In", "values": ["north"]}]},
                     {"matchExpressions": [{"key": L.db_key("db"), "operator": "Exists"}]},
                     {"matchExpressions": [{"key": L.CLUSTER, "operator": "In", "values": ["leaf-a", "leaf-b"]}]}]
    assert L.liqoctl_selectors(terms) == ["hierarchy.topology.labkit.io/area in (north)", "db.topology.labkit.io/db",
                                          "topology.labkit.io/cluster in (leaf-a,leaf-b)"]


@pytest.mark.parametrize(("labels", "expected"), [
    ({L.CLUSTER: "a"}, True), ({L.CLUSTER: "c", "x": "1"}, True), ({L.CLUSTER: "c"}, False), ({}, False)])
def test_matches(labels: dict[str, str], expected: bool) -> None:
    terms = [{"matchExpressions": [{"key": L.CLUSTER, "operator": "In", "values": ["a", "b"]}]},
             {"matchExpressions": [{"key": "x", "operator": "Exists"}, {"key": "y", "operator": "DoesNotExist"}]}]
    assert L.matches(labels, terms) is expected
    assert L.matches(labels, [])


def test_empty_placement_has_no_affinity_and_preferences_decrease() -> None:
    env = examples.region(1, 12)
    assert L.node_affinity(env, Placement()) is None
    affinity = L.node_affinity(env, Placement(prefer=[f"s-{i}" for i in range(1, 13)]))
    assert affinity is not None and "requiredDuringSchedulingIgnoredDuringExecution" not in affinity
    weights = [p["weight"] for p in affinity["preferredDuringSchedulingIgnoredDuringExecution"]]
    assert weights == sorted(weights, reverse=True) and min(weights) == 1 and weights[0] == 100


@settings(max_examples=40, deadline=None)
@given(primaries=st.integers(1, 6), secondaries=st.integers(0, 30),
       implementation=st.sampled_from(["logical-domains", "multi-level"]), databases=st.booleans())
def test_properties_of_synthetic_regions(primaries: int, secondaries: int, implementation: str,
                                         databases: bool) -> None:
    result = plan(examples.region(primaries, secondaries, implementation, databases))  # type: ignore[arg-type]
    pairs = {link.pair for link in result.peerings}
    for domain in result.env.db_domains:
        members = domain.members
        assert all(frozenset((a, b)) in pairs for i, a in enumerate(members) for b in members[i + 1:])
        pods = [result.cidrs[m].pod for m in members]
        assert all(not a.overlaps(b) for i, a in enumerate(pods) for b in pods[i + 1:])
    assert sum(result.virtual_nodes_per_cluster.values()) == len(result.peerings) == len(result.virtual_nodes)
    assert len({(link.consumer, link.provider) for link in result.peerings}) == len(result.peerings)
    star = {link.provider for link in result.links("star")}
    expected = {c.name for c in result.env.clusters if c.role == "primary" or implementation == "logical-domains"}
    assert star == expected - {"acc"}
    for offload in result.offloads:  # offloads follow peerings
        assert set(offload.providers) <= set(result.providers(offload.consumer))
