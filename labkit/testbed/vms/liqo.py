"""Liqo on the VMs: liqoctl, ``liqoctl install k3s``, out-of-band peering, namespace offloading.

* Install: ``liqoctl install k3s`` per cluster with the cluster name, the plan's cluster labels
  and CIDRs, the API server URL peers reach, and a values file (:func:`values`) carrying the
  settings both backends share: Liqo's timers from ``env.tuning.liqo``, the gateway's WireGuard
  implementation, and a cluster ID derived from the env and cluster names (Liqo wants a
  UUID; a derived one makes the virtual nodes' ``liqo.io/remote-cluster-id`` known in advance).
* Peering, in the directions of the plan: the provider prints its peer command
  (``liqoctl generate peer-command --only-command``); the executor parses auth URL, cluster ID
  and token out of it (:func:`parse_peer_command`) and runs ``liqoctl peer out-of-band`` on the
  consumer with them. The argv is built here, never taken from the provider's output.
* Offloading: ``liqoctl offload namespace`` with the plan's pod strategy, EnforceSameName and
  one ``--selector`` per node-selector term (terms are ORed, as in the plan).
* Verification: every virtual node ``liqo-<provider>`` is Ready in its consumer and carries
  the plan's labels; every NamespaceOffloading reaches phase Ready.
"""

from __future__ import annotations

from typing import Any

import yaml

from labkit.config import Env, VmHost
from labkit.testbed import liqoctl
from labkit.testbed.liqoctl import CLUSTER_ID_NAMESPACE, PeerCommandError, cluster_labels_flag, parse_peer_command, render_values
from labkit.testbed.vms.commands import STAGING, Put, Ref, Run, as_root, go_duration
from labkit.testbed.vms.options import VmsOptions
from labkit.topology import OffloadPlan, Plan, VirtualNode
from labkit.topology.labels import LIQO_REMOTE_CLUSTER_ID, liqoctl_selectors

LIQOCTL = "/usr/local/bin/liqoctl"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
VALUES = f"{STAGING}/liqo-values.yaml"
CHART = f"{STAGING}/liqo-chart"
__all__ = ["CLUSTER_ID_NAMESPACE", "PeerCommandError", "cluster_id", "cluster_labels_flag", "parse_peer_command",
           "render_values", "values"]


def cluster_id(env: Env, cluster: str) -> str:
    """The Liqo cluster ID of ``cluster`` (:func:`labkit.testbed.liqoctl.cluster_id` of the env's name)."""
    return liqoctl.cluster_id(env.name, cluster)


def release_url(version: str, arch: str) -> str:
    """The liqoctl release tarball of ``version``."""
    return f"https://github.com/liqotech/liqo/releases/download/{version}/liqoctl-linux-{arch}.tar.gz"


def _liqoctl(user: str, *args: str | Ref) -> tuple[str | Ref, ...]:
    """liqoctl as root with the cluster's admin kubeconfig."""
    return as_root(user, "env", f"KUBECONFIG={KUBECONFIG}", LIQOCTL, *args)


def _kubectl(user: str, *args: str) -> tuple[str, ...]:
    """k3s' kubectl as root."""
    return as_root(user, "k3s", "kubectl", *args)  # type: ignore[return-value]


# --------------------------------------------------------------------------- install


def values(env: Env, cluster: str) -> dict[str, Any]:
    """The Helm values both backends share (:func:`labkit.testbed.liqoctl.values`), with the VMs' WireGuard."""
    return liqoctl.values(env.tuning.liqo, env.backend.wireguard_implementation,  # type: ignore[union-attr]
                          cluster_id(env, cluster))


def install_liqoctl(user: str, host: VmHost, env: Env, options: VmsOptions) -> list[Put | Run]:
    """Get the pinned liqoctl onto the VM (downloaded there, or copied when air-gapped)."""
    version = env.backend.liqo_version  # type: ignore[union-attr]
    node = host.node
    tarball = f"{STAGING}/liqoctl.tar.gz"
    if options.airgap:
        art = options.artifacts_dir / "liqo" / version
        src = f"{STAGING}/liqo-source.tar.gz"
        out: list[Put | Run] = [
            Put(node, "liqoctl.airgap", tarball, local=art / f"liqoctl-linux-{options.arch}.tar.gz"),
            Put(node, "liqoctl.airgap", src, local=art / "liqo-source.tar.gz"),
            Run(node, "liqoctl.airgap", ("sh", "-c", f"rm -rf {CHART} && mkdir -p {CHART} && tar -xzf {src} -C {CHART} "
                                        f"--strip-components=3 liqo-{version.lstrip('v')}/deployments/liqo")),
        ]
    else:
        download = ("curl", "-fsSL", "--retry", "3", "-o", tarball, release_url(version, options.arch))
        out = [Run(node, "liqoctl.download", download, timeout=300, retries=options.retries)]
    out += [
        Run(node, "liqoctl.unpack", ("tar", "-xzf", tarball, "-C", STAGING, "liqoctl")),
        Run(node, "liqoctl.install", as_root(user, "install", "-m", "0755", f"{STAGING}/liqoctl", LIQOCTL)),
        Run(node, "liqoctl.version", (LIQOCTL, "version", "--client"), parser="text",
            expect={"contains": version}),
    ]
    return out


def install(user: str, env: Env, plan: Plan, cluster: str, server: VmHost, options: VmsOptions) -> list[Put | Run]:
    """``liqoctl install k3s`` for one cluster, with its values file."""
    cidrs = plan.cidrs[cluster]
    args = liqoctl.install_args(cluster, env.backend.liqo_version,  # type: ignore[union-attr]
                                plan.cluster_labels[cluster], str(cidrs.pod), str(cidrs.service),
                                f"https://{server.address}:{options.api_port}", VALUES, options.ready_timeout_s,
                                chart=CHART if options.airgap else None)
    return [Put(server.node, "liqo.values", VALUES, content=render_values(values(env, cluster))),
            Run(server.node, "liqo.install", _liqoctl(user, *args), timeout=options.ready_timeout_s + 60)]


# --------------------------------------------------------------------------- peering


def peer_info(user: str, provider: str, server: VmHost) -> Run:
    """The provider prints its peer command; parsed into ``peer-info:<provider>``."""
    return Run(server.node, "liqo.peer-info", _liqoctl(user, "generate", "peer-command", "--only-command"),
               capture=f"peer-info:{provider}", parser="peer-command", secret=True, retries=6)


def peer(user: str, env: Env, consumer_server: VmHost, provider: str, options: VmsOptions) -> Run:
    """``liqoctl peer out-of-band`` from the consumer towards ``provider``."""
    key = f"peer-info:{provider}"
    args = liqoctl.peer_args(provider, Ref(key, "auth_url"), cluster_id(env, provider), Ref(key, "token"),
                             options.ready_timeout_s)
    return Run(consumer_server.node, "liqo.peer", _liqoctl(user, *args), timeout=options.ready_timeout_s + 60)


# --------------------------------------------------------------------------- offloading


def namespace_manifest(namespace: str) -> str:
    """A Namespace object as YAML (applied before it is offloaded)."""
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, sort_keys=False)


def offload(user: str, offload_plan: OffloadPlan, server: VmHost, options: VmsOptions) -> list[Put | Run]:
    """Create the namespace and offload it with the plan's strategies and cluster selector."""
    path = f"{STAGING}/namespace-{offload_plan.namespace}.yaml"
    args = liqoctl.offload_args(offload_plan.namespace, offload_plan.mapping_strategy, offload_plan.pod_strategy,
                                liqoctl_selectors(offload_plan.cluster_selector), options.ready_timeout_s)
    return [
        Put(server.node, "liqo.namespace", path, content=namespace_manifest(offload_plan.namespace)),
        Run(server.node, "liqo.namespace", _kubectl(user, "apply", "-f", path)),
        Run(server.node, "liqo.offload", _liqoctl(user, *args), timeout=options.ready_timeout_s + 60),
    ]


def check_offload(user: str, offload_plan: OffloadPlan, server: VmHost) -> Run:
    """The NamespaceOffloading reaches phase Ready (retried while Liqo creates the twins)."""
    return Run(server.node, "liqo.offload-ready",
               _kubectl(user, "get", "namespaceoffloading", "offloading", "-n", offload_plan.namespace,
                        "-o", "jsonpath={.status.offloadingPhase}"),
               parser="text", expect={"value": "Ready"}, retries=24)


# --------------------------------------------------------------------------- verification


def expected_virtual_node_labels(env: Env, node: VirtualNode) -> dict[str, str]:
    """Labels the virtual node must carry: the plan's, with Liqo's real cluster ID."""
    return {**node.labels, LIQO_REMOTE_CLUSTER_ID: cluster_id(env, node.provider)}


def wait_virtual_node(user: str, node: VirtualNode, server: VmHost, options: VmsOptions) -> list[Run]:
    """The virtual node appears and becomes Ready in the consumer (retried until it exists)."""
    return [
        Run(server.node, "liqo.virtual-node",
            _kubectl(user, "wait", "--for=condition=Ready", f"node/{node.name}",
                     f"--timeout={int(options.ready_timeout_s)}s"),
            timeout=options.ready_timeout_s + 30, retries=12),
    ]


def check_virtual_node(user: str, env: Env, node: VirtualNode, server: VmHost) -> Run:
    """The virtual node's labels include the plan's."""
    return Run(server.node, "liqo.virtual-node-labels", _kubectl(user, "get", "node", node.name, "-o", "json"),
               parser="node-labels", expect=expected_virtual_node_labels(env, node))


# --------------------------------------------------------------------------- tear-down


def unoffload(user: str, offload_plan: OffloadPlan, server: VmHost) -> Run:
    """``liqoctl unoffload namespace`` (never fails the tear-down)."""
    return Run(server.node, "liqo.unoffload", _liqoctl(user, "unoffload", "namespace", offload_plan.namespace),
               timeout=600, check=False)


def unpeer(user: str, consumer_server: VmHost, provider: str) -> Run:
    """``liqoctl unpeer out-of-band`` (never fails the tear-down)."""
    return Run(consumer_server.node, "liqo.unpeer", _liqoctl(user, "unpeer", "out-of-band", provider),
               timeout=600, check=False)


def uninstall(user: str, server: VmHost) -> Run:
    """``liqoctl uninstall --purge`` when liqoctl is there (never fails the tear-down)."""
    return Run(server.node, "liqo.uninstall",
               as_root(user, "sh", "-c", f"if [ -x {LIQOCTL} ]; then KUBECONFIG={KUBECONFIG} {LIQOCTL} uninstall "
                                         "--purge --skip-confirm; fi"),
               timeout=900, check=False)
