"""Images (``labkit.images``): OCI archives built without Docker, imported into containerd.

The kit's four images, under the never-pulled registry name ``labkit.local``, and Liqo's:

``pause`` (``labkit.local/pause:1``)
    One layer: a static, stripped Go binary (``go/pause``) that waits for SIGTERM/SIGINT and
    reaps children. Use it as containerd's ``sandbox_image`` and the kubelet's
    ``--pod-infra-container-image``.
``runtime`` (``labkit.local/runtime:<labkit version>``)
    Debian bookworm rootfs (mmdebstrap: python3, venv, iproute2, ping) + a layer with the kit's
    pinned dependencies in ``/opt/labkit/venv`` + a small layer with the labkit wheel, so a code
    change rebuilds and re-imports only that last layer.
``probe`` (``labkit.local/probe:<labkit version>``)
    The runtime's first layer alone (``ping``, ``ip``): the latency probes' pods.
``galera`` (``labkit.local/galera:10.11``)
    Debian bookworm rootfs with mariadb-server and galera-4 (``mariadbd``, ``galera_new_cluster``).
``liqo-*`` (``ghcr.io/liqotech/<name>:v0.10.2``, two stand-ins under ``labkit.local``)
    Liqo's images from its programs built by setup (:mod:`labkit.images.liqo`).

The embedded test bed seeds every node's containerd with the runtime, probe and galera images
(and Liqo's, when built), unpacked once (:mod:`labkit.images.store`), instead of importing them
into each node.

Stable API used by other parts of the kit: :func:`build` (name -> archive path) and
:func:`import_archive` (archive, containerd socket, namespace). See ``docs/images.md``.
"""

from __future__ import annotations

from labkit.images.build import (
    IMAGES,
    REGISTRY,
    ImageSpec,
    binary_image_spec,
    build,
    build_image,
    build_spec,
    gc,
    images_dir,
    is_built,
    spec,
)
from labkit.images.containerd import ImageRecord, archive_ref, import_archive, list_images
from labkit.images import liqo, store
from labkit.images.sources import ImageError
from labkit.setup_steps import Step

#: Debian packages the images need on the build/test host, with the reason for each.
APT_PACKAGES: dict[str, str] = {
    "mmdebstrap": "builds the Debian bookworm rootfs of the runtime and galera images",
    "containerd": "ctr(1) imports the OCI archives into each node's containerd",
}


def image_ref(name: str) -> str:
    """The reference pods and containerd use for image ``name``, e.g. ``labkit.local/pause:1``."""
    return spec(name).ref


def setup_steps() -> list[Step]:
    """Setup steps building every image (pause first; runtime and galera need root).

    Returns
    -------
    list[labkit.setup_steps.Step]
        One step per image; ``check`` is true when the archive for the current inputs is
        cached, ``run`` builds it.
    """

    def step(name: str, what: str) -> Step:
        return Step(name=f"image-{name}", what=what, check=lambda: is_built(name),
                    run=lambda log: build(name, log), needs_root=spec_needs_root(name))

    return [
        step("pause", f"{image_ref('pause')}: static pause binary (Go) as a one-layer OCI archive"),
        step("runtime", "labkit runtime image: bookworm rootfs + pinned Python deps + labkit wheel"),
        step("probe", "labkit probe image: the runtime's bookworm rootfs alone (ping, ip; latency probes)"),
        step("galera", f"{REGISTRY}/galera image: bookworm + mariadb-server + galera-4"),
        Step(name="image-liqo", what="Liqo's images (ghcr.io/liqotech/*, and the kit's stand-ins for Envoy and "
                                     "kube-webhook-certgen) from its built programs (labkit.images.liqo)",
             check=lambda: liqo.built() and all(is_built(n) for n in liqo.NAMES), run=_build_liqo_images,
             needs_root=True),
        Step(name="image-store", what="node image store: the probe, runtime and galera images (and Liqo's, when built) "
                                      "unpacked once for every embedded node (labkit.images.store)",
             check=lambda: store.is_built(), run=lambda log: store.ensure(log=log), needs_root=True),
    ]


def _build_liqo_images(log) -> None:  # noqa: ANN001 (labkit.install.Log)
    """Build every Liqo image, or say in one line that Liqo is not built (no source: the look-alike runs)."""
    if not liqo.built():
        log("  Liqo's programs are not built (see the `liqo` step): no Liqo images")
        return
    for name in liqo.NAMES:
        build(name, log)


def spec_needs_root(name: str) -> bool:
    """Whether building image ``name`` needs root (rootfs images do)."""
    return spec(name).needs_root


__all__ = ["APT_PACKAGES", "IMAGES", "REGISTRY", "ImageError", "ImageRecord", "ImageSpec", "archive_ref",
           "binary_image_spec", "build", "build_image", "build_spec", "gc", "image_ref", "images_dir", "import_archive", "is_built", "list_images",
           "setup_steps", "spec", "spec_needs_root", "store"]
