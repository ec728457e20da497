"""Thin wrappers over the Linux system calls Python 3.11 lacks: setns, unshare, mount, prctl.

Only what the embedded testbed needs, called through ``ctypes`` on the C library; plus the
mount table and detached processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | Path | None) -> bytes | None:
    return None if value is None else str(value).encode()


def setns(path: str | Path, nstype: int) -> None:
    """Move the calling thread into the namespace whose file is ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns({path})")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    """Give the calling process new namespaces of the kinds in ``flags``."""
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | Path | None, target: str | Path, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {source} on {target}")


def umount(target: str | Path, flags: int = MNT_DETACH) -> None:
    """umount2(2), lazily by default."""
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def set_child_subreaper() -> None:
    """Make this process adopt orphaned descendants (so it can reap them)."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def mount_points(prefix: str = "/") -> list[str]:
    """Mount points of this mount namespace under ``prefix``, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix.rstrip("/") or point.startswith(prefix.rstrip("/") + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def is_mount_point(path: str | Path) -> bool:
    """Whether ``path`` is a mount point in this mount namespace."""
    return str(path) in mount_points(str(path))


def spawn_detached(argv: Sequence[str], stdout: IO[Any] | int = subprocess.DEVNULL) -> subprocess.Popen:
    """Start ``argv`` in a session of its own, so that it outlives this process; a daemon thread reaps it.

    Read its end from ``returncode`` (the reaper sets it), not ``poll()``: that cannot take the
    wait lock the reaper holds and answers ``None`` while the reaper waits.
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                            start_new_session=True)
    threading.Thread(target=proc.wait, daemon=True, name=f"reaper-{proc.pid}").start()
    return proc


def delete_detached(path: str | Path) -> None:
    """``rm -rf path`` in a detached process (:func:`spawn_detached`) at idle CPU and I/O priority."""
    spawn_detached(["nice", "-n", "19", "ionice", "-c", "3", "rm", "-rf", "--one-file-system", str(path)])


def running_deletions() -> dict[int, list[str]]:
    """The running ``rm`` processes, pid -> argv (also still in ``nice``/``ionice``: :func:`delete_detached`)."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "rm" in argv:
            found[int(cmdline.parent.name)] = argv
    return found
