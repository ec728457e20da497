"""Percona XtraDB Cluster on the VMs: the operator bundle and one PerconaXtraDBCluster per DB domain.

The thesis ran its PDC configuration database with the Percona XtraDB Cluster operator
v1.11.0. The operator and the cluster resource are applied in the cluster that owns the DB
domain's namespace (the consumer that offloads it: the root in the thesis), so the database
pods are scheduled on the virtual nodes of the domain's members through the plan's
nodeAffinity, one pod per member (anti-affinity on ``kubernetes.io/hostname``; each virtual
node has its own hostname). Volumes use Liqo's virtual storage class ``liqo``, which creates
each claim in the provider that runs the pod.
"""

from __future__ import annotations

from typing import Any

import yaml

from labkit.config import DbDomain, Env, Placement, VmHost
from labkit.testbed.vms.commands import STAGING, Put, Run, as_root
from labkit.testbed.vms.options import VmsOptions
from labkit.topology import Plan

OPERATOR_DEPLOYMENT = "percona-xtradb-cluster-operator"
#: Image of Percona XtraDB Cluster 8.0 that operator v1.11.0 ships in its example resource.
PXC_IMAGE = "percona/percona-xtradb-cluster:8.0.27-18.1"
HAPROXY_IMAGE = "percona/percona-xtradb-cluster-operator:{version}-haproxy"
#: Liqo's virtual storage class (chart value ``storage.virtualStorageClassName``).
LIQO_STORAGE_CLASS = "liqo"
VIRTUAL_NODE_TAINT = "virtual-node.liqo.io/not-allowed"


def bundle_url(version: str) -> str:
    """The operator's ``deploy/bundle.yaml`` (CRDs, RBAC, Deployment) at the pinned tag."""
    return f"https://raw.githubusercontent.com/percona/percona-xtradb-cluster-operator/{version}/deploy/bundle.yaml"


def owner(plan: Plan, domain: DbDomain) -> str:
    """The cluster that applies the domain's objects: the consumer offloading its namespace, else its first member."""
    for offload in plan.offloads:
        if offload.namespace == domain.namespace and set(domain.members) <= set(offload.providers) | {offload.consumer}:
            return offload.consumer
    return domain.members[0]


def affinity(plan: Plan, domain: DbDomain) -> dict[str, Any]:
    """The pods' affinity: the plan's nodeAffinity for the domain, one pod per node."""
    node = plan.affinity(Placement(domains=[domain.name]))
    selector = {"matchLabels": {"app.kubernetes.io/instance": domain.name, "app.kubernetes.io/component": "pxc"}}
    return {
        **(node or {}),
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]},
    }


def cluster_resource(env: Env, plan: Plan, domain: DbDomain) -> dict[str, Any]:
    """The PerconaXtraDBCluster of a DB domain (operator version from ``env.backend``)."""
    version = env.backend.percona_operator_version.lstrip("v")  # type: ignore[union-attr]
    tolerations = [{"key": VIRTUAL_NODE_TAINT, "operator": "Exists", "effect": "NoExecute"}]
    size = domain.replicas
    return {
        "apiVersion": "pxc.percona.com/v1",
        "kind": "PerconaXtraDBCluster",
        "metadata": {"name": domain.name, "namespace": domain.namespace,
                     "finalizers": ["delete-pxc-pods-in-order"]},
        "spec": {
            "crVersion": version,
            "allowUnsafeConfigurations": size < 3,
            "updateStrategy": "Never",
            "pxc": {
                "size": size,
                "image": PXC_IMAGE,
                "autoRecovery": True,
                "affinity": {"advanced": affinity(plan, domain)},
                "tolerations": tolerations,
                "volumeSpec": {"persistentVolumeClaim": {
                    "storageClassName": LIQO_STORAGE_CLASS,
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "6G"}}}},
                "gracePeriod": 600,
            },
            "haproxy": {
                "enabled": True,
                "size": size,
                "image": HAPROXY_IMAGE.format(version=version),
                "affinity": {"advanced": {k: v for k, v in affinity(plan, domain).items() if k == "nodeAffinity"}},
                "tolerations": tolerations,
            },
            "proxysql": {"enabled": False},
            "logcollector": {"enabled": False},
            "pmm": {"enabled": False},
        },
    }


def commands(user: str, env: Env, plan: Plan, domain: DbDomain, server: VmHost, options: VmsOptions) -> list[Put | Run]:
    """Apply the operator bundle and the cluster resource in the owner cluster, then wait for it.

    ``server`` is the first node of :func:`owner`'s cluster. When no offloading creates the
    domain's namespace there, it is created first.
    """
    version = env.backend.percona_operator_version  # type: ignore[union-attr]
    bundle = f"{STAGING}/pxc-operator-bundle.yaml"
    resource = f"{STAGING}/pxc-{domain.name}.yaml"
    ns = domain.namespace
    kubectl = ("k3s", "kubectl")
    if options.airgap:
        out: list[Put | Run] = [Put(server.node, "percona.bundle", bundle,
                                    local=options.artifacts_dir / "percona" / version / "bundle.yaml")]
    else:
        out = [Run(server.node, "percona.bundle", ("curl", "-fsSL", "--retry", "3", "-o", bundle, bundle_url(version)),
                   timeout=300, retries=options.retries)]
    if ns not in plan.namespaces(owner(plan, domain)):
        out.append(Run(server.node, "percona.namespace", as_root(user, "sh", "-c",
                       f"k3s kubectl get namespace {ns} >/dev/null 2>&1 || k3s kubectl create namespace {ns}")))
    out += [
        Run(server.node, "percona.operator", as_root(user, *kubectl, "apply", "--server-side", "-n", ns, "-f", bundle),
            timeout=300, retries=2),
        Run(server.node, "percona.operator-ready", as_root(user, *kubectl, "-n", ns, "rollout", "status",
                                                           f"deployment/{OPERATOR_DEPLOYMENT}",
                                                           f"--timeout={int(options.ready_timeout_s)}s"),
            timeout=options.ready_timeout_s + 30),
        Put(server.node, "percona.cluster", resource, content=yaml.safe_dump(cluster_resource(env, plan, domain),
                                                                               sort_keys=False)),
        Run(server.node, "percona.cluster", as_root(user, *kubectl, "apply", "-f", resource), retries=2),
        Run(server.node, "percona.cluster-ready",
            as_root(user, *kubectl, "-n", ns, "wait", f"perconaxtradbcluster/{domain.name}",
                    "--for=jsonpath={.status.state}=ready", f"--timeout={int(options.ready_timeout_s) * 2}s"),
            timeout=options.ready_timeout_s * 2 + 30),
    ]
    return out


def delete(user: str, domain: DbDomain, server: VmHost) -> Run:
    """Delete the cluster resource (never fails the tear-down)."""
    return Run(server.node, "percona.delete",
               as_root(user, "k3s", "kubectl", "-n", domain.namespace, "delete", "perconaxtradbcluster", domain.name,
                       "--ignore-not-found", "--timeout=300s"), timeout=360, check=False)
