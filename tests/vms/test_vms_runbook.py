"""The VMs backend's runbook for the thesis env: what every host would run, in which order."""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from labkit.config import load_env
from labkit.testbed.base import TestbedError
from labkit.testbed.vms import dry_run, k3s, liqo, percona
from labkit.testbed.vms.commands import STAGING, Runbook, Put, Ref, Run, go_duration, render
from labkit.testbed.vms.options import VmsOptions
from labkit.testbed.vms.runbook import down_runbook, inventory, local_files, topology_plan, up_runbook
from labkit.topology.labels import liqoctl_selectors
from labkit.workloads import check

pytestmark = pytest.mark.unit

#: Paths of Liqo v0.10.2's chart values (deployments/liqo/values.yaml at the tag) that labkit sets.
LIQO_CHART_PATHS = {
    "discovery.config.clusterIDOverride", "controllerManager.pod.extraArgs", "gateway.config.wireguardImplementation",
    "gateway.pod.extraArgs", "virtualKubelet.extra.args",
}


@pytest.fixture(scope="module")
def env() -> Any:
    return load_env("crownlabs")


@pytest.fixture(scope="module")
def topo(env: Any) -> Any:
    return topology_plan(env)


@pytest.fixture(scope="module")
def plan(env: Any, topo: Any) -> Runbook:
    return up_runbook(env, topo)


def stage_index(plan: Runbook, name: str) -> int:
    return [s.name for s in plan.stages].index(name)


def config_of(plan: Runbook, host: str) -> dict[str, Any]:
    puts = [c for c in plan.for_host(host) if isinstance(c, Put) and c.remote.endswith("k3s-config.yaml")]
    assert len(puts) == 1
    return yaml.safe_load(puts[0].content or "")


def flags(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def leaves(paths: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in paths.items():
        where = f"{prefix}.{key}" if prefix else key
        out |= leaves(value, where) if isinstance(value, dict) else {where}
    return out


def round_trip(model: type, obj: Any) -> None:
    """The object parses into the client's model and serialises back unchanged."""
    back = client.ApiClient().sanitize_for_serialization(model.from_dict(obj))
    assert back == obj


# --------------------------------------------------------------------------- k3s


def test_every_host_gets_its_cidrs_labels_and_table_7_1_flags(env: Any, topo: Any, plan: Runbook) -> None:
    assert sorted(plan.hosts()) == sorted(h.node for h in env.backend.hosts)
    for cluster in env.clusters:
        node = cluster.nodes[0].name
        cfg = config_of(plan, node)
        assert cfg["cluster-cidr"] == str(topo.cidrs[cluster.name].pod)
        assert cfg["service-cidr"] == str(topo.cidrs[cluster.name].service)
        assert ipaddress.ip_address(cfg["cluster-dns"]) in topo.cidrs[cluster.name].service
        assert flags(cfg["node-label"]) == dict(topo.node_labels[cluster.name][node])
        assert cfg["node-name"] == node
        assert flags(cfg["kubelet-arg"]) == {"node-status-update-frequency": "5s"}
        assert flags(cfg["kube-controller-manager-arg"]) == {
            "node-monitor-grace-period": "20s", "node-monitor-period": "5s", "pod-eviction-timeout": "5s"}
        assert flags(cfg["kube-apiserver-arg"]) == {"default-not-ready-toleration-seconds": "5",
                                                     "default-unreachable-toleration-seconds": "5"}
        assert set(cfg) <= k3s.SERVER_KEYS
    pods = [topo.cidrs[c.name].pod for c in env.clusters]
    assert all(not a.overlaps(b) for i, a in enumerate(pods) for b in pods[i + 1:])


def test_flags_follow_env_tuning_not_literals() -> None:
    env = load_env("crownlabs", overrides={"tuning": {
        "kubelet": {"node_status_update_frequency_s": 2.5},
        "controller_manager": {"node_monitor_grace_period_s": 12, "pod_eviction_timeout_s": 7},
        "apiserver": {"default_not_ready_toleration_s": 3, "default_unreachable_toleration_s": 4},
        "liqo": {"gateway_ping_interval_s": 1.5, "node_ping_interval_s": 6}}})
    plan = up_runbook(env, topology_plan(env))
    cfg = config_of(plan, "leaf-2")
    assert flags(cfg["kubelet-arg"])["node-status-update-frequency"] == "2500ms"
    assert flags(cfg["kube-controller-manager-arg"])["node-monitor-grace-period"] == "12s"
    assert flags(cfg["kube-controller-manager-arg"])["pod-eviction-timeout"] == "7s"
    assert flags(cfg["kube-apiserver-arg"]) == {"default-not-ready-toleration-seconds": "3",
                                                 "default-unreachable-toleration-seconds": "4"}
    values = yaml.safe_load(next(c.content for c in plan.for_host("root")
                                 if isinstance(c, Put) and c.remote == liqo.VALUES) or "")
    assert "--gateway.ping-interval=1500ms" in values["gateway"]["pod"]["extraArgs"]
    assert "--node-ping-interval=6s" in values["virtualKubelet"]["extra"]["args"]


def test_k3s_is_installed_pinned_as_server_and_disables_unused_components(env: Any, plan: Runbook) -> None:
    installs = plan.runs("k3s.install")
    assert len(installs) == 5
    for run in installs:
        assert "INSTALL_K3S_VERSION=v1.24.17+k3s1" in run.argv and "INSTALL_K3S_EXEC=server" in run.argv
        assert run.argv[:2] == ("sudo", "-n")
    assert config_of(plan, "root")["disable"] == ["traefik", "servicelb"]
    downloads = plan.runs("k3s.download")
    assert all(r.argv[-1].endswith("/v1.24.17%2Bk3s1/install.sh") for r in downloads)


def test_k3s_version_is_configurable() -> None:
    env = load_env("crownlabs", overrides={"backend": {"k3s_version": "v1.25.16+k3s4"}})
    assert all("INSTALL_K3S_VERSION=v1.25.16+k3s4" in r.argv for r in up_runbook(env, topology_plan(env)).runs("k3s.install"))


def test_multi_node_cluster_joins_agents_with_the_servers_token() -> None:
    env = load_env("crownlabs", overrides={
        "clusters": [{"name": "root", "role": "acc"},
                     {"name": "leaf-1", "role": "primary", "nodes": [{"name": "leaf-1a"}, {"name": "leaf-1b"}]}],
        "groups": [], "db_domains": [], "offloading": [{"namespace": "test", "consumer": "root"}],
        "grid": {"pmus": [], "pdcs": []},
        "backend": {"hosts": [{"node": "root", "address": "192.0.2.10"}, {"node": "leaf-1a", "address": "192.0.2.11"},
                              {"node": "leaf-1b", "address": "192.0.2.12", "interface": "eth1"}]}})
    plan = up_runbook(env, topology_plan(env))
    assert stage_index(plan, "k3s.servers") < stage_index(plan, "k3s.tokens") < stage_index(plan, "k3s.agents")
    (agent,) = plan.runs("k3s.install")[-1:]
    assert agent.host == "leaf-1b" and "INSTALL_K3S_EXEC=agent" in agent.argv
    assert "K3S_URL=https://192.0.2.11:6443" in agent.argv
    assert Ref("k3s-token:leaf-1", "value", prefix="K3S_TOKEN=") in agent.argv
    cfg = config_of(plan, "leaf-1b")
    assert set(cfg) <= k3s.AGENT_KEYS and cfg["flannel-iface"] == "eth1"
    ready = [r for r in plan.runs("k3s.ready") if r.host == "leaf-1a"]
    assert [r.argv[-2] for r in ready] == ["node/leaf-1a", "node/leaf-1b"]
    labelled = [r for r in plan.runs("k3s.label") if r.host == "leaf-1a"]
    assert [r.argv[r.argv.index("node") + 1] for r in labelled] == ["leaf-1a", "leaf-1b"]
    assert "topology.labkit.io/node=leaf-1b" in labelled[1].argv and "--overwrite" in labelled[1].argv
    assert plan.check_refs() == []


# --------------------------------------------------------------------------- liqo


def test_stages_run_in_a_valid_order(plan: Runbook) -> None:
    order = ["preflight", "k3s.files", "k3s.servers", "k3s.ready", "k3s.kubeconfig", "images", "liqoctl",
             "liqo.install", "liqo.peer-info", "liqo.peer", "liqo.virtual-nodes", "liqo.offload", "percona"]
    assert [s.name for s in plan.stages] == order
    assert plan.check_refs() == []


def test_liqo_install_per_cluster_with_name_labels_cidrs_and_values(env: Any, topo: Any, plan: Runbook) -> None:
    for run in plan.runs("liqo.install"):
        args = list(run.argv)
        cluster = args[args.index("--cluster-name") + 1]
        assert args[args.index("install") + 1] == "k3s"
        assert args[args.index("--version") + 1] == "v0.10.2"
        assert args[args.index("--pod-cidr") + 1] == str(topo.cidrs[cluster].pod)
        assert args[args.index("--service-cidr") + 1] == str(topo.cidrs[cluster].service)
        labels = dict(kv.split("=", 1) for kv in args[args.index("--cluster-labels") + 1].split(","))
        assert labels == dict(topo.cluster_labels[cluster])
        address = inventory(env).host(cluster).address
        assert args[args.index("--api-server-url") + 1] == f"https://{address}:6443"
        assert args[args.index("--values") + 1] == liqo.VALUES
    assert len(plan.runs("liqo.install")) == len(env.clusters)


def test_liqo_values_carry_timers_wireguard_and_cluster_id(env: Any) -> None:
    values = liqo.values(env, "leaf-3")
    assert leaves(values) == LIQO_CHART_PATHS
    assert values["gateway"]["config"]["wireguardImplementation"] == "kernel"
    assert values["gateway"]["pod"]["extraArgs"] == ["--gateway.ping-interval=2s", "--gateway.ping-loss-threshold=5"]
    assert values["virtualKubelet"]["extra"]["args"] == ["--node-ping-interval=10s", "--node-ping-timeout=1s",
                                                        "--node-lease-duration=40s"]
    assert values["controllerManager"]["pod"]["extraArgs"] == ["--foreign-cluster-ping-interval=15s",
                                                              "--foreign-cluster-ping-timeout=5s"]
    cid = values["discovery"]["config"]["clusterIDOverride"]
    assert cid == liqo.cluster_id(env, "leaf-3") != liqo.cluster_id(env, "leaf-2")
    import uuid
    assert uuid.UUID(cid).version == 5


def test_userspace_wireguard_is_a_setting_and_skips_the_module_check() -> None:
    env = load_env("crownlabs", overrides={"backend": {"wireguard_implementation": "userspace"}})
    plan = up_runbook(env, topology_plan(env))
    assert liqo.values(env, "root")["gateway"]["config"]["wireguardImplementation"] == "userspace"
    assert plan.runs("preflight.wireguard") == []
    kernel = load_env("crownlabs")
    assert len(up_runbook(kernel, topology_plan(kernel)).runs("preflight.wireguard")) == 5


def test_peering_follows_the_plan_directions_after_every_install(topo: Any, plan: Runbook) -> None:
    peers = plan.runs("liqo.peer")
    done = {(r.host, r.argv[r.argv.index("out-of-band") + 1]) for r in peers}
    assert done == {(link.consumer, link.provider) for link in topo.peerings}
    assert len(peers) == len(topo.peerings) == 10  # star (4) + full mesh of 4 leaves (6)
    info = {r.capture: r.host for r in plan.runs("liqo.peer-info")}
    for run in peers:
        (auth, token) = run.refs()
        provider = run.argv[run.argv.index("out-of-band") + 1]
        assert auth.key == token.key == f"peer-info:{provider}" and info[auth.key] == provider
    assert stage_index(plan, "liqo.install") < stage_index(plan, "liqo.peer-info") < stage_index(plan, "liqo.peer")


def test_virtual_nodes_are_checked_with_the_plan_labels(env: Any, topo: Any, plan: Runbook) -> None:
    checks = plan.runs("liqo.virtual-node-labels")
    assert len(checks) == len(topo.virtual_nodes)
    for node, run in zip(topo.virtual_nodes, checks, strict=True):
        assert run.host == node.consumer and f"{node.name}" in run.argv and run.parser == "node-labels"
        assert {k: v for k, v in run.expect.items() if k != "liqo.io/remote-cluster-id"} == \
            {k: v for k, v in node.labels.items() if k != "liqo.io/remote-cluster-id"}
        assert run.expect["liqo.io/remote-cluster-id"] == liqo.cluster_id(env, node.provider)
        assert run.expect["liqo.io/type"] == "virtual-node"


def test_offload_uses_the_plan_selector_and_strategies(topo: Any, plan: Runbook) -> None:
    (offload,) = topo.offloads
    (run,) = plan.runs("liqo.offload")
    args = list(run.argv)
    assert run.host == offload.consumer == "root"
    assert args[args.index("namespace") + 1] == "test"
    assert args[args.index("--pod-offloading-strategy") + 1] == "Remote"
    assert args[args.index("--namespace-mapping-strategy") + 1] == "EnforceSameName"
    selectors = [args[i + 1] for i, a in enumerate(args) if a == "--selector"]
    assert selectors == liqoctl_selectors(offload.cluster_selector) == ["group.topology.labkit.io/domain-a"]
    assert stage_index(plan, "liqo.virtual-nodes") < stage_index(plan, "liqo.offload")
    ns = next(c for c in plan.for_host("root") if isinstance(c, Put) and c.remote.endswith("namespace-test.yaml"))
    check(yaml.safe_load(ns.content or ""))


def test_parse_peer_command_reads_liqo_0_10_output() -> None:
    line = ("liqoctl peer out-of-band leaf-1 --auth-url https://192.0.2.11:31234 "
            "--cluster-id 771420b1-39d0-5b06-870f-8baccee26459 --auth-token s3cr3t\n")
    assert liqo.parse_peer_command(line) == {"cluster_name": "leaf-1", "auth_url": "https://192.0.2.11:31234",
                                             "cluster_id": "771420b1-39d0-5b06-870f-8baccee26459", "token": "s3cr3t"}
    with pytest.raises(liqo.PeerCommandError, match="auth-token") as err:
        liqo.parse_peer_command("liqoctl peer out-of-band leaf-1 --auth-url https://x:1 --cluster-id abc\n")
    with pytest.raises(liqo.PeerCommandError, match="expected one"):
        liqo.parse_peer_command("Error: no such cluster\n")
    with pytest.raises(liqo.PeerCommandError) as err:
        liqo.parse_peer_command("liqoctl peer out-of-band --auth-url https://x:1 --auth-token TOPSECRET\n")
    assert "TOPSECRET" not in str(err.value)


# --------------------------------------------------------------------------- images, percona


def test_images_are_copied_and_imported_on_every_node(env: Any, plan: Runbook) -> None:
    for host in plan.hosts():
        cmds = [c for c in plan.for_host(host) if c.step.startswith("images.")]
        assert [c.remote for c in cmds if isinstance(c, Put)] == [f"{STAGING}/images/{n}.oci.tar"
                                                                  for n in ("runtime", "probe", "galera")]
        imports = [c.argv for c in cmds if isinstance(c, Run)]
        assert imports == [("sudo", "-n", "k3s", "ctr", "images", "import", f"{STAGING}/images/{n}.oci.tar")
                           for n in ("runtime", "probe", "galera")]
    assert stage_index(plan, "k3s.ready") < stage_index(plan, "images")


def test_real_archives_replace_the_placeholders(env: Any, topo: Any, tmp_path: Path) -> None:
    archive = tmp_path / "runtime.tar"
    archive.write_bytes(b"x")
    plan = up_runbook(env, topo, VmsOptions(images=("runtime",), extra_archives=(tmp_path / "openpdc.tar",)),
                   archives={"runtime": archive})
    assert local_files(plan) == [archive, tmp_path / "openpdc.tar"]


def test_percona_cluster_resource_follows_the_db_domain(env: Any, topo: Any, plan: Runbook) -> None:
    (domain,) = env.db_domains
    assert percona.owner(topo, domain) == "root"
    obj = percona.cluster_resource(env, topo, domain)
    assert obj["spec"]["crVersion"] == "1.11.0" and obj["spec"]["pxc"]["size"] == 3
    advanced = obj["spec"]["pxc"]["affinity"]["advanced"]
    round_trip(client.V1Affinity, advanced)
    assert advanced["nodeAffinity"] == topo.affinity(percona.Placement(domains=[domain.name]))["nodeAffinity"]
    terms = advanced["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "db.topology.labkit.io/pdc-config", "operator": "Exists"}]}]
    for toleration in obj["spec"]["pxc"]["tolerations"]:
        round_trip(client.V1Toleration, toleration)
    round_trip(client.V1PersistentVolumeClaimSpec, obj["spec"]["pxc"]["volumeSpec"]["persistentVolumeClaim"])
    runs = [r.step for r in plan.runs("percona")]
    assert runs == ["percona.bundle", "percona.operator", "percona.operator-ready", "percona.cluster",
                    "percona.cluster-ready"]
    assert all(r.host == "root" for r in plan.runs("percona"))
    assert "https://raw.githubusercontent.com/percona/percona-xtradb-cluster-operator/v1.11.0/deploy/bundle.yaml" in \
        plan.runs("percona.bundle")[0].argv


def test_percona_can_be_left_out(env: Any, topo: Any) -> None:
    plan = up_runbook(env, topo, VmsOptions(percona=False))
    assert plan.runs("percona") == [] and "percona" not in [s.name for s in plan.stages]


# --------------------------------------------------------------------------- air gap, dry run, down


def test_airgap_plan_downloads_nothing_and_copies_every_artifact(env: Any, topo: Any, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "liqo-images.tar").write_bytes(b"x")
    plan = up_runbook(env, topo, VmsOptions(airgap=True, artifacts_dir=tmp_path))
    rendered = render(plan)
    assert "curl" not in rendered and "https://" not in rendered.replace("--api-server-url https://", "")
    assert all("INSTALL_K3S_SKIP_DOWNLOAD=true" in r.argv for r in plan.runs("k3s.install"))
    assert all("--local-chart-path" in r.argv for r in plan.runs("liqo.install"))
    files = {p.relative_to(tmp_path) for p in local_files(plan) if p.is_relative_to(tmp_path)}
    assert Path("k3s/v1.24.17+k3s1/k3s") in files and Path("k3s/v1.24.17+k3s1/k3s-airgap-images-amd64.tar") in files
    assert Path("liqo/v0.10.2/liqoctl-linux-amd64.tar.gz") in files and Path("percona/v1.11.0/bundle.yaml") in files
    assert Path("images/liqo-images.tar") in files


def test_dry_run_prints_every_command_per_host_in_order(env: Any, plan: Runbook) -> None:
    text = dry_run(env)
    for command in plan.commands():
        assert command.render() in text
    lines = text.splitlines()
    positions = [next(i for i, line in enumerate(lines) if r.render() in line and f"[{r.host} " in line)
                 for r in plan.runs("liqo.peer")]
    assert positions == sorted(positions)
    assert "192.0.2.10" in text and "cluster-cidr: 100.64.0.0/16" in text


def test_down_plan_unpeers_uninstalls_and_never_fails(env: Any, topo: Any) -> None:
    plan = down_runbook(env, topo)
    names = [s.name for s in plan.stages]
    assert names == ["percona.delete", "liqo.unoffload", "liqo.unpeer", "liqo.uninstall", "k3s.uninstall", "cleanup"]
    assert all(not r.check for r in plan.runs())
    assert {(r.host, r.argv[-1]) for r in plan.runs("liqo.unpeer")} == {(l.consumer, l.provider) for l in topo.peerings}
    assert all("k3s-uninstall.sh" in r.argv[-1] for r in plan.runs("k3s.uninstall"))


def test_inventory_names_nodes_without_a_vm() -> None:
    env = load_env("crownlabs", overrides={"backend": {"hosts": [{"node": "root", "address": "192.0.2.10"}]}})
    with pytest.raises(TestbedError, match=r"leaf-1.*leaf-4"):
        up_runbook(env, topology_plan(env))
    with pytest.raises(TestbedError, match="kind: vms"):
        inventory(load_env("thesis"))


def test_non_root_user_goes_through_sudo_and_root_does_not() -> None:
    env = load_env("crownlabs", overrides={"backend": {"user": "root"}})
    plan = up_runbook(env, topology_plan(env))
    assert all(r.argv[0] != "sudo" for r in plan.runs()) and plan.runs("preflight.sudo") == []


# --------------------------------------------------------------------------- helpers


def test_go_duration() -> None:
    assert [go_duration(s) for s in (5, 5.0, 0.5, 2.5, 600)] == ["5s", "5s", "500ms", "2500ms", "600s"]
    with pytest.raises(ValueError):
        go_duration(0)
    with pytest.raises(ValueError):
        go_duration(0.0001)


def test_rewrite_kubeconfig_points_at_the_vm_and_names_the_cluster() -> None:
    k3s_yaml = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"server": "https://127.0.0.1:6443",
                                                     "certificate-authority-data": "Q0E="}}],
        "users": [{"name": "default", "user": {"client-certificate-data": "Qw==", "client-key-data": "Sw=="}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}]})
    out = yaml.safe_load(k3s.rewrite_kubeconfig(k3s_yaml, "leaf-2", "192.0.2.12", 6443))
    assert out["clusters"][0] == {"name": "leaf-2", "cluster": {"server": "https://192.0.2.12:6443",
                                                                "certificate-authority-data": "Q0E="}}
    assert out["contexts"][0] == {"name": "leaf-2", "context": {"cluster": "leaf-2", "user": "leaf-2"}}
    assert out["current-context"] == "leaf-2" and out["users"][0]["user"]["client-key-data"] == "Sw=="
    with pytest.raises(ValueError, match="leaf-2"):
        k3s.rewrite_kubeconfig("clusters: []\n", "leaf-2", "192.0.2.12", 6443)


def test_put_must_stage_and_name_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Put("root", "x", f"{STAGING}/a", content="a", local=Path("/etc/hosts"))
    with pytest.raises(ValueError, match="under"):
        Put("root", "x", "/etc/rancher/k3s/config.yaml", content="a")


def test_run_renders_refs_as_placeholders_and_resolves_them() -> None:
    run = Run("root", "liqo.peer", ("liqoctl", "--auth-token", Ref("peer-info:leaf-1", "token"), "x y"))
    assert run.render() == "liqoctl --auth-token '<peer-info:leaf-1:token>' 'x y'"
    assert run.resolve({"peer-info:leaf-1": {"token": "t0k"}}) == ["liqoctl", "--auth-token", "t0k", "x y"]
    with pytest.raises(KeyError, match="peer-info:leaf-1"):
        run.resolve({})
    assert shlex.split(run.render())[2] == "<peer-info:leaf-1:token>"
