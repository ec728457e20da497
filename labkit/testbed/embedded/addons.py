"""Cluster add-ons: CoreDNS v1.11.1 as a Deployment from a locally built image.

The image has one layer holding the static ``coredns`` binary built by
:mod:`~labkit.testbed.embedded.binaries`; it is written with :mod:`labkit.images.oci` and
imported into every node's containerd. The Corefile serves ``cluster.local`` only: there is
no upstream resolver (nothing may leave the kit's namespaces). It is kubeadm's and k3s' Corefile
but for one line: a name that does not exist (NXDOMAIN) is cached 5 s, not 30 s (the ``ttl`` of
the kubernetes plugin). The members of a DB domain start together and look each other up before
the others have addresses; with 30 s the joiners found their donor ~20 s after it was ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from labkit import paths
from labkit.images import oci
from labkit.testbed.embedded.binaries import COREDNS_VERSION

COREDNS_REF = f"labkit.local/coredns:{COREDNS_VERSION}"

COREFILE = """.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30 {
        denial 9984 5
    }
    loop
    reload
    loadbalance
}
"""


def coredns_archive(binary: Path) -> Path:
    """The CoreDNS OCI archive (built once per binary into ``~/.cache/labkit/images``)."""
    stat = binary.stat()
    out = paths.cache_dir() / "images" / f"coredns-{COREDNS_VERSION}-{stat.st_size}-{int(stat.st_mtime)}.tar"
    if out.exists():
        return out
    blobs = out.parent / "blobs-coredns"
    info = oci.tarfile.TarInfo("coredns")
    info.mode, info.size = 0o755, stat.st_size
    layer = oci.write_layer([oci.Entry(info, lambda: binary.open("rb"))], blobs)
    oci.write_archive(out, COREDNS_REF, [layer], oci.ImageConfig(entrypoint=("/coredns",)))
    return out


def _apply(create: Any, *args: Any) -> None:
    try:
        create(*args)
    except ApiException as exc:
        if exc.status != 409:  # already there
            raise


def deploy_coredns(api: client.ApiClient, dns_ip: str) -> None:
    """Create CoreDNS's RBAC, ConfigMap, Deployment and the ``kube-dns`` Service at ``dns_ip``."""
    core, rbac, apps = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.AppsV1Api(api)
    ns = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    _apply(core.create_namespaced_service_account, ns, {"metadata": {"name": "coredns"}})
    _apply(rbac.create_cluster_role, {
        "metadata": {"name": "system:coredns"},
        "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                   "verbs": ["list", "watch"]},
                  {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]})
    _apply(rbac.create_cluster_role_binding, {
        "metadata": {"name": "system:coredns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
        "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]})
    _apply(core.create_namespaced_config_map, ns, {"metadata": {"name": "coredns"}, "data": {"Corefile": COREFILE}})
    _apply(apps.create_namespaced_deployment, ns, {
        "metadata": {"name": "coredns", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "coredns",
                    "priorityClassName": "system-cluster-critical",
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "coredns", "image": COREDNS_REF, "imagePullPolicy": "Never",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "10m", "memory": "20Mi"},
                                      "limits": {"memory": "170Mi"}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                          "initialDelaySeconds": 10, "periodSeconds": 10},
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                },
            },
        },
    })
    _apply(core.create_namespaced_service, ns, {
        "metadata": {"name": "kube-dns", "labels": labels},
        "spec": {"selector": labels, "clusterIP": dns_ip,
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}})
