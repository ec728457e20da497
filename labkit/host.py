"""Facts about the host the kit runs on, and the privilege checks that depend on them.

The embedded backend needs root (network namespaces, mounts, cgroups) and adapts to the
host's cgroup layout: cgroup v1 hierarchies (this development machine, no systemd) or the
unified cgroup v2 hierarchy (a usual Ubuntu/Debian host with systemd).
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

CGROUP_ROOT = Path("/sys/fs/cgroup")


class PrivilegeError(PermissionError):
    """The kit needs root for an action; the message names the action and how to get it."""


@dataclass(frozen=True)
class HostFacts:
    """What the kit needs to know about this host."""

    kernel: str
    machine: str
    cpus: int
    memory_gib: float
    root: bool
    cgroup: Literal["v1", "v2", "hybrid", "none"]
    systemd: bool

    def as_dict(self) -> dict[str, object]:
        """Plain mapping (for the run manifest)."""
        return asdict(self)


def cgroup_layout(root: Path = CGROUP_ROOT) -> Literal["v1", "v2", "hybrid", "none"]:
    """Detect the cgroup layout under ``root``.

    ``v2``: the unified hierarchy is mounted at the root (``cgroup.controllers`` there);
    ``hybrid``: v1 controllers plus a non-empty ``unified`` v2 hierarchy with controllers;
    ``v1``: v1 controller hierarchies (a ``unified`` mount without controllers is ignored);
    ``none``: no cgroup file system found.
    """
    if (root / "cgroup.controllers").exists():
        return "v2"
    has_v1 = (root / "memory").is_dir() or (root / "cpu").is_dir()
    unified = root / "unified" / "cgroup.controllers"
    if has_v1 and unified.exists() and unified.read_text().strip():
        return "hybrid"
    return "v1" if has_v1 else "none"


def has_systemd() -> bool:
    """Whether systemd is the init system (PID 1) of this host."""
    if Path("/run/systemd/system").is_dir():
        return True
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def memory_gib() -> float:
    """Total memory in GiB from /proc/meminfo (0 when unreadable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def facts() -> HostFacts:
    """Collect :class:`HostFacts` for this host."""
    return HostFacts(
        kernel=platform.release(),
        machine=platform.machine(),
        cpus=os.cpu_count() or 1,
        memory_gib=memory_gib(),
        root=os.geteuid() == 0,
        cgroup=cgroup_layout(),
        systemd=has_systemd(),
    )


def require_root(action: str) -> None:
    """Raise :class:`PrivilegeError` unless running as root.

    Parameters
    ----------
    action
        What needs root, e.g. ``"creating network namespaces for the embedded test bed"``.
    """
    if os.geteuid() != 0:
        raise PrivilegeError(
            f"{action} needs root (network namespaces, mounts and cgroups are privileged): "
            "run as root, e.g. `sudo -E invoke ...`; the unit and notebook test tiers run without root"
        )
