"""Every validation rule of the model fails with a clear error naming the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import paths
from labkit.config import ConfigError, Env, load_raw, validate_env
from labkit.topology import plan

pytestmark = pytest.mark.unit

MESH = [("leaf-1", "leaf-2"), ("leaf-1", "leaf-3"), ("leaf-1", "leaf-4"), ("leaf-2", "leaf-3"), ("leaf-2", "leaf-4"),
        ("leaf-3", "leaf-4")]
STAR = [("root", f"leaf-{i}") for i in range(1, 5)]


def raw_env(name: str) -> dict[str, Any]:
    """A fresh mapping of ``envs/<name>.yaml`` (``extends`` resolved)."""
    return load_raw(paths.envs_dir() / f"{name}.yaml")


def env_from(raw: dict[str, Any]) -> Env:
    """Validate a mapping as an env."""
    return validate_env(raw, source="<test>")


def _peerings(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"consumer": c, "provider": p} for c, p in pairs]


def _plan_error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        plan(env_from(raw))
    return info.value


def _assert_problem(err: ConfigError, path: str, *words: str) -> None:
    found = [p for p in err.problems if p.path == path]
    assert found, f"no problem at {path!r}: {err}"
    assert any(all(w in p.message for w in words) for p in found), str(err)


# --------------------------------------------------------------------------- unknown names (load time)

@pytest.mark.parametrize(("mutate", "path", "words"), [
    (lambda r: r["clusters"][2].update(parent="leaf-9"), "clusters[2] (leaf-2).parent", "unknown cluster 'leaf-9'"),
    (lambda r: r["groups"][0].update(main="leaf-9"), "groups[0] (domain-a)", "not a member"),
    (lambda r: r["grid"]["pdcs"][0]["placement"].update(domains=["db-x"]), "grid.pdcs[0].placement.domains[0]",
     "unknown db domain 'db-x'"),
    (lambda r: r["offloading"][0].update(clusters=["leaf-7"]), "offloading[0].clusters[0]", "unknown cluster"),
    (lambda r: r["groups"][0].update(members=["leaf-1", "nowhere"]), "groups[0].members[1]", "unknown cluster"),
], ids=["parent", "group-main", "placement-domain", "offload-cluster", "group-member"])
def test_unknown_names_are_refused_when_loading(mutate: Any, path: str, words: str) -> None:
    raw = raw_env("thesis")
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        env_from(raw)
    _assert_problem(info.value, path, words)


# --------------------------------------------------------------------------- CIDRs

def test_overlapping_pod_cidrs_inside_a_db_domain() -> None:
    raw = raw_env("thesis")
    raw["clusters"][1]["pod_cidr"] = "10.42.0.0/16"
    raw["clusters"][3]["pod_cidr"] = "10.42.128.0/17"
    err = _plan_error(raw)
    _assert_problem(err, "db_domains[0] (pdc-config)", "overlapping pod CIDRs", "leaf-1", "leaf-3", "distinct")


def test_pod_cidr_overlapping_a_peer_service_cidr_inside_a_db_domain() -> None:
    raw = raw_env("thesis")
    raw["clusters"][1]["pod_cidr"] = "10.43.0.0/17"
    raw["clusters"][1]["service_cidr"] = "10.96.0.0/16"
    _assert_problem(_plan_error(raw), "db_domains[0] (pdc-config)", "overlaps the service CIDR of leaf-2")


def test_auto_cidrs_avoid_explicit_ones() -> None:
    raw = raw_env("thesis")
    raw["clusters"][1]["pod_cidr"] = "100.65.0.0/16"
    result = plan(env_from(raw))
    assert result.cidrs["leaf-1"].pod_source == "file" and result.cidrs["leaf-2"].pod_source == "auto"
    pods = [c.pod for c in result.cidrs.values()]
    assert all(not a.overlaps(b) for i, a in enumerate(pods) for b in pods[i + 1:])


def test_the_owner_of_a_db_domains_namespace_needs_its_own_cidr() -> None:
    raw = raw_env("thesis")
    raw["clusters"][0]["pod_cidr"] = "10.65.0.0/16"  # root: no member, but it owns the namespace `test`
    raw["clusters"][1]["pod_cidr"] = "10.65.0.0/16"
    _assert_problem(_plan_error(raw), "db_domains[0] (pdc-config)", "overlapping pod CIDRs", "root")


def test_pod_cidr_on_the_lab_network() -> None:
    raw = raw_env("thesis")
    raw["clusters"][4]["pod_cidr"] = "10.250.0.0/16"
    _assert_problem(_plan_error(raw), "clusters[4] (leaf-4).pod_cidr", "lab network")


def test_pod_cidr_overlapping_the_shared_service_cidr() -> None:
    raw = raw_env("thesis")
    raw["clusters"][0]["pod_cidr"] = "10.43.0.0/20"
    _assert_problem(_plan_error(raw), "clusters[0] (root).pod_cidr", "overlaps the cluster's service CIDR")


def test_exhausted_pod_pool() -> None:
    raw = raw_env("thesis")
    raw["addressing"] = {"pod_pool": "10.64.0.0/23", "pod_prefix": 24}
    _assert_problem(_plan_error(raw), "addressing.pod_pool", "cannot hold", "5 cluster")


# --------------------------------------------------------------------------- offloading

def test_namespace_offloaded_twice_by_one_consumer() -> None:
    raw = raw_env("thesis")
    raw["offloading"].append({"namespace": "test", "consumer": "root", "clusters": ["leaf-1"]})
    _assert_problem(_plan_error(raw), "offloading[1]", "offloaded twice", "offloading[0]")


def test_namespace_reaching_a_cluster_from_two_consumers() -> None:
    raw = raw_env("thesis")
    raw["offloading"] = [{"namespace": "x", "consumer": "leaf-1", "clusters": ["leaf-3"]},
                         {"namespace": "x", "consumer": "leaf-2", "clusters": ["leaf-3"]}]
    raw["db_domains"], raw["grid"] = [], {}
    _assert_problem(_plan_error(raw), "offloading[1]", "from both 'leaf-1'", "one owner")


def test_reoffloading_an_offloaded_namespace_is_refused() -> None:
    raw = raw_env("thesis")
    raw["offloading"].append({"namespace": "test", "consumer": "leaf-1", "clusters": ["leaf-2"]})
    err = _plan_error(raw)
    _assert_problem(err, "offloading[1]", "does not re-offload", "one namespace per level", "'test-leaf-1'")


def test_circular_offloading() -> None:
    raw = raw_env("thesis")
    raw["offloading"] += [{"namespace": "a", "consumer": "leaf-1", "clusters": ["leaf-2"]},
                          {"namespace": "b", "consumer": "leaf-2", "clusters": ["leaf-3"]},
                          {"namespace": "c", "consumer": "leaf-3", "clusters": ["leaf-1"]}]
    _assert_problem(_plan_error(raw), "offloading[1]", "circular offloading", "leaf-1 -> leaf-2 -> leaf-3 -> leaf-1")


def test_offload_that_reaches_no_cluster() -> None:
    raw = raw_env("thesis")
    raw["offloading"].append({"namespace": "lonely", "consumer": "leaf-4"})  # leaf-4 consumes no peering
    _assert_problem(_plan_error(raw), "offloading[1]", "reaches no cluster")


def test_offload_without_a_peering_when_peerings_are_explicit() -> None:
    raw = raw_env("thesis")
    raw["peerings"] = _peerings(STAR[:3] + MESH)
    _assert_problem(_plan_error(raw), "offloading[0]", "does not peer with it", "root -> leaf-4")


# --------------------------------------------------------------------------- DB domains

def test_explicit_peerings_equal_to_the_derived_plan_are_accepted() -> None:
    raw = raw_env("thesis")
    raw["peerings"] = _peerings(STAR + MESH)
    result = plan(env_from(raw))
    assert [(p.consumer, p.provider) for p in result.peerings] == STAR + MESH
    assert all(p.reasons == ("explicit",) for p in result.peerings)


def test_db_domain_without_full_mesh() -> None:
    raw = raw_env("thesis")
    raw["peerings"] = _peerings(STAR + MESH[:-1] + [("leaf-4", "leaf-2")])  # leaf-3/leaf-4 unjoined; reversed ok
    _assert_problem(_plan_error(raw), "db_domains[0] (pdc-config)", "no full mesh", "leaf-3-leaf-4", "needs 6")


def test_duplicate_explicit_peering() -> None:
    raw = raw_env("thesis")
    raw["peerings"] = _peerings(STAR + MESH + [("leaf-1", "leaf-2")])
    _assert_problem(_plan_error(raw), "peerings", "leaf-1 -> leaf-2 is listed 2 times")


def test_db_namespace_missing_on_a_member() -> None:
    raw = raw_env("thesis")
    raw["offloading"][0] = {"namespace": "test", "consumer": "root", "clusters": ["leaf-1", "leaf-2", "leaf-3"]}
    _assert_problem(_plan_error(raw), "db_domains[0] (pdc-config).namespace", "not offloaded", "leaf-4")


# --------------------------------------------------------------------------- groups, levels, placement, scale

def test_dependent_groups_are_exclusive_within_a_hierarchy() -> None:
    raw = raw_env("thesis")
    raw["groups"] += [{"name": "north", "hierarchy": "area", "members": ["leaf-1", "leaf-2"]},
                      {"name": "south", "hierarchy": "area", "members": ["leaf-2", "leaf-3"]},
                      {"name": "hv", "hierarchy": "voltage", "members": ["leaf-2"]}]
    _assert_problem(_plan_error(raw), "groups[2] (south).members", "'leaf-2' is already in group 'north'", "'area'")


def test_labels_derived_by_the_model_cannot_be_set_by_hand() -> None:
    raw = raw_env("thesis")
    raw["clusters"][1]["labels"]["topology.labkit.io/role"] = "acc"
    raw["clusters"][2]["nodes"] = [{"name": "leaf-2", "labels": {"group.topology.labkit.io/domain-b": "member"}}]
    err = _plan_error(raw)
    _assert_problem(err, "clusters[1] (leaf-1).labels", "'topology.labkit.io/role' is derived")
    _assert_problem(err, "clusters[2] (leaf-2).nodes[0] (leaf-2).labels", "'group.topology.labkit.io/domain-b'")


def test_multi_level_needs_a_parent_primary() -> None:
    raw = raw_env("multilevel")
    del raw["clusters"][5]["parent"]
    raw["clusters"][6]["parent"] = "s-1-1"
    err = _plan_error(raw)
    _assert_problem(err, "clusters[5] (s-1-2).parent", "needs the primary station")
    _assert_problem(err, "clusters[6] (s-1-3).parent", "not a primary station")


def test_placement_selecting_no_host_of_its_namespace() -> None:
    raw = raw_env("thesis")
    raw["grid"]["pmus"][0]["placement"] = {"clusters": ["root"]}  # Remote: no pods on the ACC itself
    _assert_problem(_plan_error(raw), "grid.pmus[0] (pmu-1).placement", "selects no cluster", "'test'")


def test_virtual_nodes_beyond_the_kubernetes_node_limit() -> None:
    raw = raw_env("thesis")
    raw["clusters"][0]["nodes"] = [{"name": f"root-{i}"} for i in range(4996)]
    assert plan(env_from(raw)).nodes_per_cluster()["root"] == 5000  # 4,996 physical + 4 virtual: at the limit
    raw["clusters"][0]["nodes"].append({"name": "root-one-too-many"})
    _assert_problem(_plan_error(raw), "clusters[0] (root)", "5,001 nodes", "4,997 physical + 4 virtual",
                    "limit of 5,000")


def test_every_problem_is_reported_at_once_naming_the_env() -> None:
    raw = raw_env("thesis")
    raw["clusters"][1]["pod_cidr"] = raw["clusters"][2]["pod_cidr"] = "10.42.0.0/16"
    raw["offloading"].append({"namespace": "test", "consumer": "leaf-1", "clusters": ["leaf-2"]})
    err = _plan_error(raw)
    assert len(err.problems) >= 2
    assert str(err).startswith("env 'thesis': ")


def test_a_db_member_must_tell_its_peers_apart_from_the_other_members() -> None:
    raw = raw_env("multilevel")
    names = [c["name"] for c in raw["clusters"]]
    raw["clusters"][names.index("p-2")]["pod_cidr"] = "10.90.0.0/16"
    raw["clusters"][names.index("s-1-2")]["pod_cidr"] = "10.90.0.0/16"  # p-1 peers with both: its gateway remaps one
    _assert_problem(_plan_error(raw), "db_domains[3] (low-1)", "a peer of p-1", "through NAT")
