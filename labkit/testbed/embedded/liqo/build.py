"""The virtual kubelet binary and image: built from ``go/vk/`` and cached like the kube binaries.

The Go module in ``go/vk/`` pins ``github.com/virtual-kubelet/virtual-kubelet v1.11.0`` (the
library under Liqo v0.10.2) and ``k8s.io/client-go v0.29.1``. The static, stripped binary is
cached in ``~/.cache/labkit/bin/vk-<key>/vk`` where the key hashes the module's sources and
the Go version (so an edit builds into a new directory and a stale binary is never reused),
through the helpers of :mod:`labkit.testbed.embedded.binaries`. The image
``labkit.local/vk:<key>`` holds that one file (:func:`labkit.images.build.binary_image_spec`).
"""

from __future__ import annotations

import time
from pathlib import Path

from labkit import paths
from labkit.images import sources
from labkit.setup_steps import Step
from labkit.testbed.embedded import binaries

#: Library version under Liqo v0.10.2.
VK_LIBRARY_VERSION = "v1.11.0"
#: Name of the binary in the cache and in the image.
VK_BINARY = "vk"

Log = binaries.Log


def module_dir() -> Path:
    """``go/vk/`` in the repository."""
    return paths.repo_root() / "go" / "vk"


def vk_key(go: str | None = None) -> str:
    """Cache key: library version, Go version and a hash of the module's sources (12 hex digits)."""
    tree = sources.hash_tree(module_dir(), (".go", "go.mod", "go.sum"))
    return f"{VK_LIBRARY_VERSION}-{go or binaries.go_version()}-{tree[:12]}"


def vk_dir(key: str | None = None) -> Path:
    """Cache directory of the virtual kubelet binary for the current sources."""
    return binaries.bin_root() / f"vk-{key or vk_key()}"


def vk_cached(directory: Path | None = None) -> bool:
    """Whether the cache holds the binary for the current sources."""
    return ((directory or vk_dir()) / VK_BINARY).is_file()


def build_vk(log: Log = print) -> Path:
    """``CGO_ENABLED=0 go build -trimpath -ldflags "-s -w"`` of ``go/vk`` into :func:`vk_dir`.

    Returns
    -------
    Path
        The binary.

    Raises
    ------
    labkit.setup_steps.SetupError
        When Go is missing or the build fails (with the last output lines).
    """
    go = binaries.require_go()
    target = vk_dir()
    if vk_cached(target):
        return target / VK_BINARY
    target.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log(f"  go build {module_dir()} (virtual-kubelet {VK_LIBRARY_VERSION}, client-go v0.29.1; "
        "about 4 min cold on 2 cores)")
    tmp = target / f"{VK_BINARY}.tmp"
    binaries.run_go([str(go), "build", "-v", "-ldflags", "-s -w", "-o", str(tmp), "."], log, cwd=module_dir(),
                     label="vk", extra_env={"CGO_ENABLED": "0"})
    tmp.replace(target / VK_BINARY)
    size = (target / VK_BINARY).stat().st_size / 2**20
    log(f"  built {target / VK_BINARY} ({size:.0f} MB) in {time.monotonic() - start:.0f} s")
    return target / VK_BINARY


def find_vk() -> Path:
    """The cached binary for the current sources.

    Raises
    ------
    labkit.testbed.embedded.binaries.BinariesMissing
        When it is not built (says how to build it).
    """
    path = vk_dir() / VK_BINARY
    if not path.is_file():
        raise binaries.BinariesMissing(f"virtual kubelet not built in {path.parent}: run `invoke setup` "
                                       "(or labkit.testbed.embedded.liqo.build.build_vk())")
    return path


def image_ref() -> str:
    """Reference of the virtual kubelet image for the current sources."""
    return f"labkit.local/vk:{vk_key()[-12:]}"


def vk_archive(log: Log = print) -> tuple[Path, str]:
    """Build (or reuse) the one-layer image holding the binary; return its archive and reference."""
    from labkit.images.build import binary_image_spec, build_spec
    binary = find_vk()
    spec = binary_image_spec("vk", image_ref().rsplit(":", 1)[1], binary)
    archive = build_spec(spec, log)
    return Path(archive.path), archive.ref


def vk_step() -> Step:
    """Setup step: the virtual kubelet binary (after the Kubernetes binaries)."""
    return Step(name="virtual-kubelet", what=f"the virtual kubelet of labkit's Liqo look-alike (the fallback) in {vk_dir()}",
                check=vk_cached, run=lambda log: None if build_vk(log) else None)
