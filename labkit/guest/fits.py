"""Whether the hosts tier runs here, and if not, the reason its tests skip with.

The tier boots a guest with 2 vCPUs and 11 GiB and runs the README's two commands in it: hours
under qemu's emulator (TCG, where KVM cannot boot the guest's kernel; docs/hosts.md has the
measured steps), an estimated hour with KVM (not measured yet): longer than what CI's 90
minutes leave next to the other tiers. So it runs by hand before a release, ``invoke test --tier hosts``
(which sets :data:`NAMED`), and skips everywhere else with that reason. It also skips, naming
what is missing, without ``/dev/kvm``, root, qemu or the memory and disk a guest needs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Set by ``invoke test --tier hosts``: the tier was asked for by name.
NAMED = "LABKIT_HOSTS_TIER"
#: Memory the host must have available beyond the guest's (its own processes, page cache).
MEMORY_MARGIN_MIB = 2048
#: Free disk the guest needs: its image (~2 GB written), the overlay (the copied cache, the VMs' disk).
DISK_GIB = 30


@dataclass(frozen=True)
class Room:
    """The inputs of :func:`reason` (faked in the tests)."""

    named: bool
    kvm: bool
    root: bool
    qemu: bool
    available_mib: int
    free_gib: float
    guest_mib: int


def room(guest_mib: int | None = None) -> Room:
    """Read :class:`Room` of this machine."""
    from labkit.guest.machine import RUN_DIR, Resources

    free = shutil.disk_usage(RUN_DIR.parent if RUN_DIR.parent.exists() else "/").free / 2**30
    return Room(named=os.environ.get(NAMED) == "1", kvm=os.access("/dev/kvm", os.R_OK | os.W_OK), root=os.geteuid() == 0,
                qemu=shutil.which("qemu-system-x86_64") is not None, available_mib=_available_mib(),
                free_gib=free, guest_mib=guest_mib or Resources().memory_mib)


def reason(have: Room) -> str | None:
    """Why the hosts tier cannot or should not run with ``have`` (``None``: run it)."""
    if not have.named:
        return ("hosts tier runs by hand before a release: `invoke test --tier hosts` (hours of a 2-vCPU guest "
                "under TCG, an estimated hour with KVM: more than CI's 90 min leave next to the other tiers; "
                "README, 'Where it was tested', says when it last ran)")
    if not have.kvm:
        return "hosts tier needs /dev/kvm (read-write) to boot its guest"
    if not have.root:
        return "hosts tier needs root (mmdebstrap --mode=root, a network namespace, a tap device)"
    if not have.qemu:
        return "hosts tier needs qemu-system-x86_64 (`invoke setup` installs it where /dev/kvm exists)"
    if have.available_mib < have.guest_mib + MEMORY_MARGIN_MIB:
        return (f"hosts tier's guest would not fit: it needs {have.guest_mib} MiB + {MEMORY_MARGIN_MIB} MiB "
                f"of margin, {have.available_mib} MiB are available")
    if have.free_gib < DISK_GIB:
        return f"hosts tier needs {DISK_GIB} GiB of free disk for its guest, {have.free_gib:.0f} GiB are free"
    return None


def skip_reason() -> str | None:
    """:func:`reason` for this machine."""
    return reason(room())


def _available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0
