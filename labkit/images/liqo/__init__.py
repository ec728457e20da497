"""Liqo's images, built here from the programs of :mod:`labkit.images.liqo.source`.

Upstream images keep their own names and tags (``ghcr.io/liqotech/<name>:<version>``), so the
chart deploys them unchanged; nothing is pulled (``pullPolicy: IfNotPresent``, the images are
in every node's containerd). Each is a Debian rootfs with what the upstream Dockerfile
installs, plus the program at ``/usr/bin/<program>`` (the path the chart runs):

========================  ==============================  ==============================================
image                     upstream base (Dockerfile)      here
========================  ==============================  ==============================================
liqo-controller-manager,  alpine + ca-certificates        the runtime image's bookworm rootfs (python3,
crd-replicator,           (``build/common``)              iproute2, ping, ca-certificates, openssl): a
auth-service,                                             layer every node already holds
virtual-kubelet,
uninstaller
liqonet                   alpine + iptables, ipset, bash, bookworm + the same (Debian's ``wireguard-go``
                          wireguard-tools, tcpdump,       0.0.20220316 instead of upstream's build of
                          conntrack, curl, wireguard-go   commit 2e0774f2, which the proxy does not serve)
cert-creator              alpine + openssl                the runtime rootfs (openssl is there)
========================  ==============================  ==============================================

Two images of the chart cannot be built here and get kit-built stand-ins doing the same job,
under the kit's registry name (the chart is pointed at them with ``--set``):

- ``labkit.local/liqo-proxy:<version>`` for Envoy v1.29.2 (``proxy``): a stdlib-Python HTTP
  CONNECT proxy to the API server (:mod:`.proxy`), used by in-band peering only;
- ``labkit.local/webhook-certgen:<version>`` for ``kube-webhook-certgen`` v1.1.1
  (``webhook.patch.image``): creates the webhook Secret and sets the ``caBundle`` of both webhook
  configurations by GET + PUT (:mod:`.certgen`).

The metric agent is disabled (``metricAgent.enable=false``: it serves ``kubectl top`` of the
virtual nodes, which nothing here reads), so it has no image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.images import oci
from labkit.images.sources import DebianRootfs, ImageError, StaticFile

if TYPE_CHECKING:
    from labkit.images.spec import ImageSpec

#: Upstream's registry and organisation of Liqo's images.
UPSTREAM = "ghcr.io/liqotech"
#: Packages of the liqonet image (``build/liqonet/Dockerfile``'s, plus iproute2 and ca-certificates).
LIQONET_PACKAGES = ("iptables", "ipset", "bash", "wireguard-tools", "wireguard-go", "tcpdump", "conntrack", "curl",
                    "iproute2", "ca-certificates")
#: Image name -> the program it runs, for the images of ``build/common/Dockerfile``.
COMMON = {
    "liqo-controller-manager": "liqo-controller-manager",
    "liqo-crd-replicator": "crd-replicator",
    "liqo-auth-service": "auth-service",
    "liqo-virtual-kubelet": "virtual-kubelet",
    "liqo-uninstaller": "uninstaller",
}
#: The stand-ins: image name -> (repository, script in this package).
STAND_INS = {
    "liqo-proxy": ("labkit.local/liqo-proxy", "proxy.py"),
    "liqo-webhook-certgen": ("labkit.local/webhook-certgen", "certgen.py"),
}
#: Every Liqo image, in the order setup builds them.
NAMES = (*COMMON, "liqo-liqonet", "liqo-cert-creator", *STAND_INS)


def built() -> bool:
    """Whether Liqo's programs are built (then its images can be)."""
    from labkit.images.liqo import source
    return source.built(source.liqo_version())


def _programs() -> tuple[Path, str]:
    """The directory of the built programs and the Liqo version (raises when not built)."""
    from labkit.images.liqo import source
    version = source.liqo_version()
    if not source.built(version):
        raise ImageError(f"Liqo {version} is not built in {source.bin_dir(version)}: run `invoke setup` "
                         f"(with {source.SOURCE_ENV} pointing at its source)")
    return source.bin_dir(version), version


def _runtime_rootfs() -> DebianRootfs:
    from labkit.images.spec import RUNTIME_PACKAGES
    return DebianRootfs("runtime-rootfs", RUNTIME_PACKAGES)


def _program_image(name: str, program: str, rootfs: DebianRootfs) -> ImageSpec:
    from labkit.images.spec import ImageSpec
    bin_dir, version = _programs()
    dest = f"usr/bin/{program}"
    return ImageSpec(name=name, tag=version, repository=f"{UPSTREAM}/{program}",
                     layers=(rootfs, StaticFile(f"{name}-binary", bin_dir / program, dest)),
                     config=oci.ImageConfig(entrypoint=(f"/{dest}",)), needs_root=True)


def _common(name: str) -> Callable[[], ImageSpec]:
    return lambda: _program_image(name, COMMON[name], _runtime_rootfs())


def _liqonet() -> ImageSpec:
    return _program_image("liqo-liqonet", "liqonet", DebianRootfs("liqonet-rootfs", LIQONET_PACKAGES))


def _cert_creator() -> ImageSpec:
    from labkit.images.spec import ImageSpec
    _, version = _programs()
    return ImageSpec(name="liqo-cert-creator", tag=version, repository=f"{UPSTREAM}/cert-creator",
                     layers=(_runtime_rootfs(),), config=oci.ImageConfig(entrypoint=("openssl",)), needs_root=True)


def _stand_in(name: str) -> Callable[[], ImageSpec]:
    def spec() -> ImageSpec:
        from labkit.images.spec import ImageSpec
        from labkit.images.liqo import source
        repository, script = STAND_INS[name]
        dest = f"usr/local/bin/labkit-{name}"
        return ImageSpec(name=name, tag=source.liqo_version(), repository=repository,
                         layers=(_runtime_rootfs(), StaticFile(f"{name}-script", Path(__file__).with_name(script), dest)),
                         config=oci.ImageConfig(entrypoint=(f"/{dest}",)), needs_root=True)
    return spec


#: Image name -> function returning its spec (registered in :data:`labkit.images.build.IMAGES`).
SPECS: dict[str, Callable[[], ImageSpec]] = {
    **{name: _common(name) for name in COMMON},
    "liqo-liqonet": _liqonet,
    "liqo-cert-creator": _cert_creator,
    **{name: _stand_in(name) for name in STAND_INS},
}


def helm_overrides(version: str) -> dict[str, str]:
    """``--set`` values pointing the chart at the stand-ins (the upstream images keep their names)."""
    return {"proxy.imageName": STAND_INS["liqo-proxy"][0],
            "webhook.patch.image": f"{STAND_INS['liqo-webhook-certgen'][0]}:{version}"}
