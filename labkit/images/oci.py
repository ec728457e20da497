"""A small, deterministic OCI image-layout writer (tarfile + hashlib + json, no Docker).

An image here is a list of :class:`Layer` blobs plus an :class:`ImageConfig`; the archive
written by :func:`write_archive` is a standard OCI image layout packed in one tar::

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      one manifest, annotated with the image name and tag
    blobs/sha256/<config digest>    image config (os, architecture, entrypoint, env, diff_ids)
    blobs/sha256/<manifest digest>  image manifest (config + layer descriptors)
    blobs/sha256/<layer digest>...  gzip-compressed layer tars

``ctr -n k8s.io images import`` and ``k3s ctr images import`` accept it.

Determinism: layer entries are sorted by name; mtimes are clamped to a fixed epoch
(``SOURCE_DATE_EPOCH``); user and group names are dropped (numeric ids are kept, so a
rootfs keeps its ownership); only ``SCHILY.xattr.*`` PAX records survive; gzip streams carry
``mtime=0`` and no file name; JSON documents are written with sorted keys and no spaces.
So the same entries give the same diff_id (uncompressed digest) everywhere, and the same
digest with the same zlib build.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"

#: Annotation containerd's importer reads the image name from.
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
#: Standard OCI annotation for the reference (here: the tag).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

#: Default fixed time for every entry and for the config's ``created`` (2024-01-01 UTC).
DEFAULT_EPOCH = 1704067200

_CHUNK = 1 << 20


def source_date_epoch() -> int:
    """The fixed timestamp builds use: ``SOURCE_DATE_EPOCH`` if set, else :data:`DEFAULT_EPOCH`."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value else DEFAULT_EPOCH


@dataclass(frozen=True)
class Layer:
    """A layer blob on disk and its descriptors.

    Attributes
    ----------
    path
        The blob file (compressed or not, as ``media_type`` says).
    digest
        ``sha256:<hex>`` of the blob file.
    size
        Size of the blob file in bytes.
    diff_id
        ``sha256:<hex>`` of the uncompressed tar (the config's ``rootfs.diff_ids``).
    media_type
        :data:`MEDIA_LAYER_GZIP` or :data:`MEDIA_LAYER_TAR`.
    """

    path: Path
    digest: str
    size: int
    diff_id: str
    media_type: str = MEDIA_LAYER_GZIP

    def to_json(self) -> dict[str, object]:
        """Metadata for the cache (path stored as a string)."""
        return {"path": str(self.path), "digest": self.digest, "size": self.size,
                "diff_id": self.diff_id, "media_type": self.media_type}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Layer:
        """Inverse of :meth:`to_json`."""
        return cls(Path(str(data["path"])), str(data["digest"]), int(str(data["size"])),
                   str(data["diff_id"]), str(data["media_type"]))


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (what a container runs and with which env).

    Attributes
    ----------
    entrypoint, cmd
        As in a Dockerfile's ENTRYPOINT / CMD (exec form).
    env
        ``NAME=value`` strings.
    workdir
        Working directory (``""`` means ``/``).
    labels
        Image labels.
    """

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Entry:
    """One layer entry: tar metadata plus, for regular files, a way to open its data.

    Attributes
    ----------
    info
        Tar header (name, type, mode, uid, gid, mtime, linkname, device numbers, size,
        ``pax_headers`` for xattrs). It is normalised by the writer.
    opener
        Returns a binary stream with the file's data (regular files only).
    group
        Hard-link group key: entries with the same key are one file; the first in sorted
        order is written as a regular file, the others as hard links to it.
    """

    info: tarfile.TarInfo
    opener: Callable[[], BinaryIO] | None = None
    group: Hashable | None = None


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def clean_name(name: str) -> str:
    """A tar member name without leading ``./`` or ``/`` and without a trailing ``/``."""
    while name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "" if name == "." else name


def _normalise(info: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    """A fresh header with fixed time, no user/group names and only xattr PAX records."""
    out = tarfile.TarInfo(clean_name(info.name))
    out.type = info.type
    out.mode = info.mode & 0o7777
    out.uid, out.gid = int(info.uid), int(info.gid)
    out.uname = out.gname = ""
    out.mtime = min(int(info.mtime), epoch)
    out.linkname = info.linkname
    out.devmajor, out.devminor = info.devmajor, info.devminor
    out.size = info.size if info.isreg() else 0
    out.pax_headers = {k: v for k, v in sorted(info.pax_headers.items()) if k.startswith("SCHILY.xattr.")}
    if info.islnk():
        out.linkname = clean_name(info.linkname)
    return out


def _with_parents(entries: Iterable[Entry], epoch: int) -> list[Entry]:
    """``entries`` plus a root-owned 0755 directory entry for every missing parent."""
    items = list(entries)
    names = {clean_name(e.info.name) for e in items}
    extra = []
    for entry in items:
        for parent in PurePosixPath(clean_name(entry.info.name)).parents:
            text = str(parent)
            if text in (".", "") or text in names:
                continue
            names.add(text)
            info = tarfile.TarInfo(text)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            extra.append(Entry(info))
    return items + extra


def _write_entries(tar: tarfile.TarFile, entries: Iterable[Entry], epoch: int) -> None:
    """Write ``entries`` sorted by name, resolving hard-link groups in that order."""
    items = [e for e in _with_parents(entries, epoch) if clean_name(e.info.name)]
    items.sort(key=lambda e: clean_name(e.info.name))
    seen: set[str] = set()
    first_of_group: dict[Hashable, str] = {}
    for entry in items:
        info = _normalise(entry.info, epoch)
        if info.name in seen:
            raise ValueError(f"duplicate layer entry: {info.name}")
        seen.add(info.name)
        if entry.group is not None and entry.group in first_of_group:
            info.type, info.size, info.linkname = tarfile.LNKTYPE, 0, first_of_group[entry.group]
            tar.addfile(info)
            continue
        if entry.group is not None:
            first_of_group[entry.group] = info.name
        if info.isreg():
            if entry.opener is None:
                raise ValueError(f"regular file without data: {info.name}")
            with entry.opener() as data:
                tar.addfile(info, data)
        else:
            tar.addfile(info)


def write_layer(entries: Iterable[Entry], out_dir: Path, *, compress: bool = True,
                level: int = 6, epoch: int | None = None) -> Layer:
    """Write ``entries`` as one layer blob under ``out_dir/sha256/`` and describe it.

    Parameters
    ----------
    entries
        The layer's files, directories, links and devices (any order).
    out_dir
        Blob store; the blob lands at ``out_dir/sha256/<hex>``.
    compress
        gzip the tar (``mtime=0``, no name) — else store it uncompressed.
    level
        gzip compression level.
    epoch
        Clamp every mtime to this; defaults to :func:`source_date_epoch`.

    Returns
    -------
    Layer
        The blob's path, digest, size, diff_id and media type.
    """
    epoch = source_date_epoch() if epoch is None else epoch
    store = out_dir / "sha256"
    store.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=store, prefix=".layer-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            blob = _HashingWriter(raw)
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=level) if compress else None
            diff = _HashingWriter(gz if gz is not None else blob)
            with tarfile.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK) as tar:
                _write_entries(tar, entries, epoch)
            if gz is not None:
                gz.close()
        digest = blob.digest
        path = store / digest.split(":", 1)[1]
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    media = MEDIA_LAYER_GZIP if compress else MEDIA_LAYER_TAR
    return Layer(path, digest, blob.size, diff.digest, media)


# --- entry sources ----------------------------------------------------------------------

def file_entry(name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    """An in-memory regular file at ``name``."""
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.size = mode, uid, gid, len(data)
    return Entry(info, lambda: io.BytesIO(data))


def symlink_entry(name: str, target: str) -> Entry:
    """A symbolic link ``name -> target``."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, target
    return Entry(info)


def entries_from_dir(root: Path, prefix: str, *, owner: tuple[int, int] = (0, 0),
                     skip: Callable[[Path], bool] | None = None) -> Iterator[Entry]:
    """Entries for a directory tree placed at ``prefix`` inside the image.

    Ownership becomes ``owner``; modes become 0755 (directories, executables) or 0644, so
    the umask of the build does not leak into the digest; hard links
    inside the tree are kept as hard links; sockets and fifos are refused.

    Parameters
    ----------
    root
        Directory on this machine.
    prefix
        Where ``root`` lands in the image, e.g. ``opt/labkit/venv``.
    owner
        ``(uid, gid)`` for every entry.
    skip
        Returns ``True`` for paths to leave out (their subtree too).
    """
    yield _stat_entry(root, prefix, owner)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not (skip and skip(base / d)))
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            if skip and skip(path):
                continue
            yield _stat_entry(path, f"{prefix}/{path.relative_to(root).as_posix()}", owner)


def _stat_entry(path: Path, name: str, owner: tuple[int, int]) -> Entry:
    """One entry from ``lstat(path)``."""
    st = path.lstat()
    info = tarfile.TarInfo(name)
    # 0755 for directories and executables, 0644 otherwise: independent of the umask.
    info.mode = 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o644
    info.uid, info.gid = owner
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        return Entry(info)
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        return Entry(info)
    if stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        group = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        return Entry(info, lambda: path.open("rb"), group)
    raise ValueError(f"cannot put {path} in a layer: not a file, directory or symlink")


def entries_from_tar(tar: tarfile.TarFile) -> Iterator[Entry]:
    """Entries of an uncompressed, seekable tar (e.g. mmdebstrap's rootfs), ownership kept.

    Hard links become groups keyed by their target, so the writer can reorder them safely
    (whichever name sorts first carries the data, the others link to it).
    """
    members = tar.getmembers()
    by_name = {clean_name(m.name): m for m in members}
    for member in members:
        name = clean_name(member.name)
        if not name:
            continue
        if member.islnk():
            target = by_name[clean_name(member.linkname)]
            info = tarfile.TarInfo(member.name)
            info.type, info.size = tarfile.REGTYPE, target.size
            info.mode, info.uid, info.gid, info.mtime = target.mode, target.uid, target.gid, target.mtime
            info.pax_headers = dict(target.pax_headers)
            yield Entry(info, _tar_opener(tar, target), group=clean_name(target.name))
        elif member.isreg():
            yield Entry(member, _tar_opener(tar, member), group=name)
        else:
            yield Entry(member)


def _tar_opener(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], BinaryIO]:
    """A function opening ``member``'s data in ``tar``."""
    def opener() -> BinaryIO:
        stream = tar.extractfile(member)
        if stream is None:
            raise ValueError(f"no data for {member.name}")
        return stream
    return opener


# --- image documents and archive ---------------------------------------------------------

def canonical_json(doc: object) -> bytes:
    """JSON with sorted keys and no whitespace (same document, same bytes, same digest)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_document(layers: Iterable[Layer], config: ImageConfig, *, epoch: int,
                    architecture: str = "amd64") -> dict[str, object]:
    """The OCI image config JSON for ``layers`` and ``config``."""
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run: dict[str, object] = {"Env": list(config.env)}
    if config.entrypoint:
        run["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        run["Cmd"] = list(config.cmd)
    if config.workdir:
        run["WorkingDir"] = config.workdir
    if config.labels:
        run["Labels"] = dict(config.labels)
    return {"created": created, "architecture": architecture, "os": "linux", "config": run,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}}


def manifest_document(config_blob: bytes, layers: Iterable[Layer]) -> dict[str, object]:
    """The OCI image manifest JSON for a config blob and layers."""
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256_digest(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size} for layer in layers],
    }


def index_document(manifest_blob: bytes, ref: str) -> dict[str, object]:
    """The ``index.json`` naming the one manifest ``ref`` (``registry/repo:tag``)."""
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": sha256_digest(manifest_blob),
            "size": len(manifest_blob),
            "annotations": {ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: tag},
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }


@dataclass(frozen=True)
class Archive:
    """A written OCI archive.

    Attributes
    ----------
    path
        The tar file.
    ref
        Image reference stored in ``index.json`` (e.g. ``labkit.local/pause:1``).
    manifest_digest
        Digest of the manifest: what ``ctr images ls`` shows as the image's digest.
    config_digest
        Digest of the config: the image id containerd's CRI reports.
    layers
        The layers, base first.
    """

    path: Path
    ref: str
    manifest_digest: str
    config_digest: str
    layers: tuple[Layer, ...] = field(default_factory=tuple)


def write_archive(path: Path, ref: str, layers: Iterable[Layer], config: ImageConfig,
                  *, epoch: int | None = None) -> Archive:
    """Write an OCI image-layout tar for one image.

    Parameters
    ----------
    path
        Output tar; written to a temporary name and renamed, so readers never see half.
    ref
        Full image reference, e.g. ``labkit.local/runtime:0.1.0``.
    layers
        Layer blobs, base first.
    config
        Entrypoint, cmd, env, workdir, labels.
    epoch
        Fixed time for entries and ``created``; defaults to :func:`source_date_epoch`.

    Returns
    -------
    Archive
        Where it is and its digests.
    """
    epoch = source_date_epoch() if epoch is None else epoch
    layers = tuple(layers)
    config_blob = canonical_json(config_document(layers, config, epoch=epoch))
    manifest_blob = canonical_json(manifest_document(config_blob, layers))
    index_blob = canonical_json(index_document(manifest_blob, ref))
    blobs: dict[str, Callable[[], BinaryIO]] = {
        sha256_digest(config_blob): lambda: io.BytesIO(config_blob),
        sha256_digest(manifest_blob): lambda: io.BytesIO(manifest_blob),
    }
    sizes = {sha256_digest(config_blob): len(config_blob), sha256_digest(manifest_blob): len(manifest_blob)}
    for layer in layers:
        blobs[layer.digest] = _path_opener(layer.path)
        sizes[layer.digest] = layer.size
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}), epoch)
        _add_bytes(tar, "index.json", index_blob, epoch)
        for name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            tar.addfile(info)
        for digest in sorted(blobs):
            info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
            info.mode, info.mtime, info.size = 0o644, epoch, sizes[digest]
            with blobs[digest]() as data:
                tar.addfile(info, data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return Archive(path, ref, sha256_digest(manifest_blob), sha256_digest(config_blob), layers)


def _path_opener(path: Path) -> Callable[[], BinaryIO]:
    """A function opening ``path`` for reading."""
    return lambda: path.open("rb")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, epoch: int) -> None:
    """Add an in-memory file to ``tar`` with fixed metadata."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.size = 0o644, epoch, len(data)
    tar.addfile(info, io.BytesIO(data))


def read_index(path: Path) -> dict[str, object]:
    """The ``index.json`` of an OCI archive (for checks and for callers wanting the name)."""
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{path}: no index.json")
        return json.loads(member.read())
