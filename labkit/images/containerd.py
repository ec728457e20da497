"""Import OCI archives into a containerd with Debian's ``ctr`` (no registry involved)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from labkit.images import oci
from labkit.images.sources import ImageError, run


@dataclass(frozen=True)
class ImageRecord:
    """One line of ``ctr images ls``.

    Attributes
    ----------
    ref
        Image name, e.g. ``labkit.local/pause:1``.
    media_type
        Media type of the target (an OCI manifest here).
    digest
        Digest of the manifest.
    """

    ref: str
    media_type: str
    digest: str


#: config.toml of a private containerd rooted at ``{d}`` (its own socket, root and state; no CRI).
PRIVATE_CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
"""


def private_config(workdir: Path) -> str:
    """:data:`PRIVATE_CONFIG` for a throwaway containerd in ``workdir``."""
    return PRIVATE_CONFIG.format(d=workdir)


@contextmanager
def private_containerd(workdir: Path, log: IO[Any] | int = subprocess.DEVNULL,
                       timeout: float = 20.0) -> Iterator[Path]:
    """A throwaway containerd rooted in ``workdir`` (the image tests, the benchmarks); yields its socket.

    Writes :func:`private_config`, starts ``containerd`` (output to ``log``), waits up to
    ``timeout`` s for its socket. On exit it stops it (SIGTERM, SIGKILL after 15 s) and lazily
    unmounts what its snapshotter left mounted under ``workdir/root``; ``workdir`` stays.

    Raises
    ------
    ImageError
        When the socket does not appear in time.
    """
    (workdir / "config.toml").write_text(private_config(workdir))
    proc = subprocess.Popen(["containerd", "--config", str(workdir / "config.toml")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    socket = workdir / "containerd.sock"
    try:
        deadline = time.monotonic() + timeout
        while not socket.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise ImageError(f"containerd in {workdir}: no socket after {timeout:.0f} s (exit {proc.poll()})")
            time.sleep(0.1)
        yield socket
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        subprocess.run(["umount", "-R", "-l", str(workdir / "root")], capture_output=True)


def ctr_binary() -> str:
    """The ``ctr`` command (Debian package ``containerd``)."""
    found = shutil.which("ctr")
    if not found:
        raise ImageError("ctr not found: `apt-get install containerd` (or `sudo invoke setup`)")
    return found


def archive_ref(archive: Path) -> str:
    """The image name stored in an archive's ``index.json`` (``io.containerd.image.name``)."""
    manifests = oci.read_index(archive)["manifests"]
    return str(manifests[0]["annotations"][oci.ANNOTATION_CONTAINERD_NAME])  # type: ignore[index]


def _check_access(address: str) -> None:
    """Clear errors for a missing socket or a non-root caller."""
    if not Path(address).exists():
        raise ImageError(f"containerd socket {address} does not exist: is containerd running there?")
    if not os.access(address, os.R_OK | os.W_OK):
        who = "this process is not root" if os.geteuid() != 0 else "permission denied"
        raise ImageError(f"cannot use containerd socket {address}: {who}")


def import_archive(archive: Path | str, containerd_address: Path | str, namespace: str = "k8s.io",
                   *, unpack: bool = True, snapshotter: str | None = None, timeout: float = 900) -> str:
    """Import an OCI archive into the containerd listening on ``containerd_address``.

    Runs ``ctr --address <socket> --namespace <namespace> images import <archive>``. The
    image keeps the name in the archive (``labkit.local/<name>:<tag>``), so pods refer to it
    with ``imagePullPolicy: Never`` (or ``IfNotPresent``) and no registry is ever contacted.
    Stable entry point used by the embedded testbed.

    Parameters
    ----------
    archive
        An archive from :func:`labkit.images.build`.
    containerd_address
        containerd's gRPC socket.
    namespace
        containerd namespace; ``k8s.io`` is the one the kubelet's CRI uses.
    unpack
        Unpack the layers into the snapshotter now (so the first pod starts fast).
    snapshotter
        Snapshotter to unpack into (default: containerd's default, overlayfs).
    timeout
        Seconds before giving up on ``ctr``.

    Returns
    -------
    str
        The imported image reference.

    Raises
    ------
    ImageError
        When the archive or the socket is missing, the caller may not use the socket, or
        ``ctr`` fails (the message shows its last output lines).
    """
    archive, address = Path(archive), str(containerd_address)
    if not archive.is_file():
        raise ImageError(f"no such archive: {archive} (build it with labkit.images.build)")
    _check_access(address)
    argv = [ctr_binary(), "--address", address, "--namespace", namespace, "images", "import"]
    if not unpack:
        argv.append("--no-unpack")
    if snapshotter:
        argv += ["--snapshotter", snapshotter]
    run([*argv, str(archive)], timeout=timeout)
    return archive_ref(archive)


def list_images(containerd_address: Path | str, namespace: str = "k8s.io") -> list[ImageRecord]:
    """The images of ``namespace`` in the containerd at ``containerd_address`` (``ctr images ls``)."""
    address = str(containerd_address)
    _check_access(address)
    out = run([ctr_binary(), "--address", address, "--namespace", namespace, "images", "ls"])
    records = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            records.append(ImageRecord(fields[0], fields[1], fields[2]))
    return records
