"""Facts about this machine (the one the kit runs on), and the privilege checks that depend on them.

Not to be confused with :class:`labkit.testbed.base.Host`: a lab VM or node of a test bed that
the kit runs commands on. This module is about the machine underneath every test bed.

The embedded backend needs root (network namespaces, mounts, cgroups) and adapts to the
host's cgroup layout: cgroup v1 hierarchies (this development machine, no systemd) or the
unified cgroup v2 hierarchy (a usual Ubuntu/Debian host with systemd).

:func:`require_embedded` is the preflight of everything that starts an embedded test bed
(``invoke setup``, ``invoke lab``, ``EmbeddedTestbed.up``): it reads what the host offers into
:class:`Offers` and names in one line everything missing, before anything is started. This
module uses the standard library only, so the check also runs under a bare system Python.
"""

from __future__ import annotations

import gzip
import os
import platform
import shutil
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

CGROUP_ROOT = Path("/sys/fs/cgroup")


class PrivilegeError(PermissionError):
    """The kit needs root for an action; the message names the action and how to get it."""


@dataclass(frozen=True)
class MachineFacts:
    """What the kit needs to know about this machine (recorded in the run manifest's ``host`` entry)."""

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


def facts() -> MachineFacts:
    """Collect :class:`MachineFacts` for this machine."""
    return MachineFacts(
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


# --------------------------------------------------------------------------- preflight

#: Capabilities the embedded test bed uses, by bit number (linux/capability.h): netlink, bridges,
#: routes, nftables (NET_ADMIN); namespaces, mounts, cgroups (SYS_ADMIN).
CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}
#: Kernel modules the embedded test bed needs (module -> kernel config symbol): the lab bridge and
#: the pods' CNI bridges, the VMs' veths, flannel's VXLAN, containerd's overlayfs snapshotter.
KERNEL_MODULES = {"bridge": "CONFIG_BRIDGE", "veth": "CONFIG_VETH", "vxlan": "CONFIG_VXLAN",
                  "overlay": "CONFIG_OVERLAY_FS"}


@dataclass(frozen=True)
class Offers:
    """What this host offers the embedded test bed: the inputs of :func:`embedded_missing`.

    Attributes
    ----------
    euid
        Effective user id.
    cap_eff
        Effective capability mask (``CapEff`` of ``/proc/self/status``).
    tun
        Whether ``/dev/net/tun`` is a character device (userspace WireGuard needs it).
    cgroup
        :func:`cgroup_layout`.
    cgroup_writable
        Whether this process may create cgroups where the kit makes them (not a read-only mount).
    systemd
        Whether systemd is PID 1 (then the kit asks it for a delegated scope with ``systemd-run``).
    systemd_run
        Whether ``systemd-run`` is on PATH.
    modules
        Kernel modules loaded, built in or installed to load (``None``: the host does not say).
    config
        Kernel config symbols set to ``y`` or ``m`` (``None``: no kernel config readable).
    """

    euid: int
    cap_eff: int
    tun: bool
    cgroup: str
    cgroup_writable: bool
    systemd: bool = False
    systemd_run: bool = True
    modules: frozenset[str] | None = None
    config: frozenset[str] | None = field(default=None)


def offers(root: Path = CGROUP_ROOT) -> Offers:
    """Read :class:`Offers` of this process on this host (reads files only, changes nothing)."""
    layout = cgroup_layout(root)
    return Offers(euid=os.geteuid(), cap_eff=_cap_eff(), tun=_is_char_device(Path("/dev/net/tun")),
                  cgroup=layout, cgroup_writable=_cgroup_writable(root, layout), systemd=has_systemd(),
                  systemd_run=shutil.which("systemd-run") is not None, modules=_kernel_modules(),
                  config=_kernel_config())


def embedded_missing(have: Offers) -> list[str]:
    """What the embedded test bed needs and ``have`` lacks, one short phrase each (empty: nothing)."""
    missing = []
    if have.euid != 0:
        missing.append(f"root (running as uid {have.euid}; try `sudo -E`)")
    caps = [name for name, bit in CAPABILITIES.items() if not have.cap_eff >> bit & 1]
    if caps:
        missing.append(" and ".join(caps))
    if not have.tun:
        missing.append("/dev/net/tun (userspace WireGuard; `modprobe tun`, or pass the device into the container)")
    if have.cgroup == "none":
        missing.append(f"a cgroup file system at {CGROUP_ROOT}")
    elif not have.cgroup_writable:
        missing.append(f"writable cgroups ({CGROUP_ROOT} is read-only or not ours to write)")
    elif have.cgroup == "v2" and have.systemd and not have.systemd_run:
        missing.append("systemd-run (the kit asks systemd for a delegated cgroup scope)")
    absent = [m for m in KERNEL_MODULES if module_absent(m, have)]
    if absent:
        missing.append(f"kernel module{'s' if len(absent) > 1 else ''} {', '.join(absent)}")
    return missing


def module_absent(name: str, have: Offers) -> bool:
    """Whether the kernel positively lacks module ``name`` (unknown counts as present: no false alarm)."""
    if have.modules is not None and name in have.modules:
        return False
    if have.config is not None:
        return KERNEL_MODULES[name] not in have.config
    return have.modules is not None


def require_embedded(action: str, have: Offers | None = None) -> None:
    """Raise :class:`PrivilegeError` naming, in one line, all the embedded test bed lacks here.

    Parameters
    ----------
    action
        What was asked, e.g. ``"invoke lab --env embedded"``.
    have
        The host's :class:`Offers` (default: read now).
    """
    missing = embedded_missing(have or offers())
    if missing:
        raise PrivilegeError(f"{action}: the embedded test bed cannot run on this host, it lacks "
                             f"{'; '.join(missing)} (nothing was started)")


def _cap_eff(status: Path = Path("/proc/self/status")) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _is_char_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False


def _cgroup_writable(root: Path, layout: str) -> bool:
    """Whether the hierarchy the kit writes to is mounted read-write and writable by this process."""
    target = root / "memory" if layout in ("v1", "hybrid") else root
    return target.is_dir() and os.access(target, os.W_OK) and not _read_only_mount(target)


def _read_only_mount(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Whether the mount holding ``path`` is read-only (the longest mount point that contains it)."""
    best, ro = "", False
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        point, options = fields[4], fields[5].split(",")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, ro = point, "ro" in options
    return ro


def _kernel_modules(release: str | None = None) -> frozenset[str] | None:
    """Modules loaded (``/sys/module``) and, where ``/lib/modules/<release>`` exists, built in or loadable."""
    release = release or platform.release()
    names = {p.name for p in Path("/sys/module").iterdir()} if Path("/sys/module").is_dir() else set()
    base = Path("/lib/modules") / release
    lists = [base / "modules.builtin", base / "modules.dep"]
    if not any(p.exists() for p in lists):
        return frozenset(names) if names else None
    for listing in (p for p in lists if p.exists()):
        names.update(_module_names(listing.read_text().splitlines()))
    return frozenset(names)


def _module_names(lines: Iterable[str]) -> set[str]:
    """``kernel/net/bridge/bridge.ko.xz: ...`` -> ``bridge`` (modules.dep and modules.builtin lines)."""
    out = set()
    for line in lines:
        path = line.split(":", 1)[0].strip()
        if path:
            out.add(Path(path).name.split(".ko")[0].replace("-", "_"))
    return out


def _kernel_config(release: str | None = None) -> frozenset[str] | None:
    """Symbols set to ``y``/``m`` in ``/proc/config.gz`` or ``/boot/config-<release>`` (``None``: neither)."""
    release = release or platform.release()
    try:
        text = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
    except OSError:
        try:
            text = (Path("/boot") / f"config-{release}").read_text()
        except OSError:
            return None
    return frozenset(line.split("=", 1)[0] for line in text.splitlines() if line.endswith(("=y", "=m")))
