"""What an image is made of (:class:`ImageSpec`) and the names every image shares.

A leaf of :mod:`labkit.images`: the build (:mod:`.build`) and the images of Liqo (:mod:`.liqo`)
both describe images with it, without importing each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.images import oci
from labkit.images.sources import LayerSource

#: Registry part of every image reference. Nothing is ever pulled from it: images are
#: imported, and pods use ``imagePullPolicy: Never`` (or ``IfNotPresent``).
REGISTRY = "labkit.local"

#: Packages of the runtime rootfs (Python, venv support, network tools for the tests).
RUNTIME_PACKAGES = ("python3", "python3-venv", "iproute2", "iputils-ping", "ca-certificates")


@dataclass(frozen=True)
class ImageSpec:
    """What an image is made of.

    Attributes
    ----------
    name
        Short name (``pause``, ``runtime``, ``galera``) and repository under :data:`REGISTRY`.
    tag
        Tag of the reference.
    layers
        Layer sources, base first.
    config
        Entrypoint, cmd, env, workdir.
    needs_root
        Whether building needs root (mmdebstrap).
    repository
        The reference's repository when it is not ``<REGISTRY>/<name>``: an upstream image
        built here under its own name (``ghcr.io/liqotech/liqonet``); nothing is pulled either way.
    """

    name: str
    tag: str
    layers: tuple[LayerSource, ...]
    config: oci.ImageConfig
    needs_root: bool = False
    repository: str = ""

    @property
    def ref(self) -> str:
        """The full image reference, e.g. ``labkit.local/pause:1``."""
        return f"{self.repository or f'{REGISTRY}/{self.name}'}:{self.tag}"
