"""The per-host runbooks of the VMs backend: ``up_runbook`` and ``down_runbook``.

Both are built from the env (inventory, versions, timers) and the topology plan (peerings,
CIDRs, labels, offloads) only, with no connection to any VM, so ``--dry-run`` prints the very
objects the executor runs. Stages of ``up_runbook``, in order:

=====================  =======================================================================
preflight              staging directory, passwordless sudo, kernel WireGuard module if pinned
k3s.files              config.yaml; install script (+ binary and images when air-gapped)
k3s.servers            ``k3s server`` on each cluster's first node
k3s.tokens/.agents     further nodes join as agents (only for multi-node clusters)
k3s.ready              every node Ready with the plan's labels
k3s.kubeconfig         admin kubeconfigs read back (rewritten on the control machine)
images                 labkit images copied to every node, ``k3s ctr images import``
liqoctl                the pinned liqoctl on each server
liqo.install           ``liqoctl install k3s`` per cluster
liqo.peer-info         each provider prints its peer command (auth URL, token)
liqo.peer              ``liqoctl peer out-of-band`` in the plan's directions
liqo.virtual-nodes     each virtual node Ready with the plan's labels
liqo.offload           namespaces offloaded with the plan's selectors and strategies
percona                operator bundle and PerconaXtraDBCluster per DB domain
=====================  =======================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from labkit.config import Env, VmHost, VmsBackend
from labkit.testbed.base import TestbedError
from labkit.testbed.vms import artifacts, k3s, liqo, percona
from labkit.testbed.vms.commands import STAGING, Command, Runbook, Put, Run, Stage, as_root
from labkit.testbed.vms.options import VmsOptions
from labkit.topology import Plan


def topology_plan(env: Env) -> Plan:
    """The topology plan of ``env`` (adapter over :func:`labkit.topology.plan`)."""
    from labkit.topology import plan

    return plan(env)


@dataclass(frozen=True)
class Inventory:
    """The VMs of an env: SSH user and one :class:`~labkit.config.VmHost` per node."""

    user: str
    hosts: Mapping[str, VmHost]
    ssh_key: Path | None = None

    def host(self, node: str) -> VmHost:
        """The VM playing ``node``."""
        return self.hosts[node]


def inventory(env: Env) -> Inventory:
    """The env's inventory; every node of every cluster must have a VM.

    Raises
    ------
    TestbedError
        When the env is not a ``vms`` env, or nodes have no host (naming them).
    """
    backend = env.backend
    if not isinstance(backend, VmsBackend):
        raise TestbedError(f"env {env.name!r} has backend {backend.kind!r}; the VMs backend needs `backend: kind: vms`")
    hosts = {h.node: h for h in backend.hosts}
    missing = [n.name for c in env.clusters for n in c.nodes if n.name not in hosts]
    if missing:
        raise TestbedError(f"env {env.name!r}: no VM for node(s) {missing} in backend.hosts "
                           "(add `- {node: <name>, address: <ssh address>, interface: <lab nic>}`)")
    key = Path(backend.ssh_key).expanduser() if backend.ssh_key else None
    return Inventory(user=backend.user, hosts=hosts, ssh_key=key)


def servers(env: Env, inv: Inventory) -> dict[str, VmHost]:
    """Each cluster's server VM (its first node), by cluster name."""
    return {c.name: inv.host(c.nodes[0].name) for c in env.clusters}


def agents(env: Env, inv: Inventory) -> dict[str, list[VmHost]]:
    """Each cluster's further VMs (``k3s agent``), by cluster name."""
    return {c.name: [inv.host(n.name) for n in c.nodes[1:]] for c in env.clusters}


def image_archive_placeholder(name: str) -> Path:
    """What dry-run shows for an image archive that is not built yet."""
    return Path(f"<labkit.images.build({name!r})>")


# --------------------------------------------------------------------------- up


def up_runbook(env: Env, topo: Plan, options: VmsOptions | None = None,
            archives: Mapping[str, Path] | None = None) -> Runbook:
    """Every command that brings ``env`` up, in order (see the module docstring).

    Parameters
    ----------
    env, topo
        The env and its topology plan.
    options
        Backend settings (air-gap, images, Percona, timeouts).
    archives
        OCI archive of each image of ``options.images`` (``labkit.images.build``); ``None``
        shows placeholders (dry-run builds nothing).
    """
    options = options or VmsOptions()
    inv = inventory(env)
    builders: list[tuple[str, Callable[[], list[Command]]]] = [
        ("preflight", lambda: _preflight(env, inv)),
        ("k3s.files", lambda: _k3s_files(env, topo, inv, options)),
        ("k3s.servers", lambda: [k3s.install_server(inv.user, s, env, options) for s in servers(env, inv).values()]),
        ("k3s.tokens", lambda: [k3s.capture_token(inv.user, servers(env, inv)[c], c)
                                for c, more in agents(env, inv).items() if more]),
        ("k3s.agents", lambda: [k3s.install_agent(inv.user, a, servers(env, inv)[c], c, env, options)
                                for c, more in agents(env, inv).items() for a in more]),
        ("k3s.ready", lambda: _k3s_ready(env, topo, inv, options)),
        ("k3s.kubeconfig", lambda: [k3s.fetch_kubeconfig(inv.user, s, c) for c, s in servers(env, inv).items()]),
        ("images", lambda: _images(env, inv, options, archives)),
        ("liqoctl", lambda: [c for s in servers(env, inv).values()
                             for c in liqo.install_liqoctl(inv.user, s, env, options)]),
        ("liqo.install", lambda: [c for cl, s in servers(env, inv).items()
                                  for c in liqo.install(inv.user, env, topo, cl, s, options)]),
        ("liqo.peer-info", lambda: [liqo.peer_info(inv.user, p, servers(env, inv)[p]) for p in _providers(topo)]),
        ("liqo.peer", lambda: [liqo.peer(inv.user, env, servers(env, inv)[link.consumer], link.provider, options)
                               for link in topo.peerings]),
        ("liqo.virtual-nodes", lambda: _virtual_nodes(env, topo, inv, options)),
        ("liqo.offload", lambda: [c for o in topo.offloads
                                  for c in (*liqo.offload(inv.user, o, servers(env, inv)[o.consumer], options),
                                            liqo.check_offload(inv.user, o, servers(env, inv)[o.consumer]))]),
        ("percona", lambda: _percona(env, topo, inv, options)),
    ]
    return _stages(builders)


def _stages(builders: Iterable[tuple[str, Callable[[], list[Command]]]]) -> Runbook:
    """Stages from (name, builder) pairs, leaving out empty ones."""
    stages = []
    for name, build in builders:
        commands = tuple(build())
        if commands:
            stages.append(Stage(name, commands))
    return Runbook(tuple(stages))


def _providers(topo: Plan) -> list[str]:
    """Every cluster that is a provider of some peering, in plan order."""
    return list(dict.fromkeys(link.provider for link in topo.peerings))


def _preflight(env: Env, inv: Inventory) -> list[Command]:
    """Staging directory, sudo without password, the kernel WireGuard module when pinned."""
    out: list[Command] = []
    kernel_wg = env.backend.wireguard_implementation == "kernel"  # type: ignore[union-attr]
    for host in inv.hosts.values():
        out.append(Run(host.node, "preflight.staging", ("mkdir", "-p", STAGING), retries=2))
        if inv.user != "root":
            out.append(Run(host.node, "preflight.sudo", ("sudo", "-n", "true")))
        out.append(Run(host.node, "preflight.interface", ("ip", "-o", "link", "show", "dev", host.interface)))
        if kernel_wg:
            out.append(Run(host.node, "preflight.wireguard", as_root(inv.user, "modprobe", "wireguard")))
    return out


def _k3s_files(env: Env, topo: Plan, inv: Inventory, options: VmsOptions) -> list[Command]:
    """config.yaml and install files for every VM (server or agent)."""
    out: list[Command] = []
    for cluster in env.clusters:
        server = inv.host(cluster.nodes[0].name)
        config = k3s.server_config(env, topo, cluster.name, server, options)
        out += k3s.install_files(inv.user, server, config, env, options)
        for node in cluster.nodes[1:]:
            host = inv.host(node.name)
            out += k3s.install_files(inv.user, host, k3s.agent_config(env, topo, cluster.name, host), env, options)
    return out


def _k3s_ready(env: Env, topo: Plan, inv: Inventory, options: VmsOptions) -> list[Command]:
    """Every node Ready, then its labels checked, from its cluster's server."""
    out: list[Command] = []
    for cluster in env.clusters:
        server = inv.host(cluster.nodes[0].name)
        for node in cluster.nodes:
            labels = topo.node_labels[cluster.name][node.name]
            out.append(k3s.wait_node_ready(inv.user, server, node.name, options))
            out.append(k3s.label_node(inv.user, server, node.name, labels))
            out.append(k3s.check_node_labels(inv.user, server, node.name, labels))
    return out


def _images(env: Env, inv: Inventory, options: VmsOptions, archives: Mapping[str, Path] | None) -> list[Command]:
    """Copy every image archive to every VM and import it into k3s' containerd."""
    files = {f"{name}.oci.tar": (archives or {}).get(name) or image_archive_placeholder(name)
             for name in options.images}
    extra = list(options.extra_archives) + (artifacts.image_archives(options) if options.airgap else [])
    files.update({path.name: path for path in extra})
    out: list[Command] = []
    for host in inv.hosts.values():
        for remote_name, local in files.items():
            remote = f"{STAGING}/images/{remote_name}"
            out.append(Put(host.node, "images.copy", remote, local=local))
            out.append(Run(host.node, "images.import", as_root(inv.user, "k3s", "ctr", "images", "import", remote),
                           timeout=900, retries=1))
    return out


def _virtual_nodes(env: Env, topo: Plan, inv: Inventory, options: VmsOptions) -> list[Command]:
    """Each virtual node Ready in its consumer, with the plan's labels."""
    out: list[Command] = []
    for node in topo.virtual_nodes:
        server = servers(env, inv)[node.consumer]
        out += liqo.wait_virtual_node(inv.user, node, server, options)
        out.append(liqo.check_virtual_node(inv.user, env, node, server))
    return out


def _percona(env: Env, topo: Plan, inv: Inventory, options: VmsOptions) -> list[Command]:
    """The operator and a cluster resource per DB domain, in the domain's owner cluster."""
    if not options.percona:
        return []
    return [c for d in env.db_domains
            for c in percona.commands(inv.user, env, topo, d, servers(env, inv)[percona.owner(topo, d)], options)]


# --------------------------------------------------------------------------- down


def down_runbook(env: Env, topo: Plan, options: VmsOptions | None = None) -> Runbook:
    """Every command that tears ``env`` down; no command fails the plan (``check=False``).

    Order: database, unoffload, unpeer (consumers), ``liqoctl uninstall --purge``,
    ``k3s-uninstall.sh`` / ``k3s-agent-uninstall.sh``, staging directory.
    """
    options = options or VmsOptions()
    inv = inventory(env)
    srv = servers(env, inv)
    builders: list[tuple[str, Callable[[], list[Command]]]] = [
        ("percona.delete", lambda: [percona.delete(inv.user, d, srv[percona.owner(topo, d)])
                                    for d in env.db_domains] if options.percona else []),
        ("liqo.unoffload", lambda: [liqo.unoffload(inv.user, o, srv[o.consumer]) for o in topo.offloads]),
        ("liqo.unpeer", lambda: [liqo.unpeer(inv.user, srv[link.consumer], link.provider) for link in topo.peerings]),
        ("liqo.uninstall", lambda: [liqo.uninstall(inv.user, s) for s in srv.values()]),
        ("k3s.uninstall", lambda: [k3s.uninstall(inv.user, a, server=False) for more in agents(env, inv).values()
                                   for a in more] + [k3s.uninstall(inv.user, s, server=True) for s in srv.values()]),
        ("cleanup", lambda: [Run(h.node, "cleanup.staging", ("rm", "-rf", STAGING), check=False)
                             for h in inv.hosts.values()]),
    ]
    return _stages(builders)


def local_files(plan: Runbook) -> list[Path]:
    """Files of the control machine the plan copies (what an air-gapped run must have)."""
    return list(dict.fromkeys(c.local for c in plan.commands() if isinstance(c, Put) and c.local is not None))
