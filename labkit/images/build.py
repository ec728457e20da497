"""Image definitions and the layer/archive cache under ``~/.cache/labkit/images/``.

Cache layout (``LABKIT_CACHE`` moves the root)::

    images/blobs/sha256/<hex>          layer blobs (gzip tars), shared by all images
    images/layers/<name>-<key>.json    layer descriptors, keyed by the hash of the inputs
    images/<image>-<key>.oci.tar       archives, keyed by the hash of ref, layers and config
    images/<image>-<key>.json          the archive's digests (what :func:`build_image` returns)
    images/work/                       scratch space, emptied after each layer

A layer is rebuilt only when its key changes: editing labkit's code changes only the
wheel layer's key, so the runtime image then rebuilds one small layer and re-packs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit import __version__, paths
from labkit.images import liqo as liqo_images
from labkit.images import oci
from labkit.images.spec import REGISTRY, RUNTIME_PACKAGES, ImageSpec
from labkit.images.sources import (
    VENV,
    DebianRootfs,
    GoBinary,
    ImageError,
    LabkitWheel,
    LayerSource,
    PythonDeps,
    StaticFile,
    hash_parts,
    locked_closure,
    runtime_requirements,
)

Log = Callable[[str], None]
_logger = logging.getLogger("labkit.images")


#: Packages of the Galera rootfs: MariaDB server with the Galera 4 provider, rsync for
#: state transfers (SST), network tools.
GALERA_PACKAGES = ("mariadb-server", "galera-4", "rsync", "iproute2", "iputils-ping")
#: The galera image's entrypoint (bootstrap or join, see the script's header) and its path in the image.
GALERA_ENTRYPOINT = Path(__file__).with_name("galera") / "entrypoint.sh"
GALERA_ENTRYPOINT_DEST = "usr/local/bin/labkit-galera"


def _pause_spec() -> ImageSpec:
    return ImageSpec(
        name="pause", tag="1",
        layers=(GoBinary("pause-binary", paths.repo_root() / "go" / "pause", "pause"),),
        config=oci.ImageConfig(entrypoint=("/pause",), env=()),
    )


def _runtime_spec() -> ImageSpec:
    root = paths.repo_root()
    pins = tuple(locked_closure(runtime_requirements(root / "pyproject.toml")))
    env = (f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           f"VIRTUAL_ENV={VENV}", "PYTHONUNBUFFERED=1", "LANG=C.UTF-8")
    return ImageSpec(
        name="runtime", tag=__version__,
        layers=(DebianRootfs("runtime-rootfs", RUNTIME_PACKAGES),
                PythonDeps("runtime-deps", pins),
                LabkitWheel("labkit-wheel", root)),
        config=oci.ImageConfig(cmd=("python",), env=env, workdir="/"),
        needs_root=True,
    )


def _probe_spec() -> ImageSpec:
    """The runtime image's rootfs alone (``ping``, ``ip``, ``sleep``): the latency probes' pods.

    Its one layer is the runtime's first (same key, same blob), so building it re-packs a cached
    layer, and a node that already holds the runtime image unpacks nothing new; a node that
    does not unpacks 59 MB instead of the runtime's 224.
    """
    return ImageSpec(
        name="probe", tag=__version__,
        layers=(DebianRootfs("runtime-rootfs", RUNTIME_PACKAGES),),
        config=oci.ImageConfig(cmd=("sleep", "infinity"), workdir="/"),
        needs_root=True,
    )


def _galera_spec() -> ImageSpec:
    return ImageSpec(
        name="galera", tag="10.11",
        # The data directory made by mariadb-server's postinst (mysql_install_db) holds
        # timestamps and ids, so it is left empty: the entrypoint initialises it at start.
        layers=(DebianRootfs("galera-rootfs", GALERA_PACKAGES, emptied=("var/lib/mysql",)),
                StaticFile("galera-entrypoint", GALERA_ENTRYPOINT, GALERA_ENTRYPOINT_DEST)),
        # Initialises the data directory, bootstraps or joins (labkit/images/galera/entrypoint.sh).
        config=oci.ImageConfig(entrypoint=(f"/{GALERA_ENTRYPOINT_DEST}",),
                               env=oci.ImageConfig().env + ("LANG=C.UTF-8",)),
        needs_root=True,
    )


def binary_image_spec(name: str, tag: str, binary: Path, args: tuple[str, ...] = ()) -> ImageSpec:
    """A one-layer image holding one static binary at ``/<binary name>`` as its entrypoint.

    For binaries built elsewhere (CoreDNS, the virtual kubelet): pass the spec to
    :func:`build_spec`. The layer is keyed by the binary's sha256.

    Parameters
    ----------
    name, tag
        Repository under :data:`REGISTRY` and tag.
    binary
        A static executable on this machine.
    args
        Default arguments (the image's ``Cmd``).
    """
    dest = binary.name
    return ImageSpec(name=name, tag=tag, layers=(StaticFile(f"{name}-binary", binary, dest),),
                     config=oci.ImageConfig(entrypoint=(f"/{dest}",), cmd=args, env=()))


#: Image name -> function returning its spec (specs read the checkout, so built on demand).
IMAGES: dict[str, Callable[[], ImageSpec]] = {
    "pause": _pause_spec,
    "runtime": _runtime_spec,
    "probe": _probe_spec,
    "galera": _galera_spec,
    **liqo_images.SPECS,  # Liqo's images, from its programs built by setup (labkit.images.liqo)
}


def spec(name: str) -> ImageSpec:
    """The :class:`ImageSpec` of image ``name``; raises ``KeyError`` naming the known ones."""
    if name not in IMAGES:
        raise KeyError(f"unknown image {name!r}; known: {', '.join(sorted(IMAGES))}")
    return IMAGES[name]()


def images_dir() -> Path:
    """``~/.cache/labkit/images`` (under ``LABKIT_CACHE`` when set)."""
    return paths.cache_dir() / "images"


def _log(log: Log | None) -> Log:
    return log if log is not None else _logger.info


def cached_layer(source: LayerSource, key: str, cache_root: Path) -> oci.Layer | None:
    """The cached layer of ``source`` for ``key``, or ``None`` when missing or incomplete."""
    meta = cache_root / "layers" / f"{source.name}-{key[:24]}.json"
    if not meta.exists():
        return None
    layer = oci.Layer.from_json(json.loads(meta.read_text()))
    return layer if layer.path.exists() and layer.path.stat().st_size == layer.size else None


def build_layer(source: LayerSource, cache_root: Path, log: Log | None = None, *, force: bool = False) -> oci.Layer:
    """The layer of ``source``: from the cache when its inputs are unchanged, else built."""
    log = _log(log)
    key = source.key()
    found = None if force else cached_layer(source, key, cache_root)
    if found is not None:
        log(f"[images] layer {source.name}: cached ({found.digest[:19]}, {found.size / 1e6:.1f} MB)")
        return found
    start = time.monotonic()
    work_root = cache_root / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{source.name}-", dir=work_root))
    try:
        layer = source.layer(work, cache_root / "blobs", log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_json(cache_root / "layers" / f"{source.name}-{key[:24]}.json", layer.to_json())
    log(f"[images] layer {source.name}: built in {time.monotonic() - start:.1f} s "
        f"({layer.digest[:19]}, {layer.size / 1e6:.1f} MB)")
    return layer


def archive_key(image: ImageSpec, layer_keys: list[str]) -> str:
    """Hash of everything an archive depends on: reference, layer inputs, config, epoch."""
    return hash_parts("archive", image.ref, layer_keys, image.config, oci.source_date_epoch())


def build_image(name: str, log: Log | None = None, *, force: bool = False) -> oci.Archive:
    """Build (or reuse) image ``name`` and return the archive with its digests.

    Parameters
    ----------
    name
        ``pause``, ``runtime`` or ``galera`` (see :data:`IMAGES`).
    log
        Progress lines (default: the ``labkit.images`` logger).
    force
        Rebuild every layer even when cached.

    Raises
    ------
    ImageError
        When a build command fails (the message names it and shows its last lines), or a
        rootfs image is built without root.
    """
    return build_spec(spec(name), log, force=force)


#: An archive of an older key is pruned once unused this long (see :func:`_prune`).
PRUNE_UNUSED_S = 24 * 3600.0


def build_spec(image: ImageSpec, log: Log | None = None, *, force: bool = False) -> oci.Archive:
    """Build (or reuse) the image described by ``image``; see :func:`build_image`."""
    log = _log(log)
    name = image.name
    root = images_dir()
    keys = [source.key() for source in image.layers]
    key = archive_key(image, keys)[:24]
    archive_path, meta = root / f"{name}-{key}.oci.tar", root / f"{name}-{key}.json"
    with locked(root / f".{name}.lock"):
        if not force and archive_path.exists() and meta.exists():
            log(f"[images] {image.ref}: cached {archive_path}")
            os.utime(archive_path)  # in use: no other checkout's build prunes it (see _prune)
            return _archive_from_json(json.loads(meta.read_text()))
        start = time.monotonic()
        layers = [build_layer(source, root, log, force=force) for source in image.layers]
        archive = oci.write_archive(archive_path, image.ref, layers, image.config)
        _write_json(meta, _archive_to_json(archive))
        _prune(root, name, keep=archive_path)
    log(f"[images] {image.ref}: {archive_path} ({archive_path.stat().st_size / 1e6:.1f} MB, "
        f"manifest {archive.manifest_digest[:19]}) in {time.monotonic() - start:.1f} s")
    return archive


def build(name: str, log: Log | None = None, *, force: bool = False) -> Path:
    """Build (or reuse) image ``name`` and return the path of its OCI archive.

    Stable entry point used by the embedded testbed (``build("pause")``); the archive is a
    standard OCI image-layout tar that :func:`labkit.images.import_archive` and
    ``k3s ctr images import`` accept. See :func:`build_image` for parameters and errors.
    """
    return build_image(name, log, force=force).path


def is_built(name: str) -> bool:
    """Whether the archive of ``name`` for the current inputs is in the cache."""
    return cached_archive(name) is not None


def cached_archive(name: str) -> Path | None:
    """The cached archive of ``name`` for the current inputs, or ``None`` when it is not built (no build)."""
    image = spec(name)
    key = archive_key(image, [source.key() for source in image.layers])[:24]
    root = images_dir()
    archive = root / f"{name}-{key}.oci.tar"
    return archive if archive.exists() and (root / f"{name}-{key}.json").exists() else None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (two processes never build one image, or one node image store, at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, doc: object) -> None:
    """Write ``doc`` to ``path`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def gc(log: Log | None = None) -> int:
    """Delete layer blobs and descriptors that no cached archive uses; return bytes freed.

    Not run automatically (a build in another process may have written a layer that no
    archive references yet): call it when nothing is building.
    """
    log = _log(log)
    root = images_dir()
    used = set()
    for meta in root.glob("*.json"):
        used |= {str(layer["digest"]) for layer in json.loads(meta.read_text()).get("layers", [])}
    freed = 0
    for meta in (root / "layers").glob("*.json"):
        if str(json.loads(meta.read_text())["digest"]) not in used:
            meta.unlink()
    for blob in (root / "blobs" / "sha256").glob("*"):
        if blob.is_file() and f"sha256:{blob.name}" not in used:
            freed += blob.stat().st_size
            blob.unlink()
    log(f"[images] gc: freed {freed / 1e6:.1f} MB")
    return freed


def _prune(root: Path, name: str, keep: Path, unused_s: float = PRUNE_UNUSED_S) -> None:
    """Remove the other archives of ``name`` unused for ``unused_s`` seconds (layers stay: they are
    shared and quick to re-pack from).

    The cache is shared by every checkout on the machine: another checkout (a git worktree, a
    pipeline run of other code) may be importing its own archive of ``name`` right now. Each
    use refreshes an archive's modification time, so only archives nobody used recently go.
    """
    horizon = time.time() - unused_s
    for old in root.glob(f"{name}-*.oci.tar"):
        if old != keep and old.stat().st_mtime < horizon:
            old.unlink(missing_ok=True)
            old.with_name(old.name.removesuffix(".oci.tar") + ".json").unlink(missing_ok=True)


def _archive_to_json(archive: oci.Archive) -> dict[str, object]:
    return {"path": str(archive.path), "ref": archive.ref, "manifest_digest": archive.manifest_digest,
            "config_digest": archive.config_digest, "layers": [layer.to_json() for layer in archive.layers]}


def _archive_from_json(data: dict[str, object]) -> oci.Archive:
    layers = tuple(oci.Layer.from_json(d) for d in data["layers"])  # type: ignore[attr-defined]
    return oci.Archive(Path(str(data["path"])), str(data["ref"]), str(data["manifest_digest"]),
                       str(data["config_digest"]), layers)


__all__ = ["IMAGES", "REGISTRY", "ImageError", "ImageSpec", "binary_image_spec", "build", "build_image",
           "build_layer", "build_spec", "cached_archive", "gc", "images_dir", "is_built", "locked", "spec"]
