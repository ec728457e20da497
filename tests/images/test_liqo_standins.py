"""The kit's stand-ins for the two images of Liqo's chart that cannot be built here."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from labkit.images.liqo import certgen, proxy

pytestmark = pytest.mark.unit

HOSTS = ["liqo-controller-manager", "liqo-controller-manager.liqo", "liqo-controller-manager.liqo.svc"]


class FakeApi:
    """Objects by path; records every request."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method: str, path: str, body: Any) -> Any:
        self.calls.append((method, path))
        if method == "GET":
            if path not in self.objects:
                raise certgen.ApiError(404, "not found")
            return self.objects[path]
        if method == "POST":
            self.objects[f"{path}/{body['metadata']['name']}"] = body
        elif method == "PUT":
            self.objects[path] = body
        return body


SECRET = "/api/v1/namespaces/liqo/secrets/liqo-webhook-certs"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_create_makes_the_secret_once_with_the_hosts_as_names(tmp_path: Path) -> None:
    api = FakeApi({})
    argv = ["create", f"--host={','.join(HOSTS)}", "--namespace=liqo", "--secret-name=liqo-webhook-certs",
            "--cert-name=tls.crt", "--key-name=tls.key"]
    assert certgen.main(argv, api) == 0
    secret = api.objects[SECRET]
    assert set(secret["data"]) == {"ca", "tls.crt", "tls.key"}
    cert = base64.b64decode(secret["data"]["tls.crt"])
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=cert, capture_output=True,
                         check=True).stdout.decode()
    assert all(f"DNS:{h}" in out for h in HOSTS)
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(secret["data"]["ca"]))
    (tmp_path / "tls.crt").write_bytes(cert)
    verify = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "ca.crt", tmp_path / "tls.crt"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    certgen.main(argv, api)
    assert [c for c in api.calls if c[0] == "POST"] == [("POST", "/api/v1/namespaces/liqo/secrets")]


def test_patch_puts_the_ca_into_every_webhook_of_both_configurations() -> None:
    base = "/apis/admissionregistration.k8s.io/v1"
    hooks = {"webhooks": [{"name": "a", "clientConfig": {"service": {}}}, {"name": "b", "clientConfig": {}}]}
    api = FakeApi({SECRET: {"data": {"ca": "Q0E="}},
                   f"{base}/mutatingwebhookconfigurations/liqo-webhook": {"webhooks": [dict(h) for h in hooks["webhooks"]]},
                   f"{base}/validatingwebhookconfigurations/liqo-webhook": {"webhooks": [{"name": "c"}]}})
    assert certgen.main(["patch", "--webhook-name=liqo-webhook", "--namespace=liqo",
                         "--secret-name=liqo-webhook-certs"], api) == 0
    for kind in certgen.WEBHOOK_KINDS:
        config = api.objects[f"{base}/{kind}/liqo-webhook"]
        assert [h["clientConfig"]["caBundle"] for h in config["webhooks"]] == ["Q0E="] * len(config["webhooks"])
    assert {m for m, _ in api.calls} == {"GET", "PUT"}, "the chart's RBAC allows get and update only"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_proxy_tunnels_connect_and_refuses_other_methods() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = _free_port()
        ready = asyncio.Event()
        task = asyncio.create_task(proxy.serve(port, upstream.sockets[0].getsockname()[:2], ready))
        await ready.wait()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"CONNECT kubernetes.default:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"hello")
        await writer.drain()
        echoed = await reader.read(100)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        refused = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        task.cancel()
        upstream.close()
        assert status.startswith(b"HTTP/1.1 200")
        return echoed, refused

    echoed, refused = asyncio.run(scenario())
    assert echoed == b"hello"
    assert refused.startswith(b"HTTP/1.1 405")


def test_liqo_images_keep_upstream_names_and_stand_ins_the_kits() -> None:
    from labkit.images import liqo
    assert liqo.NAMES[:5] == tuple(liqo.COMMON) and len(liqo.NAMES) == 9
    assert liqo.helm_overrides("v0.10.2") == {"proxy.imageName": "labkit.local/liqo-proxy",
                                              "webhook.patch.image": "labkit.local/webhook-certgen:v0.10.2"}
    if liqo.built():  # the specs read the built programs
        from labkit.images import spec
        assert spec("liqo-liqonet").ref == "ghcr.io/liqotech/liqonet:v0.10.2"
        assert spec("liqo-controller-manager").ref == "ghcr.io/liqotech/liqo-controller-manager:v0.10.2"
        assert spec("liqo-proxy").ref == "labkit.local/liqo-proxy:v0.10.2"
        assert spec("liqo-liqonet").layers[1].dest == "usr/bin/liqonet"  # the path the chart runs
