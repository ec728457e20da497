"""Workload manifests: rendered from the topology, valid for the kubernetes client's OpenAPI models."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from labkit import images
from labkit.config import load_env
from labkit.topology import Plan, plan
from labkit.workloads import Images, ManifestError, by_cluster, check, check_all, render, timers, to_yaml

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def thesis() -> Plan:
    return plan(load_env("thesis"))


def _find(manifests: list[Any], kind: str, name: str) -> dict[str, Any]:
    return next(dict(m.obj) for m in manifests if m.kind == kind and m.name == name)


@pytest.mark.parametrize("name", ["thesis", "region", "multilevel"])
def test_every_object_of_every_env_matches_its_openapi_model(name: str) -> None:
    manifests = render(plan(load_env(name)))
    assert check_all(manifests) == len(manifests) > 10


def test_thesis_objects_live_in_the_root_and_cover_the_chain(thesis: Plan) -> None:
    manifests = render(thesis)
    assert set(by_cluster(manifests)) == {"root"}
    kinds = [(m.kind, m.name) for m in manifests]
    for expected in [("Namespace", "test"), ("NamespaceOffloading", "offloading"), ("StatefulSet", "pdc-config-galera"),
                     ("Deployment", "pmu-1"), ("Deployment", "pdc-low"), ("Deployment", "pdc-high"),
                     ("Deployment", "se"), ("Service", "pdc-config-galera-peers"), ("ConfigMap", "pdc-low-config")]:
        assert expected in kinds
    assert kinds[0] == ("Namespace", "test")


def test_deployment_carries_the_topology_affinity_probe_and_image(thesis: Plan) -> None:
    deployment = _find(render(thesis), "Deployment", "pdc-low")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["affinity"] == thesis.affinity(thesis.env.grid.pdcs[0].placement)
    (container,) = pod["containers"]
    assert container["image"] == images.image_ref("runtime")  # the image the kit builds and imports
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["python", "-m", "labkit.grid.pdc"]
    assert container["livenessProbe"]["exec"]["command"] == ["sh", "-c", "test ! -e /tmp/labkit-unhealthy"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 4712}
    toleration = {"key": "virtual-node.liqo.io/not-allowed", "operator": "Exists", "effect": "NoExecute"}
    assert toleration in pod["tolerations"]


def test_pdc_config_map_lists_its_inputs_and_database(thesis: Plan) -> None:
    config = yaml.safe_load(_find(render(thesis), "ConfigMap", "pdc-low-config")["data"]["config.yaml"])
    assert config["inputs"] == [{"name": "pmu-1", "idcode": 1, "host": "pmu-1.test.svc", "port": 4712}]
    assert config["db"]["host"] == "pdc-config-db.test.svc" and config["level"] == "low"
    high = yaml.safe_load(_find(render(thesis), "ConfigMap", "pdc-high-config")["data"]["config.yaml"])
    assert [i["name"] for i in high["inputs"]] == ["pdc-low"]


def test_galera_statefulset_spreads_over_the_db_domain(thesis: Plan) -> None:
    manifests = render(thesis, Images(runtime="r:1", galera="g:2"))
    sts = _find(manifests, "StatefulSet", "pdc-config-galera")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "pdc-config-galera-peers"
    affinity = sts["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "db.topology.labkit.io/pdc-config", "operator": "Exists"}]}]
    anti = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "topology.labkit.io/cluster"
    assert anti["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "g:2" and "command" not in container  # the image's entrypoint bootstraps
    env = {e["name"]: e for e in container["env"]}
    assert "POD_IP" not in env  # a virtual kubelet cannot resolve status.podIP; the entrypoint reads it
    assert env["GALERA_PEERS"]["value"].split(",") == [
        f"pdc-config-galera-{i}.pdc-config-galera-peers.test.svc" for i in range(3)]
    assert "Synced" in " ".join(container["readinessProbe"]["exec"]["command"])
    headless = _find(manifests, "Service", "pdc-config-galera-peers")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert headless["selector"] == sts["spec"]["selector"]["matchLabels"]
    cnf = _find(manifests, "ConfigMap", "pdc-config-galera-config")["data"]["galera.cnf"]
    assert "gcomm://pdc-config-galera-0.pdc-config-galera-peers.test.svc," in cnf
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/var/lib/mysql"


def test_galera_spreading_is_preferred_when_a_domain_has_fewer_clusters_than_replicas(thesis: Plan) -> None:
    from labkit.config import DbDomain
    from labkit.workloads.render import database

    crowded = DbDomain(name="pdc-config", members=["leaf-1", "leaf-2"], namespace="test", replicas=3)
    sts = _find(database(thesis, crowded, Images(runtime="r:1", galera="g:2")), "StatefulSet", "pdc-config-galera")
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(anti) == ["preferredDuringSchedulingIgnoredDuringExecution"]


def test_pdc_database_entry_names_the_client_service_and_reader(thesis: Plan) -> None:
    config = yaml.safe_load(_find(render(thesis), "ConfigMap", "pdc-high-config")["data"]["config.yaml"])
    assert config["db"] == {"host": "pdc-config-db.test.svc", "port": 3306, "database": "labkit", "user": "pdc"}
    client = _find(render(thesis), "Service", "pdc-config-db")["spec"]
    assert "clusterIP" not in client and client["ports"][0]["port"] == 3306


def test_multilevel_objects_go_to_the_owner_of_each_level() -> None:
    manifests = render(plan(load_env("multilevel")))
    owner = {(m.kind, m.name): m.cluster for m in manifests}
    assert owner[("Deployment", "pdc-low")] == "p-1" and owner[("Deployment", "pdc-high")] == "acc"
    assert owner[("StatefulSet", "low-2-galera")] == "p-2" and owner[("StatefulSet", "high-1-galera")] == "acc"
    assert _find(manifests, "Deployment", "pdc-high")["metadata"]["namespace"] == "high-1"


def test_yaml_stream_round_trips(thesis: Plan) -> None:
    manifests = render(thesis)
    assert [d["kind"] for d in yaml.safe_load_all(to_yaml(manifests))] == [m.kind for m in manifests]


# --------------------------------------------------------------------------- the check catches mistakes

def _broken(thesis: Plan, kind: str, name: str, edit: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_find(render(thesis), kind, name))
    edit(obj)
    return obj


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(("kind", "name", "edit", "words"), [
    ("Deployment", "pmu-1", lambda o: _container(o).update(livenesProbe={}), "livenesProbe (unknown field)"),
    ("Deployment", "pmu-1", lambda o: o["spec"].update(replicas="one"), "valid integer"),
    ("Deployment", "pmu-1", lambda o: _container(o).pop("name"), "V1Container"),
    ("Service", "pmu-1", lambda o: o["spec"]["ports"][0].update(port="x"), "valid integer"),
    ("StatefulSet", "pdc-config-galera", lambda o: o["spec"].update(replica=3), "spec.replica (unknown field)"),
    ("NamespaceOffloading", "offloading", lambda o: o["spec"].update(podOffloadingStrategy="Everywhere"),
     "not one of"),
    ("NamespaceOffloading", "offloading", lambda o: o["spec"].update(selector={}), "unknown spec field"),
    ("NamespaceOffloading", "offloading",
     lambda o: o["spec"]["clusterSelector"]["nodeSelectorTerms"][0].update(matchExpression=[]), "unknown field"),
], ids=["typo", "wrong-type", "missing-name", "service-port", "sts-typo", "offloading-value", "offloading-key",
        "offloading-selector"])
def test_check_names_the_object_and_field(thesis: Plan, kind: str, name: str, edit: Any, words: str) -> None:
    obj = _broken(thesis, kind, name, edit)
    with pytest.raises(ManifestError) as info:
        check(obj)
    assert words in str(info.value)
    assert str(info.value).startswith(f"{kind}/")


def test_unknown_kind() -> None:
    with pytest.raises(ManifestError, match="no Kubernetes model for v1/Gadget"):
        check({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}})


def test_database_experiment_stores_the_rendered_pdc_configs(thesis: Plan) -> None:
    from labkit.deploy.database import DatabaseError, domain_of, manifests, pdc_configs
    from labkit.grid.pdc_config import config_sql

    cfgs = {c.name: c for c in pdc_configs(thesis, "pdc-config")}
    assert set(cfgs) == {"pdc-low", "pdc-high"} and cfgs["pdc-high"].idcode == 201
    assert [i.host for i in cfgs["pdc-low"].inputs] == ["pmu-1.test.svc"]
    script = config_sql(list(cfgs.values()))
    assert "REPLACE INTO pdc" in script and "'pdc-low'" in script and script.endswith("COMMIT;")
    objects = manifests(thesis, domain_of(thesis, "pdc-config"), Images(runtime="r:1", galera="g:2"))
    assert [m.kind for m in objects] == ["ConfigMap", "Service", "Service", "StatefulSet"]
    assert {m.cluster for m in objects} == {"root"}
    with pytest.raises(DatabaseError, match=r"no DB domain 'nope'; db_domains: \['pdc-config'\]"):
        domain_of(thesis, "nope")


def test_state_estimator_addresses_its_commands_to_the_high_pdc_stream(thesis: Plan) -> None:
    """A C37.118 server obeys only commands carrying its own IDCODE (C37.118.2-2011, 6.2)."""
    (container,) = _find(render(thesis), "Deployment", "se")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    high = next(p for p in thesis.env.grid.pdcs if p.level == "high")
    assert args[args.index("--idcode") + 1] == str(high.idcode)


# --------------------------------------------------------------------------- timer profiles


def _pdc_low(manifests: list[Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The low PDC's pod spec, container and rendered config file."""
    pod = _find(manifests, "Deployment", "pdc-low")["spec"]["template"]["spec"]
    config = yaml.safe_load(_find(manifests, "ConfigMap", "pdc-low-config")["data"]["config.yaml"])
    return pod, pod["containers"][0], config


def test_the_thesis_profile_renders_kubernetes_1_24_defaults(thesis: Plan) -> None:
    pod, container, config = _pdc_low(render(thesis, timers=timers.THESIS))
    defaults = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                "failureThreshold": 3}
    assert {k: container["livenessProbe"][k] for k in defaults} == defaults
    assert {k: container["readinessProbe"][k] for k in defaults} == defaults
    assert pod["terminationGracePeriodSeconds"] == 30
    assert (config["backoff_min"], config["backoff_max"]) == (1.5, 1.5)      # openPDC's fixed 1.5 s


def test_the_fast_profile_renders_the_kits_timers_on_every_grid_pod(thesis: Plan) -> None:
    manifests = render(thesis, timers=timers.FAST)
    pod, container, config = _pdc_low(manifests)
    assert container["readinessProbe"]["periodSeconds"] == 1 and container["readinessProbe"]["initialDelaySeconds"] == 0
    assert container["livenessProbe"]["periodSeconds"] == 2
    assert pod["terminationGracePeriodSeconds"] == 5
    assert (config["backoff_min"], config["backoff_max"]) == (0.1, 0.1)
    for name in ("pmu-1", "pdc-high", "se"):   # the same timers on every pod of the chain
        spec = _find(manifests, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["containers"][0]["livenessProbe"]["periodSeconds"] == 2
        assert spec["terminationGracePeriodSeconds"] == 5
    galera = _find(manifests, "StatefulSet", "pdc-config-galera")["spec"]["template"]["spec"]
    assert galera["containers"][0]["livenessProbe"]["periodSeconds"] == 5   # the database keeps its own


def test_a_pdc_start_delay_reaches_the_pdcs_arguments_only(thesis: Plan) -> None:
    manifests = render(thesis, timers=timers.Timers(pdc_start_delay_s=5.0))
    _, container, _ = _pdc_low(manifests)
    assert container["args"] == ["--config", "/etc/labkit/config.yaml", "--start-delay", "5"]
    pmu = _find(manifests, "Deployment", "pmu-1")["spec"]["template"]["spec"]["containers"][0]
    assert "--start-delay" not in pmu["args"]
    assert _pdc_low(render(thesis))[1]["args"] == ["--config", "/etc/labkit/config.yaml"]


def test_no_readiness_probe_when_a_profile_drops_it(thesis: Plan) -> None:
    _, container, _ = _pdc_low(render(thesis, timers=timers.Timers(readiness_probe=False)))
    assert "readinessProbe" not in container
    assert check_all(render(thesis, timers=timers.Timers(readiness_probe=False))) > 10


def test_every_profile_field_says_why_and_where_from() -> None:
    table = timers.profiles_table()
    assert set(table["thesis source"]) == {"software default", "kit"}   # the thesis names none of these timers
    k8s = table[table["thesis source"] == "software default"]
    assert k8s.index.str.startswith(("liveness", "readiness", "termination", "pdc")).all()
    assert k8s["thesis why"].str.contains(r"\.(?:go|cs)[:\s(]", regex=True).all(), "each default cites its source file"
    assert (table["fast source"] == "kit").sum() >= 6


@pytest.mark.parametrize("cycle_s, restarts", [(5.0, 2), (13.0, 3), (35.0, 4), (85.0, 6), (200.0, 7)])
def test_restarts_without_backoff_follows_the_kubelets_doubling(cycle_s: float, restarts: int) -> None:
    assert timers.restarts_without_backoff(cycle_s) == restarts


def test_a_cycle_beyond_the_cap_never_meets_the_backoff() -> None:
    assert timers.restarts_without_backoff(300.0) == float("inf")
    with pytest.raises(ValueError, match="cycle_s"):
        timers.restarts_without_backoff(0.0)
