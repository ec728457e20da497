"""k3s on the VMs: configuration file, install, readiness, kubeconfig and uninstall commands.

Every cluster of the env is a k3s cluster: its first node runs ``k3s server``, further nodes
(none in the thesis) run ``k3s agent``. Flags go into ``/etc/rancher/k3s/config.yaml`` (one
key per flag, the form k3s reads at start), rendered from ``env.tuning`` and the topology plan:

* Table 7.1: kubelet ``node-status-update-frequency``, kube-controller-manager
  ``node-monitor-grace-period`` and ``pod-eviction-timeout`` (and ``node-monitor-period``);
* the apiserver's ``default-not-ready-toleration-seconds`` and
  ``default-unreachable-toleration-seconds``: on Kubernetes 1.24 eviction is taint based and
  ``pod-eviction-timeout`` no longer decides anything; these default tolerations, added to
  every pod by the DefaultTolerationSeconds admission plugin, are what makes it ~5 s;
* the plan's pod and service CIDRs (and the cluster DNS address inside the service CIDR),
  node name and node labels.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import yaml

from labkit.config import Env, VmHost
from labkit.testbed.vms.commands import STAGING, Arg, Put, Ref, Run, as_root, go_duration
from labkit.testbed.vms.options import VmsOptions
from labkit.topology import Plan

CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
TOKEN_PATH = "/var/lib/rancher/k3s/server/node-token"
AIRGAP_IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
BINARY_PATH = "/usr/local/bin/k3s"
INSTALL_SCRIPT = f"{STAGING}/k3s-install.sh"

#: Keys this module writes into config.yaml; each is a k3s v1.24 server/agent flag.
SERVER_KEYS = frozenset({"node-name", "node-label", "cluster-cidr", "service-cidr", "cluster-dns", "tls-san",
                         "flannel-iface", "disable", "kubelet-arg", "kube-controller-manager-arg",
                         "kube-apiserver-arg", "write-kubeconfig-mode", "https-listen-port"})
AGENT_KEYS = frozenset({"node-name", "node-label", "flannel-iface", "kubelet-arg"})


# --------------------------------------------------------------------------- release files


def release_url(version: str, name: str) -> str:
    """URL of a file of a k3s GitHub release (``+`` in the tag is escaped)."""
    return f"https://github.com/k3s-io/k3s/releases/download/{quote(version, safe='')}/{name}"


def binary_name(arch: str) -> str:
    """Release name of the k3s binary (``k3s`` on amd64, ``k3s-arm64`` on arm64)."""
    return "k3s" if arch == "amd64" else f"k3s-{arch}"


def airgap_images_name(arch: str) -> str:
    """Release name of the air-gap image tarball."""
    return f"k3s-airgap-images-{arch}.tar"


def install_script_url(version: str) -> str:
    """The install script of the pinned tag (not the moving get.k3s.io)."""
    return f"https://raw.githubusercontent.com/k3s-io/k3s/{quote(version, safe='')}/install.sh"


# --------------------------------------------------------------------------- configuration


def cluster_dns(service_cidr: ipaddress.IPv4Network) -> str:
    """The CoreDNS Service address: the 10th address of the service CIDR (k3s' convention)."""
    return str(service_cidr.network_address + 10)


def kubelet_args(env: Env) -> list[str]:
    """Kubelet flags from ``env.tuning`` (Table 7.1)."""
    return [f"node-status-update-frequency={go_duration(env.tuning.kubelet.node_status_update_frequency_s)}"]


def server_config(env: Env, plan: Plan, cluster: str, host: VmHost, options: VmsOptions) -> dict[str, Any]:
    """``config.yaml`` of a cluster's server node.

    Parameters
    ----------
    env, plan
        The env and its topology plan (CIDRs, node labels).
    cluster
        The cluster's name; ``host`` is its first node.
    options
        Components to disable, API port.
    """
    cidrs = plan.cidrs[cluster]
    kcm = env.tuning.controller_manager
    api = env.tuning.apiserver
    return {
        "node-name": host.node,
        "node-label": label_flags(plan.node_labels[cluster][host.node]),
        "cluster-cidr": str(cidrs.pod),
        "service-cidr": str(cidrs.service),
        "cluster-dns": cluster_dns(cidrs.service),
        "https-listen-port": options.api_port,
        "tls-san": [host.address],
        "flannel-iface": host.interface,
        "disable": list(options.disable),
        "write-kubeconfig-mode": "0600",
        "kubelet-arg": kubelet_args(env),
        "kube-controller-manager-arg": [
            f"node-monitor-grace-period={go_duration(kcm.node_monitor_grace_period_s)}",
            f"node-monitor-period={go_duration(kcm.node_monitor_period_s)}",
            f"pod-eviction-timeout={go_duration(kcm.pod_eviction_timeout_s)}",
        ],
        "kube-apiserver-arg": [
            f"default-not-ready-toleration-seconds={_whole_seconds(api.default_not_ready_toleration_s)}",
            f"default-unreachable-toleration-seconds={_whole_seconds(api.default_unreachable_toleration_s)}",
        ],
    }


def agent_config(env: Env, plan: Plan, cluster: str, host: VmHost) -> dict[str, Any]:
    """``config.yaml`` of a further node of a cluster (``k3s agent``)."""
    return {
        "node-name": host.node,
        "node-label": label_flags(plan.node_labels[cluster][host.node]),
        "flannel-iface": host.interface,
        "kubelet-arg": kubelet_args(env),
    }


def label_flags(labels: Mapping[str, str]) -> list[str]:
    """Node labels as ``key=value`` items of ``node-label``, sorted."""
    return [f"{k}={v}" for k, v in sorted(labels.items())]


def _whole_seconds(seconds: float) -> int:
    """The apiserver's toleration flags take whole seconds."""
    if not float(seconds).is_integer():
        raise ValueError(f"toleration seconds must be whole, got {seconds}")
    return int(seconds)


def render_config(config: Mapping[str, Any]) -> str:
    """config.yaml text (keys in the order given)."""
    return "# written by labkit (labkit.testbed.vms.k3s); k3s reads it at start\n" + yaml.safe_dump(
        dict(config), sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------- commands


def install_files(user: str, host: VmHost, config: Mapping[str, Any], env: Env, options: VmsOptions) -> list[Put | Run]:
    """Copy config.yaml into place and get the install script, binary and images (air-gapped) to the VM."""
    node = host.node
    version = env.backend.k3s_version  # type: ignore[union-attr]
    out: list[Put | Run] = [
        Put(node, "k3s.config", f"{STAGING}/k3s-config.yaml", content=render_config(config)),
        Run(node, "k3s.config", as_root(user, "install", "-D", "-m", "0600", f"{STAGING}/k3s-config.yaml",
                                        CONFIG_PATH)),
    ]
    if options.airgap:
        art = options.artifacts_dir / "k3s" / version
        out += [
            Put(node, "k3s.airgap", INSTALL_SCRIPT, local=art / "install.sh", mode=0o755),
            Put(node, "k3s.airgap", f"{STAGING}/k3s", local=art / binary_name(options.arch), mode=0o755),
            Put(node, "k3s.airgap", f"{STAGING}/{airgap_images_name(options.arch)}",
                local=art / airgap_images_name(options.arch)),
            Run(node, "k3s.airgap", as_root(user, "install", "-D", "-m", "0755", f"{STAGING}/k3s", BINARY_PATH)),
            Run(node, "k3s.airgap", as_root(user, "install", "-D", "-m", "0644",
                                            f"{STAGING}/{airgap_images_name(options.arch)}",
                                            f"{AIRGAP_IMAGES_DIR}/{airgap_images_name(options.arch)}")),
        ]
    else:
        out.append(Run(node, "k3s.download", ("curl", "-fsSL", "--retry", "3", "-o", INSTALL_SCRIPT,
                                              install_script_url(version)), timeout=300, retries=options.retries))
    return out


def install_env(env: Env, options: VmsOptions, role: str) -> list[str]:
    """Variables of the install script: the pinned version, skip-download when air-gapped, the role."""
    out = [f"INSTALL_K3S_VERSION={env.backend.k3s_version}", f"INSTALL_K3S_EXEC={role}"]  # type: ignore[union-attr]
    if options.airgap:
        out.append("INSTALL_K3S_SKIP_DOWNLOAD=true")
    return out


def install_server(user: str, host: VmHost, env: Env, options: VmsOptions) -> Run:
    """Run the install script as ``k3s server`` (it creates and starts the service)."""
    argv = as_root(user, "env", *install_env(env, options, "server"), "sh", INSTALL_SCRIPT)
    return Run(host.node, "k3s.install", argv, timeout=900)


def capture_token(user: str, server: VmHost, cluster: str) -> Run:
    """Read the server's node token for the cluster's agents (a secret)."""
    return Run(server.node, "k3s.token", as_root(user, "cat", TOKEN_PATH), capture=f"k3s-token:{cluster}",
               parser="text", secret=True)


def install_agent(user: str, host: VmHost, server: VmHost, cluster: str, env: Env, options: VmsOptions) -> Run:
    """Run the install script as ``k3s agent`` joining the cluster's server."""
    argv: tuple[Arg, ...] = as_root(user, "env", *install_env(env, options, "agent"),
                                    f"K3S_URL=https://{server.address}:{options.api_port}",
                                    Ref(f"k3s-token:{cluster}", "value", prefix="K3S_TOKEN="), "sh", INSTALL_SCRIPT)
    return Run(host.node, "k3s.install", argv, timeout=900)


def wait_node_ready(user: str, server: VmHost, node: str, options: VmsOptions) -> Run:
    """Wait until ``node`` is Ready (retried: the Node object appears a few seconds after start)."""
    return Run(server.node, "k3s.ready", as_root(user, "k3s", "kubectl", "wait", "--for=condition=Ready",
                                                 f"node/{node}", f"--timeout={int(options.ready_timeout_s)}s"),
               timeout=options.ready_timeout_s + 30, retries=12)


def label_node(user: str, server: VmHost, node: str, labels: Mapping[str, str]) -> Run:
    """Apply the plan's labels to ``node`` with ``--overwrite``.

    k3s' ``node-label`` acts only when a node registers, so a second ``up`` with changed labels
    would otherwise keep the old ones.
    """
    return Run(server.node, "k3s.label", as_root(user, "k3s", "kubectl", "label", "node", node, "--overwrite",
                                                 *label_flags(labels)))


def check_node_labels(user: str, server: VmHost, node: str, labels: Mapping[str, str]) -> Run:
    """Read ``node``'s labels and require the plan's."""
    return Run(server.node, "k3s.labels", as_root(user, "k3s", "kubectl", "get", "node", node, "-o", "json"),
               parser="node-labels", expect=dict(labels))


def fetch_kubeconfig(user: str, server: VmHost, cluster: str) -> Run:
    """Read the cluster's admin kubeconfig (a secret) for :func:`rewrite_kubeconfig`."""
    return Run(server.node, "k3s.kubeconfig", as_root(user, "cat", KUBECONFIG_PATH), capture=f"kubeconfig:{cluster}",
               parser="text", secret=True)


def uninstall(user: str, host: VmHost, server: bool) -> Run:
    """Run k3s' own uninstall script when it is there (never fails the tear-down)."""
    script = "/usr/local/bin/k3s-uninstall.sh" if server else "/usr/local/bin/k3s-agent-uninstall.sh"
    return Run(host.node, "k3s.uninstall", as_root(user, "sh", "-c", f"if [ -x {script} ]; then {script}; fi"),
               timeout=600, check=False)


# --------------------------------------------------------------------------- kubeconfig


def rewrite_kubeconfig(text: str, cluster: str, address: str, port: int) -> str:
    """k3s' kubeconfig with the server at ``https://address:port`` and every name set to ``cluster``.

    k3s writes ``https://127.0.0.1:6443`` and names everything ``default``; the control machine
    needs the VM's address, and one distinct name per cluster so contexts can be merged.

    Raises
    ------
    ValueError
        When ``text`` is not a kubeconfig with exactly one cluster, user and context.
    """
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or any(len(data.get(k) or []) != 1 for k in ("clusters", "users", "contexts")):
        raise ValueError(f"kubeconfig of {cluster} is not k3s' (expected one cluster, user and context)")
    entry = data["clusters"][0]
    server = urlsplit(entry["cluster"]["server"])
    host = f"[{address}]" if ":" in address else address
    entry["cluster"]["server"] = urlunsplit((server.scheme or "https", f"{host}:{port}", server.path, "", ""))
    entry["name"] = cluster
    data["users"][0]["name"] = cluster
    context = data["contexts"][0]
    context["name"] = cluster
    context["context"]["cluster"] = cluster
    context["context"]["user"] = cluster
    data["current-context"] = cluster
    return yaml.safe_dump(data, sort_keys=False)
