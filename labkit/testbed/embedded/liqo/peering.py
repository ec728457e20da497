"""The kit's Liqo look-alike (the fallback without Liqo's source): gateways, identities, virtual kubelets.

:class:`LookAlike` works on a running :class:`~labkit.testbed.embedded.EmbeddedTestbed`:

``peer(consumer, provider)`` (unidirectional, as ``liqoctl peer out-of-band``):

1. the CRDs (TunnelEndpoint, NamespaceOffloading) in both clusters;
2. the network, once per pair of clusters: a WireGuard tunnel between the two root VMs
   (the gateways), routes for the peer's pod CIDR (root VM: into the tunnel; other VMs: via
   the root VM), a TunnelEndpoint in each tenant namespace and the gateway
   health check (2 s x 5) publishing to it;
3. the identity: a client certificate the provider's CA signs for ``liqo-<consumer>``, with
   RBAC in the provider limited to reading Nodes and the offloaded namespaces;
4. the virtual kubelet: its image in every consumer VM, a Secret with the provider
   kubeconfig, a ServiceAccount + ClusterRole in ``liqo-tenant-<provider>``, and a
   Deployment ``virtual-kubelet-<provider>`` there; then waits for Node ``liqo-<provider>``
   to be Ready.

``offload(namespace, consumer, ...)`` creates the NamespaceOffloading ``offloading`` and, in
every selected provider, the remote namespace with the tenant's RoleBinding; see
:mod:`.offloading`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from labkit import timescale
from labkit.config import LiqoTuning
from labkit.testbed.base import TestbedError
from labkit.testbed.embedded import pki
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.cluster import API_PORT, PKI
from labkit.testbed.embedded.liqo import build, crds, health, identity, nat, wireguard

Log = Callable[[str], None]

#: ClusterRole of every virtual kubelet in its consumer.
VK_ROLE = "labkit-liqo-virtual-kubelet"
#: Gateway config inside each root VM (read by the health-check process).
GATEWAY_CONFIG = "/var/lib/labkit/liqo-gateway.json"


@dataclass(frozen=True)
class VkTimers:
    """Virtual kubelet flags, defaults of Liqo v0.10.2 (see docs/peering.md)."""

    node_ping_interval_s: float = 10.0
    node_ping_timeout_s: float = 1.0
    node_lease_duration_s: int = 40
    node_status_update_interval_s: float = 60.0
    node_check_network: bool = True

    def flags(self) -> list[str]:
        """Command-line flags of the virtual kubelet."""
        return [f"--node-ping-interval={self.node_ping_interval_s}s",
                f"--node-ping-timeout={self.node_ping_timeout_s}s",
                f"--node-lease-duration={self.node_lease_duration_s}s",
                f"--node-status-update-interval={self.node_status_update_interval_s}s",
                f"--node-check-network={str(self.node_check_network).lower()}"]


@dataclass(frozen=True)
class GatewayTimers:
    """Gateway health check, defaults of Liqo v0.10.2."""

    ping_interval_s: float = health.PING_INTERVAL_S
    ping_loss_threshold: int = health.PING_LOSS_THRESHOLD


def timers(tuning: LiqoTuning) -> tuple[VkTimers, GatewayTimers]:
    """The virtual kubelet's and the gateway's timers from an env's ``tuning.liqo``."""
    vk = VkTimers(node_ping_interval_s=tuning.node_ping_interval_s, node_ping_timeout_s=tuning.node_ping_timeout_s,
                  node_lease_duration_s=int(tuning.node_lease_duration_s))
    return vk, GatewayTimers(tuning.gateway_ping_interval_s, tuning.gateway_ping_loss_threshold)


@dataclass
class Peering:
    """One established peering (``consumer`` sees ``provider`` as Node ``liqo-<provider>``)."""

    consumer: str
    provider: str
    node: str
    took_s: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)


def wait_node_ready(api: client.ApiClient, node: str, deadline: float, timed_out: Callable[[], Exception]) -> None:
    """Poll until Node ``node`` reads Ready (a missing node is not yet there); raise ``timed_out()`` after ``deadline``."""
    core = client.CoreV1Api(api)
    while True:
        try:
            if any(c.type == "Ready" and c.status == "True" for c in core.read_node(node).status.conditions or []):
                return
        except ApiException as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise timed_out()
        time.sleep(0.3)


def tenant_namespace(remote: str) -> str:
    """Tenant namespace of the peering with ``remote`` (Liqo: ``liqo-tenant-<cluster-id>``)."""
    return f"liqo-tenant-{remote}"


def _apply(create: Callable[..., Any], *args: Any) -> None:
    try:
        create(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


class LookAlike:
    """The kit's Liqo look-alike peering the clusters of an embedded testbed (the fallback where Liqo's source cannot be had).

    Parameters
    ----------
    testbed
        A running :class:`~labkit.testbed.embedded.EmbeddedTestbed`.
    cluster_labels
        Labels each cluster advertises (its virtual nodes carry them), e.g. from
        :attr:`labkit.topology.Plan.cluster_labels`.
    vk_timers, gateway_timers
        Liqo's timers (defaults: Liqo v0.10.2).
    log
        Where progress lines go.
    """

    #: Which peering this is (the run manifest and reports name it).
    kind = "kit"

    def __init__(self, testbed: Any, cluster_labels: dict[str, dict[str, str]] | None = None,
                 vk_timers: VkTimers = VkTimers(), gateway_timers: GatewayTimers = GatewayTimers(),
                 log: Log = print) -> None:
        self.tb = testbed
        self.labels = cluster_labels or {}
        self.vk_timers, self.gw_timers = vk_timers, gateway_timers
        self.log = log
        self.peerings: dict[tuple[str, str], Peering] = {}
        self.tunnels: dict[frozenset[str], wireguard.Tunnel] = {}
        self._lock = threading.Lock()
        self._tunnel_index = 0
        self._ports: dict[str, int] = {}
        self._gateways: dict[str, subprocess.Popen] = {}
        self._gateway_tunnels: dict[str, list[dict[str, str]]] = {}
        self._ready: set[str] = set()
        self._image: tuple[Any, str] | None = None
        #: pair -> {cluster: external CIDR the other side knows its pods by}, when pod CIDRs collide
        self.external: dict[frozenset[str], dict[str, str]] = {}

    # --- public ----------------------------------------------------------------------------

    def peer(self, consumer: str, provider: str, timeout: float = 90.0) -> Peering:
        """Peer ``consumer`` with ``provider`` (unidirectional) and wait for the virtual node.

        Raises
        ------
        TestbedError
            When a cluster is unknown, or the virtual node is not Ready within ``timeout``.
        """
        if consumer == provider:
            raise TestbedError(f"a cluster cannot peer with itself ({consumer})")
        start = time.monotonic()
        steps: dict[str, float] = {}

        def mark(step: str) -> None:
            steps[step] = round(time.monotonic() - start, 2)

        self._prepare(consumer)
        self._prepare(provider)
        mark("crds")
        self._network(consumer, provider)
        mark("network")
        papi = self.tb.kube(provider)
        identity.ensure_provider_roles(papi)
        pair = identity.issue(papi, consumer, provider)
        identity.bind_capacity(papi, consumer)
        mark("identity")
        node = self._virtual_kubelet(consumer, provider, pair)
        mark("virtual kubelet")
        self._wait_node_ready(consumer, node, start + timescale.scaled(timeout))
        mark("node ready")
        peering = Peering(consumer, provider, node, round(time.monotonic() - start, 2), steps)
        with self._lock:
            self.peerings[(consumer, provider)] = peering
        self.log(f"[liqo] {consumer} -> {provider}: {node} Ready in {peering.took_s:.1f} s {steps}")
        return peering

    def peer_all(self, pairs: Iterable[tuple[str, str]], timeout: float = 120.0) -> list[Peering]:
        """Peer every ``(consumer, provider)`` pair concurrently; return the peerings."""
        from concurrent.futures import ThreadPoolExecutor
        pairs = list(pairs)
        for name in {c for pair in pairs for c in pair}:
            self._prepare(name)
        with ThreadPoolExecutor(max_workers=min(8, len(pairs) or 1)) as pool:
            return list(pool.map(lambda p: self.peer(p[0], p[1], timeout), pairs))

    def down(self) -> None:
        """Stop the gateways' health checks and remove the tunnels (the testbed removes the rest)."""
        for proc in self._gateways.values():
            _stop(proc)
        self._gateways.clear()
        for tunnel in self.tunnels.values():
            tunnel.down()
        self.tunnels.clear()

    def discard(self) -> None:
        """As :meth:`down`: the health checks and tunnels run in this process, not in the clusters being deleted."""
        self.down()

    def tunnel(self, a: str, b: str) -> wireguard.Tunnel:
        """The tunnel between clusters ``a`` and ``b``."""
        return self.tunnels[frozenset((a, b))]

    # --- preparation -----------------------------------------------------------------------

    def _prepare(self, cluster: str) -> None:
        """CRDs, the virtual kubelet's ClusterRole and image, once per cluster."""
        with self._lock:
            if cluster in self._ready:
                return
            self._ready.add(cluster)
        api = self.tb.kube(cluster)
        ext = client.ApiextensionsV1Api(api)
        for crd in crds.all_crds():
            _apply(ext.create_custom_resource_definition, crd)
        _apply(client.RbacAuthorizationV1Api(api).create_cluster_role, vk_cluster_role())
        archive, _ = self._vk_image()
        self.tb.cluster(cluster).import_image(archive)
        self._wait_crds(api)

    def _vk_image(self) -> tuple[Any, str]:
        with self._lock:
            if self._image is None:
                self._image = build.vk_archive(lambda line: None)
            return self._image

    @staticmethod
    def _wait_crds(api: client.ApiClient, timeout: float = 20.0) -> None:
        custom = client.CustomObjectsApi(api)
        deadline = timescale.deadline(timeout)
        while True:
            try:
                custom.list_cluster_custom_object(crds.TEP_GROUP, crds.TEP_VERSION, crds.TEP_PLURAL)
                custom.list_cluster_custom_object(crds.NSOFF_GROUP, crds.NSOFF_VERSION, crds.NSOFF_PLURAL)
                return
            except ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # --- network ---------------------------------------------------------------------------

    def _network(self, consumer: str, provider: str) -> None:
        """The tunnel, routes, TunnelEndpoints and health checks of a pair (once per pair)."""
        key = frozenset((consumer, provider))
        with self._lock:
            if key in self.tunnels:
                return
            index = self._tunnel_index
            self._tunnel_index += 1
            ports = [self._next_port(self.tb.cluster(c).root.name) for c in (consumer, provider)]
            self._plan_remap(consumer, provider)
            tunnel = self._make_tunnel(index, consumer, provider, ports)
            self.tunnels[key] = tunnel
        tunnel.up()
        for name, side, ifname in ((consumer, tunnel.a, tunnel.ifnames[0]), (provider, tunnel.b, tunnel.ifnames[1])):
            if key in self.external:
                nat.apply(side.netns, ifname, self.tb.cluster(name).spec.pod_cidr, self.external[key][name])
        for here, there in ((consumer, provider), (provider, consumer)):
            self._relay_routes(here, there)
        peer_ips = dict(zip((consumer, provider), tunnel.peer_ips))
        for here, there in ((consumer, provider), (provider, consumer)):
            self._tunnel_endpoint(here, there, tunnel)
            self._gateway_add(here, {"namespace": tenant_namespace(there), "name": f"tep-{there}",
                                     "peer": peer_ips[here]})

    def _plan_remap(self, a: str, b: str) -> None:
        """Pick external CIDRs for both sides when their pod CIDRs collide (lock held)."""
        pa, pb = self.tb.cluster(a).spec.pod_cidr, self.tb.cluster(b).spec.pod_cidr
        if not nat.overlaps(pa, pb):
            return
        taken = [self.tb.cluster(c).spec.pod_cidr for c in self.tb.clusters()]
        taken += [cidr for ext in self.external.values() for cidr in ext.values()]
        ea = nat.allocate(pa, taken)
        eb = nat.allocate(pb, taken + [ea])
        self.external[frozenset((a, b))] = {a: ea, b: eb}
        self.log(f"[liqo] pod CIDRs of {a} and {b} collide ({pa}): {b} sees {a} as {ea}, {a} sees {b} as {eb}")

    def pod_cidr_seen(self, here: str, there: str) -> str:
        """The CIDR ``here`` reaches ``there``'s pods at (remapped when the pod CIDRs collide)."""
        ext = self.external.get(frozenset((here, there)))
        return ext[there] if ext else self.tb.cluster(there).spec.pod_cidr

    def _next_port(self, vm_name: str) -> int:
        port = self._ports.get(vm_name, wireguard.LIQO_PORT)
        self._ports[vm_name] = port + 1
        return port

    def _make_tunnel(self, index: int, consumer: str, provider: str, ports: list[int]) -> wireguard.Tunnel:
        sides = []
        for name, other, port in ((consumer, provider, ports[0]), (provider, consumer, ports[1])):
            root = self.tb.cluster(name).root
            # Only pod CIDRs cross the tunnel: Services are reflected (clients use local ClusterIPs),
            # as in Liqo, so clusters may share a service CIDR (they do in the thesis' env).
            sides.append(wireguard.Side(root.netns, root.address, port, (self.pod_cidr_seen(name, other),),
                                        enter=_vm_enter(root.name)))
        return wireguard.Tunnel(index, sides[0], sides[1], self.tb.cluster(consumer).root.state_dir / "logs")

    def _relay_routes(self, here: str, there: str) -> None:
        """Non-root VMs of ``here`` reach ``there``'s pod CIDR (and the tunnels' inner addresses,
        the source of the gateway's own packets) via the root VM."""
        cluster = self.tb.cluster(here)
        via = cluster.root.address
        for node in cluster.nodes[1:]:
            vmlib.set_routes(node.vm, {self.pod_cidr_seen(here, there): via, str(wireguard.TUNNEL_NETWORK): via})

    def _tunnel_endpoint(self, here: str, there: str, tunnel: wireguard.Tunnel) -> None:
        api = self.tb.kube(here)
        ns = tenant_namespace(there)
        _apply(client.CoreV1Api(api).create_namespace, {"metadata": {"name": ns, "labels": {
            "liqo.io/tenant-namespace": "true", "liqo.io/remote-cluster-id": there}}})
        me, peer = (tunnel.a, tunnel.b) if self.tb.cluster(here).root.netns == tunnel.a.netns else (tunnel.b, tunnel.a)
        ifname = tunnel.ifnames[0] if me is tunnel.a else tunnel.ifnames[1]
        _apply(client.CustomObjectsApi(api).create_namespaced_custom_object, crds.TEP_GROUP, crds.TEP_VERSION, ns,
               crds.TEP_PLURAL, {
                   "apiVersion": f"{crds.TEP_GROUP}/{crds.TEP_VERSION}", "kind": "TunnelEndpoint",
                   "metadata": {"name": f"tep-{there}", "labels": {"clusterID": there}},
                   "spec": {"clusterIdentity": {"clusterID": there, "clusterName": there},
                            "backendType": "wireguard", "backend_config": {"implementation": "userspace"},
                            "endpointIP": peer.address, "endpointPort": str(peer.port),
                            "tunnelInterface": ifname, "remotePodCIDR": self.tb.cluster(there).spec.pod_cidr,
                            "remoteExternalCIDR": self.tb.cluster(there).spec.pod_cidr,
                            "localPodCIDR": self.tb.cluster(here).spec.pod_cidr}})

    def _gateway_add(self, cluster: str, tunnel: dict[str, str]) -> None:
        """Add a tunnel to ``cluster``'s health-check config; start the checker if needed."""
        root = self.tb.cluster(cluster).root
        with self._lock:
            tunnels = self._gateway_tunnels.setdefault(cluster, [])
            tunnels.append(tunnel)
            cfg = {"kubeconfig": "/etc/kubernetes/admin.kubeconfig", "interval_s": self.gw_timers.ping_interval_s,
                   "loss_threshold": self.gw_timers.ping_loss_threshold, "tunnels": tunnels}
            path = root.host_path(GATEWAY_CONFIG)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cfg, indent=1))
            tmp.replace(path)
            if cluster not in self._gateways or self._gateways[cluster].poll() is not None:
                log = (root.state_dir / "logs" / "liqo-gateway.log").open("ab")
                self._gateways[cluster] = subprocess.Popen(
                    [sys.executable, "-c", "import sys; from labkit.testbed.embedded.liqo.health import main; main(sys.argv[1:])",
                     "--config", GATEWAY_CONFIG],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
                    preexec_fn=_vm_enter(root.name, new_session=True))
                log.close()

    # --- virtual kubelet -------------------------------------------------------------------

    def _virtual_kubelet(self, consumer: str, provider: str, pair: pki.KeyPair) -> str:
        api = self.tb.kube(consumer)
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        ns = tenant_namespace(provider)
        prov = self.tb.cluster(provider)
        ca = prov.root.host_path(PKI).joinpath("ca.crt").read_bytes()
        kubeconfig = pki.kubeconfig(f"https://{prov.root.address}:{API_PORT}", ca, pair,
                                    identity.user_name(consumer), cluster=provider)
        _apply(core.create_namespaced_secret, ns, {"metadata": {"name": f"remote-kubeconfig-{provider}"},
                                                   "stringData": {"kubeconfig": kubeconfig}})
        sa = f"virtual-kubelet-{provider}"
        _apply(core.create_namespaced_service_account, ns, {"metadata": {"name": sa}})
        _apply(client.RbacAuthorizationV1Api(api).create_cluster_role_binding, {
            "metadata": {"name": f"{VK_ROLE}-{provider}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": VK_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
        _, ref = self._vk_image()
        root = self.tb.cluster(consumer).root
        remap = []
        ext = self.external.get(frozenset((consumer, provider)))
        if ext:
            remap = [f"--remote-pod-cidr-remap={prov.spec.pod_cidr}={ext[provider]}",
                     f"--local-pod-cidr-remap={self.tb.cluster(consumer).spec.pod_cidr}={ext[consumer]}"]
        _apply(apps.create_namespaced_deployment, ns, vk_deployment(
            consumer, provider, ref, self.labels.get(provider, {}), self.vk_timers, root.address, remap))
        return f"liqo-{provider}"

    def _wait_node_ready(self, cluster: str, node: str, deadline: float) -> None:
        wait_node_ready(self.tb.kube(cluster), node, deadline, lambda: TestbedError(
            f"virtual node {node} not Ready in cluster {cluster}; its log: "
            f"`kubectl -n {tenant_namespace(node[5:])} logs deploy/virtual-kubelet-{node[5:]}` while the test bed "
            f"runs, else pods/ of {cluster}'s VMs in the logs kept from the failed start"))


def _vm_enter(vm_name: str, new_session: bool = False) -> Callable[[], None]:
    def enter() -> None:
        if new_session:
            os.setsid()
        vmlib.enter(vm_name)
    return enter


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def vk_memory() -> list[tuple[str, float]]:
    """``(provider cluster, resident MiB)`` of every virtual kubelet running on this machine.

    The virtual kubelets run in their consumers' VMs, which are processes of this machine:
    Liqo's (``/usr/bin/virtual-kubelet``, named by ``--foreign-cluster-name=``) and the
    look-alike's (``/vk``, named by ``--foreign-cluster-id=``, which is the cluster's name there).
    """
    out: list[tuple[str, float]] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not argv or not argv[0].endswith((b"/vk", b"/virtual-kubelet")):
                continue
            flags = dict(a.split(b"=", 1) for a in argv[1:] if a.startswith(b"--") and b"=" in a)
            foreign = (flags.get(b"--foreign-cluster-name") or flags[b"--foreign-cluster-id"]).decode()
            rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", (proc / "status").read_text()).group(1))
        except (OSError, KeyError, AttributeError):
            continue
        out.append((foreign, rss_kib / 1024))
    return sorted(out)


def vk_cluster_role() -> dict[str, Any]:
    """What a virtual kubelet may do in its consumer cluster."""
    ro = ["get", "list", "watch"]
    return {"metadata": {"name": VK_ROLE}, "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ro + ["create", "update", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ro + ["create", "update", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ro + ["delete"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "update", "patch"]},
        {"apiGroups": ["", "discovery.k8s.io"], "resources": ["configmaps", "secrets", "services", "endpointslices"],
         "verbs": ro},
        {"apiGroups": [crds.TEP_GROUP], "resources": [crds.TEP_PLURAL], "verbs": ro},
        {"apiGroups": [crds.NSOFF_GROUP], "resources": [crds.NSOFF_PLURAL], "verbs": ro},
    ]}


def vk_deployment(consumer: str, provider: str, image: str, labels: dict[str, str], timers: VkTimers,
                  api_address: str, extra_args: list[str] | None = None) -> dict[str, Any]:
    """The virtual kubelet's Deployment in ``liqo-tenant-<provider>`` of ``consumer``.

    Host network (as the gateway's peers, it reaches the provider's API server on the lab
    network); the consumer's API server is reached at ``api_address`` (the in-cluster
    variables are overridden so kube-proxy is not on the path). ``extra_args`` carries the
    pod-CIDR remapping flags when the two clusters' pod CIDRs collide.
    """
    name = f"virtual-kubelet-{provider}"
    extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    args = [f"--foreign-cluster-id={provider}", f"--home-cluster-id={consumer}", f"--nodename=liqo-{provider}",
            f"--tenant-namespace={tenant_namespace(provider)}", "--foreign-kubeconfig=/etc/liqo/kubeconfig",
            *timers.flags(), *(extra_args or [])] + ([f"--node-extra-labels={extra}"] if extra else [])
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "virtual-kubelet",
                                              "liqo.io/remote-cluster-id": provider}},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "virtual-kubelet",
                                              "liqo.io/remote-cluster-id": provider}},
                 "template": {
                     "metadata": {"labels": {"app.kubernetes.io/name": "virtual-kubelet",
                                             "liqo.io/remote-cluster-id": provider}},
                     "spec": {
                         "serviceAccountName": name, "hostNetwork": True, "terminationGracePeriodSeconds": 5,
                         "nodeSelector": {"kubernetes.io/os": "linux"},
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchExpressions": [
                                 {"key": "liqo.io/type", "operator": "DoesNotExist"}]}]}}},
                         "containers": [{
                             "name": "virtual-kubelet", "image": image, "imagePullPolicy": "Never", "args": args,
                             "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                     {"name": "KUBERNETES_SERVICE_HOST", "value": api_address},
                                     {"name": "KUBERNETES_SERVICE_PORT", "value": str(API_PORT)}],
                             "volumeMounts": [{"name": "remote", "mountPath": "/etc/liqo", "readOnly": True}],
                         }],
                         "volumes": [{"name": "remote", "secret": {
                             "secretName": f"remote-kubeconfig-{provider}",
                             "items": [{"key": "kubeconfig", "path": "kubeconfig"}]}}],
                     }}}}
