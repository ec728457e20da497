"""What both backends tell ``liqoctl`` v0.10: install values and arguments, peering, offloading.

The embedded backend runs liqoctl on this machine against the clusters' API servers
(:mod:`labkit.testbed.embedded.liqo.liqoctl`); the VMs backend runs it on each server VM over
SSH (:mod:`labkit.testbed.vms.liqo`). Both build their argument lists and Helm values here, so
the two run the same Liqo with the same settings:

* :func:`values`: the Helm values of ``liqoctl install`` both share: Liqo's timers from an env's
  ``tuning.liqo``, the gateway's WireGuard implementation and a cluster ID derived from the env
  and cluster names (Liqo wants a UUID; a derived one is known before the install);
* :func:`install_args`, :func:`peer_args`, :func:`offload_args`: the argument lists;
* :func:`parse_peer_command`: auth URL, cluster ID and token out of the provider's
  ``liqoctl generate peer-command --only-command`` (the argv to run is built here, never taken
  from that output).
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from labkit.config import Env, LiqoTuning

#: Namespace of the UUIDs labkit derives cluster IDs from (uuid5 of ``<env>/<cluster>``).
CLUSTER_ID_NAMESPACE = uuid.UUID("6c1b5f8e-2d54-4f0a-9a43-6c61626b6974")
#: Liqo's namespace (liqoctl's default).
LIQO_NAMESPACE = "liqo"


#: Who may peer the clusters, with what each is.
PEERINGS = {"liqo": "the thesis' Liqo, built from its source by `invoke setup`",
            "kit": "the kit's Liqo look-alike, the fallback without Liqo's source"}
#: Overrides an env's ``backend.peering`` for a run (``liqo`` or ``kit``).
PEERING_ENV = "LABKIT_PEERING"


class PeerCommandError(ValueError):
    """A provider's ``liqoctl generate peer-command`` output is not what Liqo v0.10 prints."""


def go_duration(seconds: float) -> str:
    """A duration in Go's syntax as Kubernetes and Liqo flags take it (``5s``, ``1500ms``)."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds}")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    millis = seconds * 1000
    if not float(round(millis, 6)).is_integer():
        raise ValueError(f"durations are rendered to the millisecond, got {seconds} s")
    return f"{int(round(millis))}ms"


def cluster_id(env_name: str, cluster: str) -> str:
    """The Liqo cluster ID of ``cluster``: a UUID derived from the env and cluster names."""
    return str(uuid.uuid5(CLUSTER_ID_NAMESPACE, f"{env_name}/{cluster}"))


def values(tuning: LiqoTuning, wireguard_implementation: str, cluster_id_: str) -> dict[str, Any]:
    """The Helm values both backends share: timers, WireGuard implementation, cluster ID.

    Keys are those of the Liqo v0.10.2 chart (``deployments/liqo/values.yaml``): extra
    arguments of the controller manager, the gateway and the virtual kubelets.
    """
    return {
        "discovery": {"config": {"clusterIDOverride": cluster_id_}},
        "controllerManager": {"pod": {"extraArgs": [
            f"--foreign-cluster-ping-interval={go_duration(tuning.foreign_cluster_ping_interval_s)}",
            f"--foreign-cluster-ping-timeout={go_duration(tuning.foreign_cluster_ping_timeout_s)}",
        ]}},
        "gateway": {
            "config": {"wireguardImplementation": wireguard_implementation},
            "pod": {"extraArgs": [
                f"--gateway.ping-interval={go_duration(tuning.gateway_ping_interval_s)}",
                f"--gateway.ping-loss-threshold={tuning.gateway_ping_loss_threshold}",
            ]},
        },
        "virtualKubelet": {"extra": {"args": [
            f"--node-ping-interval={go_duration(tuning.node_ping_interval_s)}",
            f"--node-ping-timeout={go_duration(tuning.node_ping_timeout_s)}",
            f"--node-lease-duration={go_duration(tuning.node_lease_duration_s)}",
        ]}},
    }


def render_values(data: Mapping[str, Any]) -> str:
    """values.yaml text."""
    return "# written by labkit (labkit.testbed.liqoctl)\n" + yaml.safe_dump(dict(data), sort_keys=False)


def cluster_labels_flag(labels: Mapping[str, str]) -> str:
    """``--cluster-labels`` value: ``k=v`` pairs joined by commas, sorted."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def install_args(cluster: str, version: str, labels: Mapping[str, str], pod_cidr: str, service_cidr: str,
                 api_server_url: str, values_file: str, timeout_s: float, chart: str | None = None,
                 reserved_subnets: Sequence[str] = (), sets: Mapping[str, str] | None = None) -> list[str]:
    """``liqoctl install k3s`` for one cluster (``chart``: a local chart, e.g. from the source)."""
    args = ["install", "k3s", "--version", version, "--cluster-name", cluster,
            "--cluster-labels", cluster_labels_flag(labels), "--pod-cidr", pod_cidr, "--service-cidr", service_cidr,
            "--api-server-url", api_server_url, "--values", values_file, "--disable-telemetry",
            "--timeout", go_duration(timeout_s)]
    if chart:
        args += ["--local-chart-path", chart]
    if reserved_subnets:
        args += ["--reserved-subnets", ",".join(reserved_subnets)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def peer_args(provider: str, auth_url: Any, provider_id: str, token: Any, timeout_s: float) -> list[Any]:
    """``liqoctl peer out-of-band`` towards ``provider`` (run on the consumer).

    ``auth_url`` and ``token`` are strings, or placeholders a backend fills in later (the VMs
    backend's references to the provider's captured peer command).
    """
    return ["peer", "out-of-band", provider, "--auth-url", auth_url, "--cluster-id", provider_id,
            "--auth-token", token, "--timeout", go_duration(timeout_s)]


def offload_args(namespace: str, mapping: str, pod_strategy: str, selectors: Sequence[str],
                 timeout_s: float) -> list[str]:
    """``liqoctl offload namespace`` with the plan's strategies and one ``--selector`` per term (ORed)."""
    args = ["offload", "namespace", namespace, "--namespace-mapping-strategy", mapping,
            "--pod-offloading-strategy", pod_strategy, "--timeout", go_duration(timeout_s)]
    for selector in selectors:
        args += ["--selector", selector]
    return args


def parse_peer_command(text: str) -> dict[str, str]:
    """Auth URL, cluster ID/name and token from ``liqoctl generate peer-command --only-command``.

    Liqo v0.10 prints one line: ``liqoctl peer out-of-band <name> --auth-url <url>
    --cluster-id <id> --auth-token <token>``.

    Raises
    ------
    PeerCommandError
        When the line is not of that form (the message shows it without the token).
    """
    lines = [line for line in text.splitlines() if "peer out-of-band" in line]
    if len(lines) != 1:
        raise PeerCommandError(f"expected one 'peer out-of-band' line, got {len(lines)} in {text[:200]!r}")
    words = shlex.split(lines[0])
    try:
        start = words.index("out-of-band")
        name = words[start + 1]
        flags = dict(zip(words[start + 2::2], words[start + 3::2], strict=True))
    except (ValueError, IndexError) as err:
        raise PeerCommandError(f"cannot read the peer command ({err})") from None
    wanted = {"--auth-url": "auth_url", "--cluster-id": "cluster_id", "--auth-token": "token"}
    missing = [f for f in wanted if f not in flags]
    if missing or name.startswith("-"):
        shown = " ".join(w for w in words if w != flags.get("--auth-token"))
        raise PeerCommandError(f"peer command lacks {missing or ['the cluster name']}: {shown}")
    return {"cluster_name": name, **{field: flags[flag] for flag, field in wanted.items()}}


def peering_setting(env: Env) -> str:
    """Who peers ``env``'s clusters: ``$LABKIT_PEERING`` when set, else the env's ``backend.peering``."""
    return os.environ.get(PEERING_ENV, "").strip() or getattr(env.backend, "peering", "liqo")


def peering_label(peering: str, liqo_version: str) -> str:
    """What a run manifest and a report say about the peering that ran."""
    return f"Liqo {liqo_version} (built from its source, driven with liqoctl)" if peering == "liqo" else \
        "the kit's Liqo look-alike, not Liqo (backend.peering: kit)"


def runs_liqo(env: Any) -> bool:
    """Whether Liqo itself peers ``env``'s clusters (on VMs always; embedded unless the look-alike is set)."""
    return env.backend.kind == "vms" or peering_setting(env) == "liqo"


def peering_of(env: Any) -> str:
    """Who peers ``env``'s clusters, as a run manifest and a report say it (an :class:`labkit.config.Env`)."""
    backend = env.backend
    if backend.kind == "vms":
        return f"Liqo {backend.liqo_version} (liqoctl on the VMs)"
    return peering_label(peering_setting(env), backend.liqo_version)
