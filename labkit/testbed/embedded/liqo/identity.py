"""The provider identity of a peering: a client certificate the provider's CA signs.

As Liqo's auth service does, the consumer's key never leaves the kit: a CSR with signer
``kubernetes.io/kube-apiserver-client`` is created in the provider, approved, and signed by
the provider's kube-controller-manager. The user is ``liqo-<consumer>`` in group
``liqo.io/tenants``; RBAC in the provider grants it only reading Nodes (capacity) and, in each
namespace offloaded to it, managing the reflected objects (:func:`tenant_rules`).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.rest import ApiException

from labkit import timescale
from labkit.testbed.embedded import pki

TENANT_GROUP = "liqo.io/tenants"
#: ClusterRole bound cluster-wide (read Nodes for the virtual node's capacity).
CAPACITY_ROLE = "labkit-liqo-capacity-reader"
#: ClusterRole bound in each remote namespace by a RoleBinding.
TENANT_ROLE = "labkit-liqo-remote-tenant"


class IdentityError(RuntimeError):
    """The provider did not issue the identity; the message says which step failed."""


def user_name(consumer: str) -> str:
    """Kubernetes user name of ``consumer``'s identity in its providers."""
    return f"liqo-{consumer}"


def tenant_rules() -> list[dict[str, Any]]:
    """What a tenant may do inside a namespace offloaded to the provider."""
    rw = ["get", "list", "watch", "create", "update", "patch", "delete"]
    return [
        {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "secrets"], "verbs": rw},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": rw},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": rw},
    ]


def _apply(create: Any, *args: Any) -> None:
    try:
        create(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def ensure_provider_roles(api: client.ApiClient) -> None:
    """Create the two ClusterRoles in the provider (idempotent)."""
    rbac = client.RbacAuthorizationV1Api(api)
    _apply(rbac.create_cluster_role, {"metadata": {"name": CAPACITY_ROLE}, "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]})
    _apply(rbac.create_cluster_role, {"metadata": {"name": TENANT_ROLE}, "rules": tenant_rules()})


def bind_capacity(api: client.ApiClient, consumer: str) -> None:
    """Let ``consumer``'s identity read the provider's Nodes."""
    rbac = client.RbacAuthorizationV1Api(api)
    _apply(rbac.create_cluster_role_binding, {
        "metadata": {"name": f"{CAPACITY_ROLE}-{consumer}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CAPACITY_ROLE},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user_name(consumer)}]})


def bind_namespace(api: client.ApiClient, consumer: str, namespace: str) -> None:
    """Let ``consumer``'s identity manage reflected objects in ``namespace`` of the provider."""
    rbac = client.RbacAuthorizationV1Api(api)
    _apply(rbac.create_namespaced_role_binding, namespace, {
        "metadata": {"name": f"liqo-tenant-{consumer}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": TENANT_ROLE},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user_name(consumer)}]})


def issue(api: client.ApiClient, consumer: str, provider: str, timeout: float = 30.0) -> pki.KeyPair:
    """Have the provider sign a client certificate for ``consumer`` through a CSR.

    Raises
    ------
    IdentityError
        When the certificate is not issued within ``timeout`` seconds.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TENANT_GROUP),
                                    x509.NameAttribute(NameOID.COMMON_NAME, user_name(consumer))]))
           .sign(key, hashes.SHA256()))
    name = f"liqo-identity-{consumer}-{int(time.time() * 1000) % 10**9}"
    certs = client.CertificatesV1Api(api)
    certs.create_certificate_signing_request({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "labels": {"liqo.io/remote-cluster-id": consumer}},
        "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 86400 * 7,
                 "usages": ["digital signature", "key encipherment", "client auth"]}})
    body = certs.read_certificate_signing_request(name)
    body.status.conditions = [client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="LiqoPeering", message=f"peering {consumer} -> {provider}")]
    certs.replace_certificate_signing_request_approval(name, body)
    deadline = timescale.deadline(timeout)
    while time.monotonic() < deadline:
        cert = certs.read_certificate_signing_request(name).status.certificate
        if cert:
            certs.delete_certificate_signing_request(name)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            return pki.KeyPair(base64.b64decode(cert), pem)
        time.sleep(0.2)
    raise IdentityError(f"provider {provider} did not sign the identity of {consumer} within {timeout:.0f} s "
                        f"(CSR {name}; is kube-controller-manager's csrsigning controller running?)")
