"""The VMs' disk: one ext4 file system in a sparse image file, loop-mounted where the VMs keep their state.

A real VM has a disk of its own; here every VM's private directories (containerd's unpacked
image layers, the kubelet's pods, etcd) live under :data:`~.vm.STATE_ROOT`. Giving that
directory a file system of its own, instead of the host's, does two things:

- it keeps the host's file system out of the measurements. On this machine's root ext4
  (mounted ``discard,resv_strict``) creating a file costs ~0.8 ms of kernel time: 18,000
  4 kB files took 15.4 s, against 1.0 s on a fresh ext4 in an image file on the same disk.
  A runtime-image import (18,300 files) spent 15 of its 27 s of CPU in ``openat``; on the
  image file system it takes 11.5 s (30 Nov, ``ctr import`` into an idle containerd);
- teardown is an unmount and an unlink, not the deletion of every VM's files one by one.

The image is sparse (it takes the space written, up to :data:`MAX_SIZE`, at most 80 % of the
free space), created at the test bed's first VM and removed by :func:`release` when the test
bed is swept. Where a loop device cannot be had (no ``/dev/loop-control`` in a container, no
``mkfs.ext4``), or with ``LABKIT_VM_DISK=host``, the state stays on the host's file system and
the log says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from labkit.testbed.embedded import linux

Log = Callable[[str], None]

#: The sparse image file holding the VMs' file system (on the host's file system).
IMAGE = Path("/var/lib/lkt.disk")
#: Where what the host's file system still holds under the mount point goes before the mount
#: (a run with ``LABKIT_VM_DISK=host`` left it; same file system: a rename), deleted in the background.
HOST_TRASH = Path("/var/lib/lkt-trash")
#: Environment variable choosing where the VMs' state lives: ``image`` (default) or ``host``.
MODE_ENV = "LABKIT_VM_DISK"
MODES = ("image", "host")
GIB = 1 << 30
#: Largest image (sparse: only what is written takes space).
MAX_SIZE = 256 * GIB
#: Below this much free space for the image, the state stays on the host's file system.
MIN_SIZE = 8 * GIB
#: ext4 options: ``noinit_itable``, the fresh sparse file reads as zeros, so the kernel need not
#: zero the inode tables in the background; ``noatime``, no write per read.
MOUNT_OPTIONS = "loop,noatime,noinit_itable"


class DiskError(RuntimeError):
    """The VMs' disk cannot be set up as asked; the message names the setting or the command."""


def mode() -> str:
    """The mode asked for by :data:`MODE_ENV` (``image`` when unset)."""
    value = os.environ.get(MODE_ENV, "image").strip().lower() or "image"
    if value not in MODES:
        raise DiskError(f"{MODE_ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def mounted(root: Path) -> bool:
    """Whether the VMs' file system is mounted on ``root``."""
    return linux.is_mount_point(root)


def ensure(root: Path, log: Log = print) -> str:
    """Mount the VMs' file system on ``root`` unless it is there; return where the state lives.

    Returns ``"image"`` (the loop-mounted image, already or now) or ``"host"`` (the host's
    file system: asked for, or no loop device, tool or space, as logged).
    """
    if mounted(root):
        return "image"
    root.mkdir(parents=True, exist_ok=True)
    if mode() == "host":
        return "host"
    size = _size()
    why = _unavailable(size)
    if why is None:
        _clear(root)
        why = _make_and_mount(root, size)
    if why is not None:
        log(f"[embedded] VM disk: {why}; the VMs' state stays on the host's file system ({root})")
        return "host"
    shutil.rmtree(root / "lost+found", ignore_errors=True)
    log(f"[embedded] VM disk: ext4 in {IMAGE} (sparse, up to {size / GIB:.0f} GiB) mounted on {root}")
    return "image"


def _size() -> int:
    """Size of the image: 80 % of the free space where it lives, at most :data:`MAX_SIZE`, in whole MiB."""
    free = shutil.disk_usage(IMAGE.parent).free + (IMAGE.stat().st_blocks * 512 if IMAGE.exists() else 0)
    return min(MAX_SIZE, int(free * 0.8)) >> 20 << 20


def _unavailable(size: int) -> str | None:
    """Why an image of ``size`` bytes cannot be used here, or ``None``."""
    missing = [tool for tool in ("mkfs.ext4", "mount") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (Debian: e2fsprogs, mount)"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control (no loop devices here)"
    if size < MIN_SIZE:
        return f"{size / GIB:.1f} GiB free for {IMAGE}, less than {MIN_SIZE / GIB:.0f} GiB"
    return None


def _clear(root: Path) -> None:
    """Move what ``root`` holds on the host's file system to :data:`HOST_TRASH` and delete it in the background.

    The caller holds the machine's test bed (nothing of the kit runs): whatever is there was left
    by a run that kept its state on the host (an emptied ``.trash`` at least), and a mount over
    it would hide it for good.
    """
    for entry in list(root.iterdir()):
        HOST_TRASH.mkdir(parents=True, exist_ok=True)
        target = HOST_TRASH / f"{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
        entry.rename(target)
        linux.delete_detached(target)


def _make_and_mount(root: Path, size: int) -> str | None:
    """Create the sparse image, make ext4 in it and loop-mount it on ``root``; on failure say why."""
    IMAGE.unlink(missing_ok=True)
    with IMAGE.open("wb") as image:
        image.truncate(size)
    for argv in (["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "lkt-vms", "-E", "nodiscard", str(IMAGE)],
                 ["mount", "-o", MOUNT_OPTIONS, str(IMAGE), str(root)]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            IMAGE.unlink(missing_ok=True)
            return f"`{' '.join(argv)}` failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


def release(root: Path) -> None:
    """Unmount the VMs' file system from ``root`` and delete its image (no VM may use it any more).

    Deletions still running inside it (:func:`~.vm.discard`'s ``rm``) are killed first: what
    they delete goes with the image. The unmount is lazy, so a process that still has a file
    open there (it is being killed) cannot make it fail; the loop device detaches itself when
    the last reference goes.
    """
    if mounted(root):
        _kill_deletions(root)
        linux.umount(root)
    IMAGE.unlink(missing_ok=True)


def _kill_deletions(root: Path) -> None:
    """SIGKILL every ``rm`` deleting a path under ``root`` (:func:`~.vm.discard`'s background deletions)."""
    prefix = str(root).rstrip("/") + "/"
    for pid, argv in linux.running_deletions().items():
        if any(a.startswith(prefix) for a in argv[1:]):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
