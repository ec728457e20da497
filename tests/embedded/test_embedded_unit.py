"""Pure parts of the embedded testbed: specs, certificates, config documents, build flags."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography import x509

from labkit.testbed.embedded import binaries, cgroups, cluster, pki, supervisor
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.spec import ClusterSpec, EmbeddedEnv, SpecError, Tuning, VmSpec
from labkit.testbed.embedded.vm import Vm, VmError

pytestmark = pytest.mark.unit


def test_pod_subnets_and_service_ips() -> None:
    spec = ClusterSpec("c1", (VmSpec("a"), VmSpec("b")), pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16")
    assert spec.pod_subnets() == {"a": "10.42.0.0/24", "b": "10.42.1.0/24"}
    assert spec.service_ip(1) == "10.43.0.1" and spec.service_ip(10) == "10.43.0.10"


@pytest.mark.parametrize(("clusters", "message"), [
    ((), "at least one cluster"),
    ((ClusterSpec("Bad_Name", (VmSpec("a"),)),), "DNS label"),
    ((ClusterSpec("c", ()),), "at least one VM"),
    ((ClusterSpec("c", (VmSpec("a"),), pod_cidr="10.0.0.0/8", service_cidr="10.1.0.0/16"),), "overlaps"),
    ((ClusterSpec("c", (VmSpec("a"),)), ClusterSpec("d", (VmSpec("a"),))), "used twice"),
])
def test_bad_specs_are_refused(clusters: tuple[ClusterSpec, ...], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        EmbeddedEnv(clusters=clusters)


def test_vm_names_and_addresses() -> None:
    vm = Vm("root-vm", 3)
    assert (vm.netns, vm.address, vm.host_link, vm.cgroup) == ("lkt-vm-root-vm", "10.250.0.13", "lkt-h3",
                                                             "/lkt-vm-root-vm")
    assert vm.host_path("/etc/kubernetes/pki/ca.crt").as_posix().endswith("root-vm/etc-kubernetes/pki/ca.crt")
    with pytest.raises(VmError):
        vm.host_path("/etc/passwd")
    with pytest.raises(VmError):
        Vm("UPPER", 0)


def test_certificates_carry_kubernetes_identities() -> None:
    ca = pki.CertificateAuthority("labkit-c1-ca")
    pair = ca.issue("system:node:a", ("system:nodes",), client=True)
    cert = x509.load_pem_x509_certificate(pair.cert)
    assert cert.subject.rfc4514_string() == "CN=system:node:a,O=system:nodes"
    assert cert.issuer == ca.cert.subject
    serving = x509.load_pem_x509_certificate(ca.issue("api", server=True, dns=("kubernetes",), ips=("10.0.0.1",)).cert)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes" in sans.get_values_for_type(x509.DNSName)


def test_table_7_1_in_component_configs() -> None:
    spec = ClusterSpec("c1", (VmSpec("a"),))
    kubelet = cluster.kubelet_config(Vm("a", 0), spec, Tuning())
    assert kubelet["nodeStatusUpdateFrequency"] == "5s"
    assert kubelet["cgroupRoot"] == cgroups.current().path("/lkt-vm-a") and kubelet["clusterDNS"] == ["10.43.0.10"]
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert "restrict_oom_score_adj = true" in cluster.containerd_config("labkit.local/pause:1", "runc", "/usr/lib/cni")
    cni = json.loads(cluster.cni_config("10.42.0.0/24"))
    assert cni["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.42.0.0/24"}]]


def test_version_ldflags_stamp_v1_24_17() -> None:
    flags = binaries.version_ldflags()
    assert "-X k8s.io/component-base/version.gitVersion=v1.24.17" in flags
    assert "-X k8s.io/component-base/version.gitMinor=24" in flags
    assert flags.startswith("-s -w")
    assert set(binaries.APT_PACKAGES) >= {"etcd-server", "containerd", "runc", "containernetworking-plugins"}
    assert [s.name for s in binaries.setup_steps()] == ["apt", "kubernetes", "coredns"]


def test_from_env_carries_the_plans_peerings_and_offloads() -> None:
    from labkit.config import load_env
    from labkit.testbed.embedded.spec import from_env

    spec = from_env(load_env("thesis"))
    assert len(spec.peerings) == 4 + 6  # the partial mesh star of the thesis (eq. 5.1: 6 leaf links)
    assert ("root", "leaf-1") in spec.peerings and ("leaf-1", "root") not in spec.peerings
    assert [(o.namespace, o.consumer, o.strategy) for o in spec.offloads] == [("test", "root", "Remote")]
    assert spec.cluster_labels["leaf-2"]["topology.labkit.io/cluster"] == "leaf-2"


def test_a_peering_must_name_two_clusters() -> None:
    with pytest.raises(SpecError, match="peerings"):
        EmbeddedEnv(clusters=(ClusterSpec("c", (VmSpec("a"),)),), peerings=(("c", "nowhere"),))


def test_machine_lock_names_its_holder_and_waits_for_it(tmp_path) -> None:  # noqa: ANN001
    import subprocess
    import sys
    import time

    from labkit.testbed.base import TestbedError
    from labkit.testbed.embedded import MachineLock

    path = tmp_path / "embedded.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from labkit.testbed.embedded import MachineLock; "
        f"lock = MachineLock(Path({str(path)!r})); lock.acquire(0, print); print('held', flush=True); "
        "time.sleep(1.5); lock.release(); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = MachineLock(path)
        assert f"pid {holder.pid}" in (lock.holder() or "")
        with pytest.raises(TestbedError, match=f"pid {holder.pid}.*LABKIT_EMBEDDED_WAIT"):
            lock.acquire(0, print)
        start = time.monotonic()
        lock.acquire(20, print)  # the holder releases after 1.5 s
        assert time.monotonic() - start < 15
        assert f"pid {holder.pid}" not in path.read_text()
        lock.release()
        assert lock.holder() is None
    finally:
        holder.kill()


def test_down_leaves_another_processs_testbed_alone(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A testbed whose up() never got the lock must not sweep the lock holder's VMs."""
    import subprocess
    import sys

    import labkit.testbed.embedded as embedded

    path = tmp_path / "embedded.lock"
    swept: list[str] = []
    monkeypatch.setattr(embedded, "require_root", lambda why: None)
    monkeypatch.setattr(embedded.vmlib, "sweep", lambda: swept.append("sweep"))
    monkeypatch.setattr(embedded.vmlib, "leftovers", lambda: embedded.vmlib.Leftovers([], [], [], [], [], []))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from labkit.testbed.embedded import MachineLock; "
        f"MachineLock(Path({str(path)!r})).acquire(0, print); print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        tb = embedded.EmbeddedTestbed(log=lambda _: None)
        tb._lock = embedded.MachineLock(path)
        tb.down()
        assert swept == []  # the holder's testbed is untouched
    finally:
        holder.kill()
        holder.wait()
    tb.down()  # the lock is free now: a crash cleanup sweeps
    assert swept == ["sweep"] and not tb._lock.held


def _wait_empty(folder: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(folder.iterdir())


def test_discard_moves_a_tree_away_at_once_and_deletes_it_in_the_background(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    trash = tmp_path / "trash"
    monkeypatch.setattr(vmlib, "TRASH_ROOT", trash)
    state = tmp_path / "vm-a"
    (state / "containerd" / "snapshots").mkdir(parents=True)
    (state / "containerd" / "snapshots" / "layer").write_bytes(b"x" * 1024)
    vmlib.discard(state)
    assert not state.exists() and trash.is_dir()
    assert _wait_empty(trash)
    vmlib.discard(tmp_path / "absent")  # nothing to do
    (trash / "left-by-a-reboot" / "sub").mkdir(parents=True)
    vmlib.purge_trash()
    assert _wait_empty(trash)


def test_host_limits_are_raised_never_lowered(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "fs" / "inotify").mkdir(parents=True)
    (tmp_path / "fs/inotify/max_user_instances").write_text("128\n")
    (tmp_path / "fs/inotify/max_user_watches").write_text("1048576\n")
    raised = vmlib.ensure_host_limits(tmp_path, log=lambda _: None)
    assert raised == {"fs/inotify/max_user_instances": 8192}
    assert (tmp_path / "fs/inotify/max_user_instances").read_text().strip() == "8192"
    assert (tmp_path / "fs/inotify/max_user_watches").read_text().strip() == "1048576"


def test_a_stale_socket_file_is_not_a_listening_containerd(tmp_path) -> None:  # noqa: ANN001
    import socket

    path = tmp_path / "containerd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        assert not cluster.accepts(path)  # bound, not listening: what a dead containerd leaves
        server.listen(1)
        assert cluster.accepts(path)
    assert path.exists() and not cluster.accepts(path)
    assert not cluster.accepts(tmp_path / "missing.sock")


def test_a_failed_start_keeps_the_vms_logs(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    state = tmp_path / "lkt"
    for vm in ("root", "leaf-1"):
        (state / vm / "logs").mkdir(parents=True)
        (state / vm / "logs" / "containerd.log").write_text(f"{vm}: level=fatal\n")
    vk = state / "root" / "log-pods" / "liqo-tenant-leaf-1_virtual-kubelet-leaf-1-abc_uid" / "vk"
    vk.mkdir(parents=True)
    (vk / "0.log").write_text("node not ready\n")
    (state / "supervisor.log").write_text("exit 1\n")
    monkeypatch.setattr(vmlib, "STATE_ROOT", state)
    kept_root = tmp_path / "failed"
    kept_root.mkdir()
    for i in range(vmlib.KEPT_LOGS):  # older copies: the oldest goes
        (kept_root / f"2020010{i}T000000Z").mkdir()
    kept = vmlib.keep_logs(kept_root)
    assert kept is not None and (kept / "leaf-1" / "containerd.log").read_text() == "leaf-1: level=fatal\n"
    assert (kept / "supervisor.log").exists()
    assert [p.read_text() for p in (kept / "root" / "pods").rglob("0.log")] == ["node not ready\n"]
    assert not (kept / "leaf-1" / "pods").exists()
    assert sorted(p.name for p in kept_root.iterdir())[0] == "20200101T000000Z"
    assert len(list(kept_root.iterdir())) == vmlib.KEPT_LOGS
    monkeypatch.setattr(vmlib, "STATE_ROOT", tmp_path / "none")
    assert vmlib.keep_logs(kept_root) is None


def test_missing_mount_points_shadow_the_nearest_directory_the_host_has(tmp_path) -> None:  # noqa: ANN001
    from labkit.testbed.embedded.vm import missing_parents

    (tmp_path / "etc" / "cni").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "etcd").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    points = [tmp_path / "etc" / "kubernetes", tmp_path / "etc" / "cni" / "net.d", tmp_path / "var" / "lib" / "etcd",
              tmp_path / "var" / "lib" / "kubelet", tmp_path / "var" / "lib" / "cni", tmp_path / "run" / "a" / "b"]
    assert missing_parents(str(p) for p in points) == [str(tmp_path / d) for d in ("etc", "run", "etc/cni", "var/lib")]
    assert missing_parents([str(tmp_path / "var" / "lib" / "etcd")]) == []  # present: covered inside the VM only


def test_a_node_daemon_restarts_after_its_delay_and_a_stopped_one_never() -> None:
    procs = {
        "a/kubelet": {"pid": 10, "exit": 1, "restarts": 0, "restart_s": 5.0, "due": None},
        "a/containerd": {"pid": 11, "exit": 1, "restarts": 0, "restart_s": None, "due": None},
        "a/kube-proxy": {"pid": 12, "exit": None, "restarts": 0, "restart_s": 5.0, "due": None},
    }
    assert supervisor._restart_due(procs, now=100.0) == []      # the exit is seen: its delay starts
    assert procs["a/kubelet"]["due"] == 105.0
    assert supervisor._restart_due(procs, now=104.9) == []
    assert supervisor._restart_due(procs, now=105.0) == ["a/kubelet"]
    procs["a/kubelet"]["restart_s"] = None                       # stopped for good ("stop", or signal restart=False)
    assert supervisor._restart_due(procs, now=200.0) == []
    assert supervisor._public(procs)["a/kubelet"] == {"pid": 10, "exit": 1, "restarts": 0}


def _liqoctl_stub(lines: list[str]):  # noqa: ANN202
    """A LiqoCtl with one peering on record whose liqoctl runs are recorded instead of run."""
    from labkit.testbed.embedded.liqo import LiqoCtl
    from labkit.testbed.embedded.liqo.peering import Peering

    liqo = LiqoCtl(None, None, log=lines.append)  # type: ignore[arg-type]
    liqo.peerings[("root", "leaf-1")] = Peering("root", "leaf-1", "liqo-leaf-1", 1.0, {})
    liqo.installed = {"root": 1.0, "leaf-1": 1.0}
    runs: list[tuple[str, list[str]]] = []
    liqo.run = lambda cluster, args, timeout, **kw: runs.append((cluster, list(args)))  # type: ignore[method-assign]
    return liqo, runs


@pytest.mark.parametrize(("liqo_teardown", "commands"), [
    (True, {"unpeer", "uninstall"}),  # liqoctl unpeer / uninstall before the clusters go
    (False, set()),                   # the pipeline's shared bed: Liqo goes with the clusters
])
def test_down_undoes_liqo_with_liqoctl_unless_told_not_to(liqo_teardown: bool, commands: set[str]) -> None:
    from labkit.testbed.embedded import EmbeddedTestbed

    lines: list[str] = []
    tb = EmbeddedTestbed(log=lines.append, liqo_teardown=liqo_teardown)
    tb.liqo, runs = _liqoctl_stub(lines)
    liqo = tb.liqo
    tb._down_peering()
    assert {args[0] for _, args in runs} == commands and tb.liqo is None
    assert not liqo.peerings and not liqo.installed
    assert any("deleted with the clusters" in line for line in lines) is not liqo_teardown


def test_the_look_alike_always_stops_its_checks_and_tunnels() -> None:
    from labkit.testbed.embedded import EmbeddedTestbed
    from labkit.testbed.embedded.liqo import LookAlike

    stopped: list[str] = []
    tunnel = type("Tunnel", (), {"down": lambda self: stopped.append("tunnel")})()
    look_alike = LookAlike.__new__(LookAlike)
    look_alike._gateways, look_alike.tunnels = {}, {frozenset(("root", "leaf-1")): tunnel}
    tb = EmbeddedTestbed(log=lambda _: None, liqo_teardown=False)
    tb.liqo = look_alike
    tb._down_peering()
    assert stopped == ["tunnel"] and not look_alike.tunnels
