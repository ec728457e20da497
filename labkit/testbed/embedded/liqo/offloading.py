"""Namespace offloading with Liqo's strategies, mapping and cluster selector.

:func:`offload` is ``liqoctl offload namespace``: it creates the NamespaceOffloading
``offloading`` in the consumer's namespace, then plays Liqo's offloading controller: for
every provider peered with the consumer whose virtual node the cluster selector selects, it
creates the remote namespace (``<namespace>-<consumer>`` with ``DefaultName``, the same name
with ``EnforceSameName``) labelled ``liqo.io/remote-cluster-id=<consumer>``, binds the
consumer's identity there, and records it in the status the virtual kubelets read.

A namespace that is itself a remote namespace (received by offloading) cannot be offloaded
again (Liqo refuses re-offloading). The pod offloading strategy is enforced as Liqo's
webhook does, through the scheduling constraints of :func:`pod_constraints`, which the
kit's manifests merge into every pod of an offloaded namespace (there is no admission
webhook in the embedded clusters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from labkit.testbed.embedded.liqo import crds, identity

STRATEGIES = ("Local", "Remote", "LocalAndRemote")
MAPPINGS = ("DefaultName", "EnforceSameName")
VIRTUAL_NODE_TAINT = "virtual-node.liqo.io/not-allowed"


class OffloadingError(ValueError):
    """An offloading request is invalid (strategy, mapping, re-offloading, unknown cluster)."""


def remote_name(namespace: str, consumer: str, mapping: str) -> str:
    """Name of the namespace in the providers."""
    return namespace if mapping == "EnforceSameName" else f"{namespace}-{consumer}"


def _matches(terms: list[dict[str, Any]] | None, labels: Mapping[str, str]) -> bool:
    """Whether node-selector ``terms`` (ORed; expressions ANDed) select ``labels``; no terms = all."""
    if not terms:
        return True
    for term in terms:
        ok = True
        for expr in term.get("matchExpressions", []):
            key, op, values = expr["key"], expr["operator"], expr.get("values", [])
            have = labels.get(key)
            ok &= {"In": have in values, "NotIn": have not in values, "Exists": key in labels,
                   "DoesNotExist": key not in labels}.get(op, False)
        if ok:
            return True
    return False


def pod_constraints(strategy: str, cluster_selector: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Tolerations and node affinity Liqo's webhook gives a pod of an offloaded namespace.

    ``Local``: nothing (the virtual nodes' taint keeps pods at home). ``Remote``: tolerate the
    taint and require a virtual node matching the selector. ``LocalAndRemote``: tolerate, and
    require either a physical node or a selected virtual node.
    """
    if strategy not in STRATEGIES:
        raise OffloadingError(f"podOffloadingStrategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if strategy == "Local":
        return {}
    virtual = {"key": "liqo.io/type", "operator": "In", "values": ["virtual-node"]}
    selected = [{"matchExpressions": [virtual, *t.get("matchExpressions", [])]} for t in cluster_selector or []] \
        or [{"matchExpressions": [virtual]}]
    terms = selected if strategy == "Remote" else \
        [{"matchExpressions": [{"key": "liqo.io/type", "operator": "DoesNotExist"}]}, *selected]
    return {"tolerations": [{"key": VIRTUAL_NODE_TAINT, "operator": "Exists", "effect": "NoExecute"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": terms}}}}


def offload(testbed: Any, consumer: str, namespace: str, providers: Mapping[str, Mapping[str, str]],
            strategy: str = "LocalAndRemote", mapping: str = "DefaultName",
            cluster_selector: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Offload ``namespace`` of ``consumer`` to the selected ``providers``.

    Parameters
    ----------
    testbed
        The embedded testbed (for ``kube(cluster)``).
    providers
        Provider cluster -> labels of its virtual node in ``consumer`` (the peered ones).
    strategy, mapping, cluster_selector
        Liqo's ``podOffloadingStrategy``, ``namespaceMappingStrategy`` and ``clusterSelector``
        (node-selector terms).

    Returns
    -------
    dict[str, str]
        Selected provider -> remote namespace name.

    Raises
    ------
    OffloadingError
        On a bad strategy or mapping, or when ``namespace`` was itself received by offloading.
    """
    if strategy not in STRATEGIES:
        raise OffloadingError(f"podOffloadingStrategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if mapping not in MAPPINGS:
        raise OffloadingError(f"namespaceMappingStrategy {mapping!r}: one of {', '.join(MAPPINGS)}")
    api = testbed.kube(consumer)
    core = client.CoreV1Api(api)
    try:
        ns = core.read_namespace(namespace)
        origin = (ns.metadata.labels or {}).get("liqo.io/remote-cluster-id")
        if origin:
            raise OffloadingError(f"namespace {namespace!r} of {consumer!r} was offloaded to it by {origin!r}: "
                                  "Liqo does not offload a namespace again")
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespace({"metadata": {"name": namespace}})
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{crds.NSOFF_GROUP}/{crds.NSOFF_VERSION}", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": namespace},
            "spec": {"namespaceMappingStrategy": mapping, "podOffloadingStrategy": strategy,
                     "clusterSelector": {"nodeSelectorTerms": cluster_selector or []}}}
    try:
        custom.create_namespaced_custom_object(crds.NSOFF_GROUP, crds.NSOFF_VERSION, namespace, crds.NSOFF_PLURAL, body)
    except ApiException as exc:
        if exc.status == 409:
            raise OffloadingError(f"namespace {namespace!r} of {consumer!r} is already offloaded") from exc
        raise
    remote = remote_name(namespace, consumer, mapping)
    selected = {p: remote for p, labels in providers.items() if _matches(cluster_selector, labels)}
    for provider in selected:
        papi = testbed.kube(provider)
        try:
            client.CoreV1Api(papi).create_namespace({"metadata": {"name": remote, "labels": {
                "liqo.io/remote-cluster-id": consumer, "liqo.io/tenant-namespace": "false"}}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        identity.bind_namespace(papi, consumer, remote)
    ready = [{"type": "Ready", "status": "True", "reason": "RemoteNamespaceCreated"}]
    status = {"remoteNamespaceName": remote, "offloadingPhase": "Ready" if selected else "NoClusterSelected",
              "remoteNamespacesConditions": {p: ready for p in selected}}
    custom.patch_namespaced_custom_object_status(crds.NSOFF_GROUP, crds.NSOFF_VERSION, namespace, crds.NSOFF_PLURAL,
                                                 "offloading", {"status": status})
    return selected
