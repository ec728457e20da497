"""labkit.config: the shipped envs load, and bad files fail with one clear error each."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import paths
from labkit.config import ConfigError, Env, load_env, validate_env

pytestmark = pytest.mark.unit

THESIS = yaml.safe_load((paths.envs_dir() / "thesis.yaml").read_text())


def thesis() -> dict[str, Any]:
    """A fresh copy of the thesis env as a mapping."""
    return copy.deepcopy(THESIS)


@pytest.mark.parametrize("name", sorted(p.stem for p in paths.envs_dir().glob("*.yaml")))
def test_every_shipped_env_loads(name: str) -> None:
    env = load_env(name)
    assert isinstance(env, Env)
    assert env.root.role == "acc"


def test_thesis_env_matches_the_thesis_test_bed() -> None:
    env = load_env("thesis")
    assert [c.name for c in env.clusters] == ["root", "leaf-1", "leaf-2", "leaf-3", "leaf-4"]
    assert all(len(c.nodes) == 1 for c in env.clusters)  # one single-node cluster per VM
    assert env.tuning.kubelet.node_status_update_frequency_s == 5  # Table 7.1
    assert env.tuning.controller_manager.node_monitor_grace_period_s == 20
    assert env.tuning.controller_manager.pod_eviction_timeout_s == 5


def test_extends_merges_mappings_and_overrides() -> None:
    env = load_env("crownlabs")
    assert env.backend.kind == "vms"
    assert [c.name for c in env.clusters] == [c.name for c in load_env("thesis").clusters]
    over = load_env("thesis", overrides={"tuning": {"kubelet": {"node_status_update_frequency_s": 10}}})
    assert over.tuning.kubelet.node_status_update_frequency_s == 10
    assert over.tuning.controller_manager.node_monitor_grace_period_s == 20


def _mutate(path: str, value: Any) -> dict[str, Any]:
    """The thesis env with one field set (dotted path, list indices as numbers)."""
    raw = thesis()
    node: Any = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return raw


_DELETE = object()

BAD_INPUTS = [
    # (id, mutation, expected path in the message, expected words)
    ("missing-field", ("clusters.1.role", _DELETE), "clusters[1] (leaf-1).role", "Field required"),
    ("missing-clusters", ("clusters", _DELETE), "clusters", "Field required"),
    ("wrong-type", ("seed", "many"), "seed", "valid integer"),
    ("wrong-role", ("clusters.2.role", "boss"), "clusters[2] (leaf-2).role", "'acc', 'primary' or 'secondary'"),
    ("bad-cidr", ("clusters.2.pod_cidr", "10.42.0.0/33"), "clusters[2] (leaf-2).pod_cidr", "IPv4 network"),
    ("host-bits-cidr", ("clusters.2.pod_cidr", "10.42.0.1/16"), "clusters[2] (leaf-2).pod_cidr", "IPv4 network"),
    ("negative-duration", ("tuning", {"kubelet": {"node_status_update_frequency_s": -5}}),
     "tuning.kubelet.node_status_update_frequency_s", "greater than 0"),
    ("zero-duration", ("tuning", {"liqo": {"gateway_ping_interval_s": 0}}),
     "tuning.liqo.gateway_ping_interval_s", "greater than 0"),
    ("grace-below-update", ("tuning", {"controller_manager": {"node_monitor_grace_period_s": 4}}),
     "tuning", "must exceed"),
    ("unknown-field", ("clusters.0.colour", "red"), "clusters[0] (root).colour", "unknown field"),
    ("bad-name", ("clusters.3.name", "Leaf_3"), "clusters[3] (Leaf_3).name", "pattern"),
    ("bad-label", ("clusters.0.labels", {"bad key!": "x"}), "clusters[0] (root).labels", "label key"),
    ("unknown-backend", ("backend", {"kind": "cloud"}), "backend", "does not match any of the expected tags"),
    ("overlapping-pod-service", ("clusters.1", {"name": "leaf-1", "role": "primary", "pod_cidr": "10.0.0.0/16",
                                                "service_cidr": "10.0.1.0/24"}), "clusters[1] (leaf-1)", "overlaps"),
    ("bad-fps", ("grid.fps", 31), "grid.fps", "30"),
    ("bad-idcode", ("grid.pmus.0.idcode", 0), "grid.pmus[0] (pmu-1).idcode", "greater than or equal to 1"),
]

REFERENCE_ERRORS = [
    ("unknown-cluster-in-group", ("groups.0.members", ["leaf-1", "leaf-9"]), "groups[0].members[1]",
     "unknown cluster 'leaf-9'"),
    ("unknown-cluster-in-db-domain", ("db_domains.0.members", ["leaf-1", "nowhere"]), "db_domains[0].members[1]",
     "unknown cluster 'nowhere'"),
    ("unknown-group-in-offload", ("offloading.0.groups", ["domain-z"]), "offloading[0].groups[0]",
     "unknown group 'domain-z'"),
    ("unknown-consumer", ("offloading.0.consumer", "acc"), "offloading[0].consumer", "unknown cluster 'acc'"),
    ("duplicate-cluster", ("clusters.4.name", "leaf-3"), "clusters", "duplicate cluster name 'leaf-3'"),
    ("two-roots", ("clusters.1.role", "acc"), "clusters", "exactly one cluster with role 'acc'"),
    ("unknown-pdc-input", ("grid.pdcs.0.inputs", ["pmu-7"]), "grid.pdcs[0].inputs[0]", "unknown PMU 'pmu-7'"),
    ("duplicate-idcode", ("grid.pdcs.1.idcode", 101), "grid", "duplicate idcode '101'"),
    ("unknown-placement", ("grid.pmus.0.placement", {"prefer": ["leaf-7"]}), "grid.pmus[0].placement.prefer[0]",
     "unknown cluster 'leaf-7'"),
    ("unknown-peering", ("peerings", [{"consumer": "root", "provider": "leaf-8"}]), "peerings[0].provider",
     "unknown cluster 'leaf-8'"),
]


@pytest.mark.parametrize(("case", "mutation", "where", "words"), BAD_INPUTS + REFERENCE_ERRORS,
                         ids=[c[0] for c in BAD_INPUTS + REFERENCE_ERRORS])
def test_bad_input_names_file_field_and_expectation(case: str, mutation: tuple[str, Any], where: str,
                                                    words: str) -> None:
    raw = _mutate(*mutation)
    with pytest.raises(ConfigError) as info:
        validate_env(raw, source="envs/bad.yaml")
    text = str(info.value)
    assert text.startswith("envs/bad.yaml: "), text
    assert any(p.path == where for p in info.value.problems), (where, text)
    assert words in text, text


def test_all_problems_of_a_file_are_reported_together() -> None:
    raw = _mutate("seed", "x")
    raw["clusters"][1]["pod_cidr"] = "nope"
    with pytest.raises(ConfigError) as info:
        validate_env(raw, source="f.yaml")
    assert len(info.value.problems) == 2
    assert "f.yaml: 2 problems" in str(info.value)


def test_self_peering_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot peer with itself"):
        validate_env(_mutate("peerings", [{"consumer": "leaf-1", "provider": "leaf-1"}]))


def test_missing_file_lists_known_envs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\n")
    with pytest.raises(ConfigError, match=r"file not found \(envs here: a\)"):
        load_env(tmp_path / "b.yaml")


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_env(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_env(bad)


def test_circular_extends(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a\nname: b\n")
    with pytest.raises(ConfigError, match="circular extends: a.yaml -> b.yaml -> a.yaml"):
        load_env(tmp_path / "a.yaml")


def test_extends_of_a_copy_outside_envs_finds_the_kits_env(tmp_path: Path) -> None:
    """README: a copy of envs/crownlabs.yaml kept elsewhere still extends the kit's thesis."""
    copy_ = tmp_path / "my-vms.yaml"
    copy_.write_text((paths.envs_dir() / "crownlabs.yaml").read_text())
    assert load_env(copy_).clusters == load_env("crownlabs").clusters


def test_extends_prefers_the_file_next_to_the_child(tmp_path: Path) -> None:
    (tmp_path / "thesis.yaml").write_text(yaml.safe_dump({**thesis(), "name": "local-thesis"}))
    (tmp_path / "child.yaml").write_text("extends: thesis\n")
    assert load_env(tmp_path / "child.yaml").name == "local-thesis"


def test_extends_missing_names_both_places(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("extends: nowhere\nname: child\n")
    with pytest.raises(ConfigError) as err:
        load_env(tmp_path / "child.yaml")
    text = str(err.value)
    assert f"no nowhere.yaml in {tmp_path.resolve()} nor in {paths.envs_dir().resolve()}" in text
    assert str(tmp_path / "child.yaml") in text


def test_default_node_per_cluster_and_immutability() -> None:
    env = load_env("thesis")
    assert env.cluster("leaf-2").nodes[0].name == "leaf-2"
    with pytest.raises(Exception):
        env.cluster("leaf-2").name = "x"  # type: ignore[misc]
    with pytest.raises(KeyError, match="no cluster 'leaf-9'"):
        env.cluster("leaf-9")
