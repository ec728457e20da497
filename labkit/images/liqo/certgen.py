#!/usr/bin/python3
"""Stand-in for ``kube-webhook-certgen`` v1.1.1 (ingress-nginx's image, which cannot be built here).

Does the two jobs Liqo's chart runs, with the same arguments:

``create --host=a,b,... --namespace=NS --secret-name=S [--cert-name=tls.crt] [--key-name=tls.key]``
    When Secret ``S`` does not exist, make a CA and a serving certificate for the hosts
    (``openssl``, ECDSA P-256) and create the Secret with keys ``ca``, ``<cert-name>`` and
    ``<key-name>``.
``patch --webhook-name=W --namespace=NS --secret-name=S``
    Set ``caBundle`` of every webhook of the MutatingWebhookConfiguration and the
    ValidatingWebhookConfiguration ``W`` to the Secret's ``ca``, by GET and PUT (the chart's RBAC
    grants get and update only).

It talks to the API server as the pod's service account. Standard library only (plus the
``openssl`` command): it runs on the image's ``/usr/bin/python3``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WEBHOOK_KINDS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
#: The certificates' validity (kube-webhook-certgen: 100 years).
DAYS = 36500

Request = Callable[[str, str, Any], Any]


class ApiError(RuntimeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status


def in_cluster() -> Request:
    """A JSON request function authenticated as the pod's service account."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token = (SERVICE_ACCOUNT / "token").read_text().strip()
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))

    def request(method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://{host}:{port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, err.read().decode(errors="replace")[:300]) from None
    return request


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_certificates(hosts: list[str]) -> dict[str, bytes]:
    """A CA and a serving certificate for ``hosts`` (as SANs): ``{"ca", "cert", "key"}`` in PEM."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(DAYS),
                 "-subj", "/O=nil1", cwd=d)
        _openssl("req", *curve, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/O=nil2", cwd=d)
        (d / "san.ext").write_text("subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + "\n"
                                   "extendedKeyUsage=serverAuth\n")
        _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", str(DAYS), "-extfile", "san.ext", "-out", "tls.crt", cwd=d)
        return {"ca": (d / "ca.crt").read_bytes(), "cert": (d / "tls.crt").read_bytes(),
                "key": (d / "tls.key").read_bytes()}


def secret_body(name: str, pem: dict[str, bytes], cert_name: str, key_name: str) -> dict[str, Any]:
    """The Secret kube-webhook-certgen creates."""
    data = {"ca": pem["ca"], cert_name: pem["cert"], key_name: pem["key"]}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def create(api: Request, hosts: list[str], namespace: str, secret: str, cert_name: str, key_name: str) -> bool:
    """Create the Secret unless it exists; whether it was created."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        api("GET", f"{path}/{secret}", None)
        return False
    except ApiError as err:
        if err.status != 404:
            raise
    api("POST", path, secret_body(secret, make_certificates(hosts), cert_name, key_name))
    return True


def with_ca_bundle(config: dict[str, Any], ca_b64: str) -> dict[str, Any]:
    """``config`` (a webhook configuration) with every webhook's ``clientConfig.caBundle`` set."""
    for hook in config.get("webhooks") or []:
        hook.setdefault("clientConfig", {})["caBundle"] = ca_b64
    return config


def patch(api: Request, webhook: str, namespace: str, secret: str) -> list[str]:
    """Put the Secret's CA into both webhook configurations named ``webhook``; return the kinds patched."""
    ca_b64 = api("GET", f"/api/v1/namespaces/{namespace}/secrets/{secret}", None)["data"]["ca"]
    patched = []
    for kind in WEBHOOK_KINDS:
        path = f"/apis/admissionregistration.k8s.io/v1/{kind}/{webhook}"
        try:
            config = api("GET", path, None)
        except ApiError as err:
            if err.status == 404:
                continue
            raise
        api("PUT", path, with_ca_bundle(config, ca_b64))
        patched.append(kind)
    return patched


def main(argv: list[str] | None = None, api: Request | None = None) -> int:
    """Entry point with kube-webhook-certgen's arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create")
    c.add_argument("--host", required=True)
    c.add_argument("--namespace", required=True)
    c.add_argument("--secret-name", required=True)
    c.add_argument("--cert-name", default="cert")
    c.add_argument("--key-name", default="key")
    p = sub.add_parser("patch")
    p.add_argument("--webhook-name", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--secret-name", required=True)
    args, _ = parser.parse_known_args(argv)
    api = api or in_cluster()
    if args.command == "create":
        made = create(api, args.host.split(","), args.namespace, args.secret_name, args.cert_name, args.key_name)
        print(f"secret {args.namespace}/{args.secret_name} {'created' if made else 'exists'}", flush=True)
    else:
        kinds = patch(api, args.webhook_name, args.namespace, args.secret_name)
        print(f"caBundle set in {', '.join(kinds) or 'no webhook configuration'} {args.webhook_name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
