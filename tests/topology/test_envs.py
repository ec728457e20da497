"""The region (6.1) and multi-level (6.2) env files plan as the thesis describes."""

from __future__ import annotations

import pytest

from labkit.config import load_env
from labkit.topology import Plan, plan

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def region() -> Plan:
    return plan(load_env("region"))


@pytest.fixture(scope="module")
def multilevel() -> Plan:
    return plan(load_env("multilevel"))


def test_region_shape(region: Plan) -> None:
    roles = [c.role for c in region.env.clusters]
    assert roles.count("acc") == 1 and roles.count("primary") == 3 and roles.count("secondary") == 12
    assert len(region.env.db_domains) == 2


def test_region_acc_peers_with_all_and_each_db_domain_is_a_full_mesh(region: Plan) -> None:
    assert [link.provider for link in region.links("star")] == [c.name for c in region.env.clusters[1:]]
    mesh = region.links("mesh")
    assert len(mesh) == 2 * (5 * 4 // 2)
    assert not any(link.consumer.startswith("s-3") or link.provider.startswith("s-3") for link in mesh)  # no DB
    assert region.virtual_nodes_per_cluster["acc"] == 15
    assert len(region.peerings) == 15 + 20


def test_region_offloads_one_namespace_per_domain(region: Plan) -> None:
    assert [(o.namespace, o.providers[0], len(o.providers)) for o in region.offloads] == [
        ("domain-1", "p-1", 5), ("domain-2", "p-2", 5), ("domain-3", "p-3", 5)]


def test_region_pod_cidrs_all_distinct(region: Plan) -> None:
    pods = [c.pod for c in region.cidrs.values()]
    assert len(set(pods)) == len(pods) == 16


def test_multilevel_acc_peers_with_primaries_only(multilevel: Plan) -> None:
    assert [link.provider for link in multilevel.links("star")] == ["p-1", "p-2", "p-3"]
    assert multilevel.virtual_nodes_per_cluster["acc"] == 3
    assert all(link.consumer != "acc" or link.provider.startswith("p-") for link in multilevel.peerings)


def test_multilevel_second_stars(multilevel: Plan) -> None:
    backups = {(link.consumer, link.provider) for link in multilevel.links("backup")}
    assert backups == {("p-1", "p-2"), ("p-2", "p-3"), ("p-3", "p-1")}
    under = {(link.consumer, link.provider) for link in multilevel.links("jurisdiction")}
    assert under == {(c.parent, c.name) for c in multilevel.env.clusters if c.parent}
    low1 = [link for link in multilevel.peerings if "mesh:low-1" in link.reasons]
    assert len(low1) == 6  # 4 clusters: p-1 + 3 secondaries


def test_multilevel_uses_a_namespace_per_level(multilevel: Plan) -> None:
    owners = {o.namespace: o.consumer for o in multilevel.offloads}
    assert owners == {"high-1": "acc", "high-2": "acc", "high-3": "acc", "low-1": "p-1", "low-2": "p-2", "low-3": "p-3"}
    assert set(multilevel.namespaces("p-1")) == {"high-1", "high-3", "low-1"}


def test_multilevel_reuses_cidrs_across_domains_but_not_inside(multilevel: Plan) -> None:
    cidrs = multilevel.cidrs
    owners = {o.namespace: o.consumer for o in multilevel.offloads}
    for domain in multilevel.env.db_domains:
        pods = [cidrs[m].pod for m in {*domain.members, owners[domain.namespace]}]  # the owner's view is reflected
        assert len(set(pods)) == len(pods), domain.name
    pods = [c.pod for c in cidrs.values()]
    assert len(set(pods)) < len(pods)  # reused across second stars (6.2)


def test_multilevel_affinity_prefers_main_then_backup(multilevel: Plan) -> None:
    pdc_high = multilevel.env.grid.pdcs[1]
    preferred = multilevel.affinity(pdc_high.placement)["nodeAffinity"][  # type: ignore[index]
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert [(p["weight"], p["preference"]["matchExpressions"][0]["values"]) for p in preferred] == [
        (100, ["p-1"]), (90, ["p-2"])]
    assert multilevel.cluster_labels["p-1"]["group.topology.labkit.io/area-1"] == "main"
    assert multilevel.cluster_labels["p-1"]["group.topology.labkit.io/area-3"] == "backup"
