"""Liqo's custom resources the kit uses, as CustomResourceDefinitions (apiextensions v1).

Only the fields the kit reads or writes are in the schemas; everything else is preserved
(``x-kubernetes-preserve-unknown-fields``), so Liqo's own manifests would also validate.

- ``TunnelEndpoint`` (``net.liqo.io/v1alpha1``, namespaced, status subresource): one per
  peering in the tenant namespace, labelled ``clusterID=<remote cluster>``; the gateway's
  health check writes ``status.connection.status`` and the virtual kubelet reads it.
- ``NamespaceOffloading`` (``offloading.liqo.io/v1alpha1``, namespaced, named
  ``offloading``): ``spec.namespaceMappingStrategy`` (``DefaultName`` | ``EnforceSameName``),
  ``spec.podOffloadingStrategy`` (``Local`` | ``Remote`` | ``LocalAndRemote``),
  ``spec.clusterSelector`` (node-selector terms over the virtual nodes' labels); status
  ``remoteNamespaceName``, ``offloadingPhase``, ``remoteNamespacesConditions``.
"""

from __future__ import annotations

from typing import Any

TEP_GROUP, TEP_VERSION, TEP_PLURAL = "net.liqo.io", "v1alpha1", "tunnelendpoints"
NSOFF_GROUP, NSOFF_VERSION, NSOFF_PLURAL = "offloading.liqo.io", "v1alpha1", "namespaceoffloadings"

_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(group: str, kind: str, plural: str, spec: dict[str, Any], status: dict[str, Any],
         columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"liqo.io/managed-by": "labkit"}},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{
                "name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": spec, "status": status}}},
            }],
        },
    }


def tunnel_endpoint_crd() -> dict[str, Any]:
    """CRD of Liqo's TunnelEndpoint."""
    status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
        "connection": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["Connected", "Connecting", "Error"]},
            "statusMessage": {"type": "string"}, "peerLatency": {"type": "string"},
            "lastTransitionTime": {"type": "string"}}}}}
    return _crd(TEP_GROUP, "TunnelEndpoint", TEP_PLURAL, _OPEN, status, [
        {"name": "Remote", "type": "string", "jsonPath": ".spec.clusterIdentity.clusterID"},
        {"name": "Status", "type": "string", "jsonPath": ".status.connection.status"},
        {"name": "Latency", "type": "string", "jsonPath": ".status.connection.peerLatency"}])


def namespace_offloading_crd() -> dict[str, Any]:
    """CRD of Liqo's NamespaceOffloading."""
    spec = {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
        "namespaceMappingStrategy": {"type": "string", "enum": ["DefaultName", "EnforceSameName"],
                                     "default": "DefaultName"},
        "podOffloadingStrategy": {"type": "string", "enum": ["Local", "Remote", "LocalAndRemote"],
                                  "default": "LocalAndRemote"},
        "clusterSelector": _OPEN}}
    return _crd(NSOFF_GROUP, "NamespaceOffloading", NSOFF_PLURAL, spec, _OPEN, [
        {"name": "Strategy", "type": "string", "jsonPath": ".spec.podOffloadingStrategy"},
        {"name": "Remote namespace", "type": "string", "jsonPath": ".status.remoteNamespaceName"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.offloadingPhase"}])


def all_crds() -> list[dict[str, Any]]:
    """Every CRD the kit's Liqo needs in each cluster."""
    return [tunnel_endpoint_crd(), namespace_offloading_crd()]
