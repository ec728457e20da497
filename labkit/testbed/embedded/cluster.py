"""One real Kubernetes v1.24.17 cluster on network-namespace VMs.

The cluster's root VM (its first VM) runs etcd, kube-apiserver, kube-controller-manager and
kube-scheduler; every VM runs containerd, a kubelet and kube-proxy. Pods get the VM's /24 of
the cluster's pod CIDR from a CNI bridge; the VMs reach each other's /24s through flannel's
VXLAN data path (:mod:`.flannel`). All processes are started by the
:class:`~.supervisor.Supervisor` inside their VM.

Everything here is configuration of the real components (flags, config files, certificates);
no Kubernetes behaviour is reimplemented.
"""

from __future__ import annotations

import json
import socket as socketlib
import ssl
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from labkit import timescale
from labkit.testbed.base import TestbedError
from labkit.testbed.embedded import cgroups, flannel, pki
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.binaries import Binaries
from labkit.config import Tuning
from labkit.testbed.embedded.spec import ClusterSpec
from labkit.testbed.embedded.supervisor import RESTART_S, Supervisor

Log = Callable[[str], None]

#: A node's daemons the supervisor starts again after an exit (:data:`.supervisor.RESTART_S`), as
#: systemd does on a k3s node; the control plane and containerd are not, so a start that fails
#: names its log at once.
RESTARTED = ("kubelet", "kube-proxy")

API_PORT = 6443
CLUSTER_DOMAIN = "cluster.local"
PKI = "/etc/kubernetes/pki"
CONTAINERD_SOCK = "/run/containerd/containerd.sock"
CONTAINERD_ROOT = "/var/lib/containerd"
#: Where :meth:`Cluster.import_image` marks the archives a node's containerd imported.
IMPORTED_DIR = f"{CONTAINERD_ROOT}/labkit-imported"


class ImageSource(Protocol):
    """Where the pod sandbox image comes from and how archives reach a containerd (labkit.images)."""

    def pause(self) -> tuple[Path, str]:
        """The pause image: (OCI archive, image reference)."""
        ...

    def import_archive(self, archive: Path, socket: Path) -> None:
        """Import an OCI archive into the containerd listening on ``socket`` (namespace k8s.io)."""
        ...

    def node_store(self) -> NodeStore | None:
        """Images unpacked once for every node (:mod:`labkit.images.store`), or ``None``."""
        ...


class NodeStore(Protocol):
    """Images unpacked once, with which a node's containerd root is filled before it starts."""

    @property
    def archive_names(self) -> tuple[str, ...]:
        """File names of the archives the store holds."""
        ...

    def seed(self, dest: Path) -> bool:
        """Fill the containerd root ``dest`` (not yet used by a containerd); whether it did."""
        ...


@dataclass
class Node:
    """A VM of a cluster, with its pod subnet."""

    vm: vmlib.Vm
    labels: dict[str, str]
    pod_subnet: str


class Cluster:
    """A cluster being brought up or running.

    Parameters
    ----------
    spec
        The cluster's VMs and CIDRs.
    nodes
        Its VMs (created already), root VM first.
    tuning
        Table 7.1 timers.
    binaries, images, supervisor, log
        What it runs, the pause image, who starts processes (``None``: a view of a cluster
        another process runs, which starts nothing), where progress goes.
    """

    def __init__(self, spec: ClusterSpec, nodes: list[Node], tuning: Tuning, binaries: Binaries,
                 images: ImageSource, supervisor: Supervisor | None, log: Log = print) -> None:
        self.spec = spec
        self.nodes = nodes
        self.tuning = tuning
        self.bin = binaries
        self.images = images
        self.sup = supervisor
        self.log = log
        #: What each VM programs of the pod network between the VMs (flannel's data path), by VM name.
        self.pod_network = flannel.plan([flannel.Member(n.vm.name, n.vm.address, n.pod_subnet) for n in nodes],
                                        spec.flannel_backend)

    @property
    def root(self) -> vmlib.Vm:
        """The VM running etcd and the control plane."""
        return self.nodes[0].vm

    @property
    def server(self) -> str:
        """URL of the apiserver on the lab network."""
        return f"https://{self.root.address}:{API_PORT}"

    def admin_files(self) -> tuple[Path, Path, Path]:
        """Host paths of (CA certificate, admin certificate, admin key)."""
        base = self.root.host_path(PKI)
        return base / "ca.crt", base / "admin.crt", base / "admin.key"

    # --- bring-up ------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Write certificates and configs, start every process, wait for the apiserver."""
        self._write_pki()
        self._start_etcd()
        self._start_apiserver()
        self._wait_apiserver(timeout)
        self._start_controllers()
        for node in self.nodes:
            self._start_node(node)
        self._routes()

    @property
    def _sup(self) -> Supervisor:
        if self.sup is None:
            raise TestbedError(f"cluster {self.spec.name}: a view of a running cluster starts no process")
        return self.sup

    def _spawn(self, vm: vmlib.Vm, name: str, argv: list[Any]) -> None:
        """Start daemon ``name`` in ``vm``; one of :data:`RESTARTED` is started again after each exit."""
        self._sup.spawn(f"{vm.name}/{name}", vm.name, [str(a) for a in argv], vm.state_dir / "logs" / f"{name}.log",
                        restart_s=RESTART_S if name in RESTARTED else None)

    def _write_pki(self) -> None:
        ca = pki.CertificateAuthority(f"labkit-{self.spec.name}-ca")
        root = self.root.host_path(PKI)
        ca.pair.write(root, "ca")
        api_ips = (self.root.address, "127.0.0.1", self.spec.service_ip(1))
        api_dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "localhost", self.root.name)
        ca.issue("kube-apiserver", server=True, dns=api_dns, ips=api_ips).write(root, "apiserver")
        ca.issue("kube-apiserver-kubelet-client", ("system:masters",), client=True).write(root, "apiserver-kubelet-client")
        ca.issue("admin", ("system:masters",), client=True).write(root, "admin")
        private, public = pki.service_account_key()
        (root / "sa.key").write_bytes(private)
        (root / "sa.pub").write_bytes(public)
        (root / "sa.key").chmod(0o600)
        etc = self.root.host_path("/etc/kubernetes")
        local = f"https://127.0.0.1:{API_PORT}"
        for user, cn in (("controller-manager", "system:kube-controller-manager"),
                         ("scheduler", "system:kube-scheduler"), ("admin", "admin")):
            pair = ca.issue(cn, ("system:masters",) if user == "admin" else (), client=True)
            (etc / f"{user}.kubeconfig").write_text(pki.kubeconfig(local, ca.pair.cert, pair, cn))
        proxy = ca.issue("system:kube-proxy", client=True)
        for node in self.nodes:
            vm = node.vm
            base = vm.host_path(PKI)
            (base / "ca.crt").parent.mkdir(parents=True, exist_ok=True)
            (base / "ca.crt").write_bytes(ca.pair.cert)
            ca.issue(vm.name, server=True, dns=(vm.name,), ips=(vm.address,)).write(base, "kubelet")
            client = ca.issue(f"system:node:{vm.name}", ("system:nodes",), client=True)
            kube_etc = vm.host_path("/etc/kubernetes")
            (kube_etc / "kubelet.kubeconfig").write_text(pki.kubeconfig(self.server, ca.pair.cert, client,
                                                                        f"system:node:{vm.name}"))
            (kube_etc / "kube-proxy.kubeconfig").write_text(pki.kubeconfig(self.server, ca.pair.cert, proxy,
                                                                           "system:kube-proxy"))

    def _start_etcd(self) -> None:
        url = "http://127.0.0.1"
        self._spawn(self.root, "etcd", [
            self.bin.etcd, f"--name={self.spec.name}", "--data-dir=/var/lib/etcd/data",
            f"--listen-client-urls={url}:2379", f"--advertise-client-urls={url}:2379",
            f"--listen-peer-urls={url}:2380", f"--initial-advertise-peer-urls={url}:2380",
            f"--initial-cluster={self.spec.name}={url}:2380", "--snapshot-count=5000",
            "--quota-backend-bytes=1073741824", "--log-level=warn"])

    def _start_apiserver(self) -> None:
        t = self.tuning
        self._spawn(self.root, "kube-apiserver", [
            self.bin.kube_apiserver,
            "--etcd-servers=http://127.0.0.1:2379",
            f"--advertise-address={self.root.address}", "--bind-address=0.0.0.0", f"--secure-port={API_PORT}",
            f"--service-cluster-ip-range={self.spec.service_cidr}",
            f"--client-ca-file={PKI}/ca.crt",
            f"--tls-cert-file={PKI}/apiserver.crt", f"--tls-private-key-file={PKI}/apiserver.key",
            f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={PKI}/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={PKI}/sa.pub", f"--service-account-signing-key-file={PKI}/sa.key",
            f"--default-not-ready-toleration-seconds={round(t.apiserver.default_not_ready_toleration_s)}",
            f"--default-unreachable-toleration-seconds={round(t.apiserver.default_unreachable_toleration_s)}",
            "--allow-privileged=true", "--profiling=false", "--cert-dir=/var/lib/labkit/apiserver",
            "--event-ttl=1h",
            # APF queues requests under overload, which no experiment creates; it costs a third of
            # an idle apiserver's CPU (docs/embedded.md, "Deviations from k3s")
            "--enable-priority-and-fairness=false",
            # nothing here uses the 14 beta resources 1.24 still serves, nor OpenAPI v3; building
            # them is ~30 % of the apiservers' CPU while five start at once (docs/embedded.md)
            "--runtime-config=api/beta=false", "--feature-gates=OpenAPIV3=false"])

    def _wait_apiserver(self, timeout: float) -> None:
        ca, crt, key = self.admin_files()
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(crt), str(key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except Exception as exc:  # not up yet
                last = str(exc)
            self._check_alive(self.root, ("etcd", "kube-apiserver"))
            time.sleep(0.3)
        raise TestbedError(f"cluster {self.spec.name}: apiserver not ready after {timeout:.0f} s ({last}); "
                           f"see {self.root.state_dir / 'logs' / 'kube-apiserver.log'}")

    def _check_alive(self, vm: vmlib.Vm, names: tuple[str, ...]) -> None:
        status = self._sup.status()
        for name in names:
            proc = status.get(f"{vm.name}/{name}")
            if proc and proc["exit"] is not None:
                log = vm.state_dir / "logs" / f"{name}.log"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:]) if log.exists() else ""
                raise TestbedError(f"{name} in VM {vm.name} exited with {proc['exit']}; {log}:\n{tail}")

    def _start_controllers(self) -> None:
        t = self.tuning
        kcm = "/etc/kubernetes/controller-manager.kubeconfig"
        self._spawn(self.root, "kube-controller-manager", [
            self.bin.kube_controller_manager, f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}", f"--authorization-kubeconfig={kcm}",
            f"--root-ca-file={PKI}/ca.crt", f"--service-account-private-key-file={PKI}/sa.key",
            f"--cluster-signing-cert-file={PKI}/ca.crt", f"--cluster-signing-key-file={PKI}/ca.key",
            "--use-service-account-credentials=true", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--node-monitor-grace-period={t.controller_manager.node_monitor_grace_period_s:g}s",
            f"--node-monitor-period={t.controller_manager.node_monitor_period_s:g}s",
            f"--pod-eviction-timeout={t.controller_manager.pod_eviction_timeout_s:g}s",
            f"--cluster-cidr={self.spec.pod_cidr}", f"--service-cluster-ip-range={self.spec.service_cidr}",
            "--allocate-node-cidrs=false", "--profiling=false"])
        sch = "/etc/kubernetes/scheduler.kubeconfig"
        self._spawn(self.root, "kube-scheduler", [
            self.bin.kube_scheduler, f"--kubeconfig={sch}", f"--authentication-kubeconfig={sch}",
            f"--authorization-kubeconfig={sch}", "--leader-elect=false", "--bind-address=127.0.0.1",
            "--profiling=false"])

    # --- nodes ---------------------------------------------------------------------------------

    def _start_node(self, node: Node) -> None:
        vm = node.vm
        pause_archive, pause_ref = self.images.pause()
        etc = vm.host_path("/etc/kubernetes")
        (etc / "containerd.toml").write_text(containerd_config(pause_ref, str(self.bin.runc),
                                                               str(self.bin.cni_bin_dir)))
        (vm.host_path("/etc/cni/net.d") / "10-labkit.conflist").write_text(
            cni_config(node.pod_subnet, self.pod_network[vm.name].pod_mtu))
        self._seed(vm)
        socket = vm.host_path(CONTAINERD_SOCK)
        socket.unlink(missing_ok=True)  # a stale file would pass for a listening containerd
        self._spawn(vm, "containerd", [self.bin.containerd, "--config=/etc/kubernetes/containerd.toml"])
        _wait_for(lambda: accepts(socket), 30, f"containerd on {socket} of VM {vm.name}",
                  lambda: self._check_alive(vm, ("containerd",)))
        try:
            self.images.import_archive(pause_archive, socket)
        except Exception:
            self._check_alive(vm, ("containerd",))  # a containerd that died names its log
            raise
        (etc / "kubelet.yaml").write_text(json.dumps(kubelet_config(vm, self.spec, self.tuning), indent=1))
        labels = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
        self._spawn(vm, "kubelet", [
            self.bin.kubelet, "--config=/etc/kubernetes/kubelet.yaml",
            "--kubeconfig=/etc/kubernetes/kubelet.kubeconfig", "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{CONTAINERD_SOCK}", f"--node-ip={vm.address}",
            f"--hostname-override={vm.name}", f"--pod-infra-container-image={pause_ref}",
            f"--root-dir={vmlib.KUBELET_ROOT}"] + ([f"--node-labels={labels}"] if labels else []))
        (etc / "kube-proxy.yaml").write_text(json.dumps(kube_proxy_config(vm, self.spec), indent=1))
        self._spawn(vm, "kube-proxy", [self.bin.kube_proxy, "--config=/etc/kubernetes/kube-proxy.yaml"])

    def _seed(self, vm: vmlib.Vm) -> None:
        """Seed the VM's containerd root from the node image store; mark those archives imported."""
        store = self.images.node_store()
        if store is not None and store.seed(vm.host_path(CONTAINERD_ROOT)):
            markers = vm.host_path(IMPORTED_DIR)
            markers.mkdir(parents=True, exist_ok=True)
            for name in store.archive_names:
                (markers / name).touch()

    def _routes(self) -> None:
        for node in self.nodes:
            self.program_pod_network(node.vm.name)
            self._lab_egress(node)

    def _lab_egress(self, node: Node) -> None:
        """What a k3s node has and a bare VM lacks: a route covering the service CIDR (hostNetwork
        pods reach ClusterIPs) and flannel's MASQUERADE of pod traffic leaving for the lab network."""
        vmlib.set_service_route(node.vm, self.spec.service_cidr)
        vmlib.masquerade_pods(node.vm, self.spec.pod_cidr)

    def program_pod_network(self, vm_name: str) -> None:
        """Program VM ``vm_name``'s part of the pod network between the VMs (idempotent; again after a link fault)."""
        flannel.apply(vmlib.netns_name(vm_name), self.pod_network[vm_name])

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive into every node's containerd, once per node and archive.

        A marker in the VM's containerd directory (it lives as long as the VM) records each
        import, so a second experiment on the same test bed, also from another process,
        skips the ``ctr import`` of an image the node already has.
        """
        def one(node: Node) -> None:
            marker = node.vm.host_path(f"{IMPORTED_DIR}/{archive.name}")
            if marker.exists():
                return
            self.images.import_archive(archive, node.vm.host_path(CONTAINERD_SOCK))
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(one, self.nodes))

    def kill_pods(self) -> None:
        """Kill every container task through containerd (namespace k8s.io), best effort."""
        for node in self.nodes:
            socket = node.vm.host_path(CONTAINERD_SOCK)
            if not socket.exists():
                continue
            base = [str(self.bin.ctr), "--address", str(socket), "-n", "k8s.io"]
            try:
                out = subprocess.run(base + ["tasks", "ls", "-q"], capture_output=True, text=True, timeout=5)
                for task in out.stdout.split():
                    subprocess.run(base + ["tasks", "kill", "--all", "-s", "SIGKILL", task], capture_output=True, timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                pass


def accepts(path: Path) -> bool:
    """Whether a process listens on the Unix socket ``path`` (the file alone is not enough)."""
    with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _wait_for(cond: Callable[[], bool], timeout: float, what: str, check: Callable[[], None] | None = None) -> None:
    deadline = timescale.deadline(timeout)
    while not cond():
        if check:
            check()
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out after {timescale.scaled(timeout):.0f} s waiting for {what}")
        time.sleep(0.1)


# --- configuration documents ----------------------------------------------------------------------

def containerd_config(sandbox_image: str, runc: str, cni_bin_dir: str) -> str:
    """containerd 1.6 config (version 2) for one VM; paths are the VM's private directories."""
    return f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "/run/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{CONTAINERD_SOCK}"

[ttrpc]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{CONTAINERD_ROOT}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false  # cgroupfs, as the kubelet (labkit.testbed.embedded.cgroups.DRIVER)

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir}"
    conf_dir = "/etc/cni/net.d"
"""


def cni_config(pod_subnet: str, mtu: int = flannel.LAB_MTU) -> str:
    """CNI conflist: a bridge ``cni0`` (gateway for the VM's pod /24, MTU ``mtu``), host-local IPAM, portmap.

    As flannel's CNI plugin delegates to the bridge plugin, with ``mtu`` its ``FLANNEL_MTU``.
    """
    doc = {
        "cniVersion": "0.4.0",
        "name": "labkit",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True, "mtu": mtu,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/var/lib/cni/networks"}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=1)


def kubelet_config(vm: vmlib.Vm, spec: ClusterSpec, tuning: Tuning) -> dict[str, Any]:
    """KubeletConfiguration (v1beta1) for one VM, with Table 7.1's status update frequency."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": vm.address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": f"{PKI}/ca.crt"}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": f"{PKI}/kubelet.crt",
        "tlsPrivateKeyFile": f"{PKI}/kubelet.key",
        "cgroupDriver": cgroups.DRIVER,  # the kit manages its own (delegated) subtree: see .cgroups
        "cgroupRoot": vm.cgroup_path,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "clusterDNS": [spec.service_ip(10)],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "failSwapOn": False,
        "nodeStatusUpdateFrequency": f"{tuning.kubelet.node_status_update_frequency_s:g}s",
        # post the status at that frequency even when nothing changed (as the flag does on k3s);
        # else the v1beta1 default (5 min) leaves only the 10 s lease renewals as heartbeats
        "nodeStatusReportFrequency": f"{tuning.kubelet.node_status_update_frequency_s:g}s",
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "containerLogMaxSize": "1Mi",
        "containerLogMaxFiles": 2,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "maxPods": 110,
    }


def kube_proxy_config(vm: vmlib.Vm, spec: ClusterSpec) -> dict[str, Any]:
    """KubeProxyConfiguration (iptables mode) for one VM.

    ``masqueradeAll`` makes Service replies return through the VM's stack even without the
    ``br_netfilter`` module; conntrack limits are left to the kernel (``maxPerCore: 0``).
    """
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/etc/kubernetes/kube-proxy.kubeconfig"},
        "mode": "iptables",
        "clusterCIDR": spec.pod_cidr,
        "hostnameOverride": vm.name,
        "bindAddress": vm.address,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"masqueradeAll": True, "syncPeriod": "30s", "minSyncPeriod": "1s"},
    }
