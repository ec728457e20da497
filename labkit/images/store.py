"""The node image store: the kit's large images unpacked once, shared read-only by every node.

Every node of an embedded test bed runs its own containerd, and ``ctr images import`` makes
each of them unpack the same layers again: the runtime image's 15,000 files cost 12-19 s of
CPU per node, the galera image's about 7 s, on a machine whose two cores also run the
control planes (docs/experiments.md). The store does that work once per set of archives:

1. :func:`ensure` imports :data:`STORE_IMAGES` into a throwaway containerd (no CRI) rooted
   under ``~/.cache/labkit/images/stores/<key>/root`` (the key hashes the archives' names,
   which hash their inputs, and the containerd version);
2. :func:`seed` fills a node's containerd root, before that containerd first starts, with
   copies of the two metadata databases (containerd's and the overlayfs snapshotter's, a few
   hundred kB) and symbolic links to the store's committed snapshots and content blobs.

The node's containerd then lists the images as imported and unpacked; a container's overlay
mount uses the store's snapshot directories as read-only lower layers (overlayfs accepts lower
directories on another file system) and writes only to its own upper directory, in the node's
root. Nothing writes to a committed snapshot: when a node removes an image, its snapshotter
and content store unlink their links (``os.RemoveAll`` and ``os.Remove`` do not follow a
symbolic link), never the store's files. A new snapshot takes the next id of the node's own
copy of the snapshotter's database, so it never collides with a linked one; an image imported
later that shares layers with the store's (a runtime image after a code change: only the
labkit layer differs) unpacks only the layers the store lacks.

The store is on the host's file system, outside the VMs' disk, and outlives test beds: it is
rebuilt only when an archive changes. Stores unused for a day are pruned when another is
built (using a store refreshes its modification time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.images.build import PRUNE_UNUSED_S, build, cached_archive, images_dir, locked
from labkit.images.containerd import import_archive, private_containerd
from labkit.images.sources import ImageError

Log = Callable[[str], None]
_logger = logging.getLogger("labkit.images")

#: The images the store holds: the large ones test beds import into many nodes (the pause,
#: CoreDNS and virtual-kubelet images are small single files and are imported as before).
STORE_IMAGES = ("probe", "runtime", "galera")
#: Files of a containerd root that :func:`seed` copies (containerd writes them in place).
COPIED = ("io.containerd.metadata.v1.bolt/meta.db", "io.containerd.snapshotter.v1.overlayfs/metadata.db")
#: Directories whose entries :func:`seed` links (written once by the import, then only read).
LINKED = ("io.containerd.snapshotter.v1.overlayfs/snapshots", "io.containerd.content.v1.content/blobs/sha256")
#: The description written last into a store's directory: a store without it is incomplete.
META = "store.json"


@dataclass(frozen=True)
class Store:
    """A built store: the containerd root holding the images and the archives it was made from.

    Attributes
    ----------
    root
        The containerd root (``.../stores/<key>/root``).
    archives
        The OCI archives imported into it, in :data:`STORE_IMAGES` order.
    """

    root: Path
    archives: tuple[Path, ...]

    @property
    def archive_names(self) -> tuple[str, ...]:
        """File names of :attr:`archives` (what a node's import markers record)."""
        return tuple(a.name for a in self.archives)

    def seed(self, dest: Path) -> bool:
        """:func:`seed` this store into the containerd root ``dest``; see there."""
        return seed(self.root, dest)


def stores_dir() -> Path:
    """``~/.cache/labkit/images/stores`` (under ``LABKIT_CACHE`` when set)."""
    return images_dir() / "stores"


def containerd_version() -> str:
    """``containerd --version`` (the store's databases are in this containerd's format)."""
    try:
        out = subprocess.run(["containerd", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"containerd --version failed ({exc}): `apt-get install containerd`") from None
    return out.stdout.strip()


def store_key(archives: Sequence[Path], version: str) -> str:
    """The store's key: a hash of the archives' names (keyed by their inputs) and the containerd version."""
    digest = hashlib.sha256("\n".join([version, *(a.name for a in archives)]).encode())
    return digest.hexdigest()[:24]


def store_images() -> tuple[str, ...]:
    """:data:`STORE_IMAGES`, and Liqo's images when its programs are built (every peered node runs them)."""
    from labkit.images import liqo
    return STORE_IMAGES + (liqo.NAMES if liqo.built() else ())


def cached(names: Sequence[str] | None = None) -> Store | None:
    """The store of the current archives of ``names`` (default :func:`store_images`) when it is built,
    else ``None`` (never builds)."""
    archives = [cached_archive(n) for n in names or store_images()]
    if any(a is None for a in archives):
        return None
    found = [a for a in archives if a is not None]
    path = stores_dir() / store_key(found, containerd_version())
    if not (path / META).exists():
        return None
    os.utime(path / META)  # in use: not pruned (see _prune)
    return Store(path / "root", tuple(found))


def is_built(names: Sequence[str] | None = None) -> bool:
    """Whether the store of the current archives of ``names`` is built (the setup step's check)."""
    return cached(names) is not None


def ensure(names: Sequence[str] | None = None, log: Log | None = None) -> Store:
    """The store of ``names`` (default :func:`store_images`): cached, or built now (the images too, when they are not).

    Importing the three images into an idle containerd takes about 20 s (30 Nov); the images
    themselves, when not cached, take minutes (``invoke setup`` builds both).

    Raises
    ------
    ImageError
        When an image cannot be built, containerd does not start or an import fails.
    """
    log = log or _logger.info
    archives = [build(n, log) for n in names or store_images()]
    root = stores_dir()
    path = root / store_key(archives, containerd_version())
    with locked(root / ".store.lock"):
        if not (path / META).exists():
            build_store(path, archives, log)
            _prune(root, keep=path)
    os.utime(path / META)
    return Store(path / "root", tuple(archives))


def build_store(path: Path, archives: Sequence[Path], log: Log) -> None:
    """Import ``archives`` into a private containerd rooted in a scratch directory, then move it to ``path``."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)  # an incomplete store (no META): built again
    scratch.mkdir(parents=True)
    start = time.monotonic()
    try:
        with (scratch / "containerd.log").open("w") as out, private_containerd(scratch, out) as socket:
            for archive in archives:
                import_archive(archive, socket)
        shutil.rmtree(scratch / "state", ignore_errors=True)  # sockets and the private config: not the store's
        for leftover in ("config.toml", "containerd.sock", "containerd.sock.ttrpc", "debug.sock"):
            (scratch / leftover).unlink(missing_ok=True)
        (scratch / META).write_text(json.dumps({"archives": [str(a) for a in archives],
                                                "containerd": containerd_version()}, indent=1))
        os.replace(scratch, path)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    log(f"[images] node image store {path.name}: {len(archives)} images unpacked once in "
        f"{time.monotonic() - start:.1f} s ({', '.join(a.name for a in archives)})")


def _prune(root: Path, keep: Path, unused_s: float = PRUNE_UNUSED_S) -> None:
    """Remove the stores other than ``keep`` unused for ``unused_s`` seconds (a running test bed refreshes its own)."""
    horizon = time.time() - unused_s
    for old in root.iterdir():
        meta = old / META
        if old != keep and old.is_dir() and not old.name.startswith(".") and meta.exists() \
                and meta.stat().st_mtime < horizon:
            shutil.rmtree(old, ignore_errors=True)


def seed(store_root: Path, dest: Path) -> bool:
    """Fill the containerd root ``dest`` with the store at ``store_root``; before that containerd starts.

    Copies the :data:`COPIED` databases and links every entry of the :data:`LINKED`
    directories (see the module's docstring for why that is safe). A root that already has a
    metadata database is left alone (a containerd used it: its own images may differ).

    Returns
    -------
    bool
        Whether ``dest`` was seeded.
    """
    if (dest / COPIED[0]).exists():
        return False
    store_root = store_root.resolve()  # the links must not depend on the working directory
    for rel in LINKED:
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for entry in (store_root / rel).iterdir():
            os.symlink(entry, dest / rel / entry.name)
    for rel in COPIED:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(store_root / rel, dest / rel)
    return True


__all__ = ["COPIED", "LINKED", "STORE_IMAGES", "Store", "build_store", "cached", "containerd_version", "ensure", "is_built",
           "seed", "store_images", "store_key", "stores_dir"]
