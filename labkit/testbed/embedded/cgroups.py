"""Where the embedded test bed's cgroups live, on each cgroup layout a host may have.

The kit makes one cgroup tree per VM (``lkt-vm-<vm>``: daemons in ``system``, pods in the
kubelet's ``kubepods``) and one for its process supervisor (``lkt-supervisor``). Where these
trees go depends on the host (:func:`plan` decides, :mod:`labkit.machine` detects):

``v1`` (also ``hybrid``: v1 controllers plus a cgroup2 at ``unified``)
    Nobody else manages the hierarchies (this development machine has no systemd): the trees
    are ``/lkt-...`` under every v1 controller; teardown also searches ``unified``, where runc
    and the kubelet make cgroups on a hybrid host.
``v2`` without systemd
    The unified hierarchy is the kit's to use: the trees are top level, ``/sys/fs/cgroup/lkt-...``,
    with the controllers enabled in the root's ``cgroup.subtree_control``.
``v2`` with systemd (a usual Debian/Ubuntu host)
    systemd owns the tree and must be its single writer; it hands out subtrees by
    *delegation*. The supervisor is started by ``systemd-run --scope -p Delegate=yes`` as the
    transient unit :data:`SCOPE` in ``system.slice``; it moves itself into ``lkt-supervisor``
    below the scope (a cgroup with enabled controllers may hold no process) and enables the
    controllers in the scope's ``cgroup.subtree_control``; the VMs' trees are made below the
    scope too. Nothing is written into a cgroup systemd manages. When the last process of the
    scope ends, systemd removes the scope and everything below it.
    Each VM's processes also get a *cgroup namespace* rooted at the VM's cgroup, with the
    unified hierarchy mounted again in the VM's mount namespace (:attr:`Layout.cgroupns`):
    the kubelet and runc see ``/sys/fs/cgroup`` as the VM's tree. Without it both would write
    into systemd's cgroups: runc's cgroupfs manager enables every controller of the root in the
    ``cgroup.subtree_control`` of each ancestor of a cgroup it makes (``/`` and ``system.slice``
    among them), and the kubelet refuses a ``cgroupRoot`` that lacks a controller the root has
    (``hugetlb``, which systemd never delegates: "cgroup ... has some missing controllers").

In every case the kubelet and containerd use the ``cgroupfs`` driver: the kit is the single
manager of its subtree (the delegated scope on systemd hosts). The ``systemd`` driver would
instead ask systemd to create ``kubepods`` slices outside the kit's subtree, in the host's own
tree, which the kit must not disturb (and which would outlive a killed test bed as units).
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit import machine

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: v1 controller hierarchies the kit makes its cgroups in (``systemd`` is a named hierarchy).
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "systemd")
#: The transient systemd unit whose delegated cgroup holds the kit's trees on a systemd v2 host.
SCOPE = "lkt-embedded.scope"
#: The slice the scope goes into.
SLICE = "system.slice"
#: The supervisor's leaf cgroup (relative to the layout's base).
SUPERVISOR = "/lkt-supervisor"
#: Driver the kubelet (``cgroupDriver``) and containerd's runc (``SystemdCgroup``) use; see the module doc.
DRIVER = "cgroupfs"


class CgroupError(RuntimeError):
    """A cgroup could not be made, joined or delegated; the message says which and why."""


@dataclass(frozen=True)
class Layout:
    """Where the kit's cgroups go on this host.

    Attributes
    ----------
    mode
        ``v1`` (one tree per v1 controller) or ``v2`` (the unified hierarchy).
    base
        Path below each hierarchy's mount that holds the kit's trees (``""``: the top level;
        ``system.slice/lkt-embedded.scope`` on a systemd v2 host).
    hierarchies
        Directories under :data:`CGROUP_ROOT` the kit creates cgroups in (``""``: the v2 mount).
    teardown
        Hierarchies searched for the kit's processes and cgroups when tearing down.
    scope
        The delegated systemd scope (``None`` when the kit needs none).
    cgroupns
        Whether each VM's processes run in a cgroup namespace rooted at the VM's cgroup (see
        the module doc): where the kit may write only below its own subtree.
    """

    mode: Literal["v1", "v2"]
    base: str = ""
    hierarchies: tuple[str, ...] = V1_CONTROLLERS
    teardown: tuple[str, ...] = (*V1_CONTROLLERS, "unified")
    scope: str | None = None
    cgroupns: bool = False

    @property
    def driver(self) -> str:
        """The cgroup driver of the kubelet and of containerd's runc (always ``cgroupfs``)."""
        return DRIVER

    def path(self, cgroup: str) -> str:
        """``cgroup`` (``/lkt-vm-a``) as a process of the host sees it in the hierarchy."""
        return "/" + "/".join(p for p in (self.base, cgroup.strip("/")) if p)

    def vm_root(self, cgroup: str) -> str:
        """A VM's cgroup ``cgroup`` as the VM's own processes see it: the kubelet's ``cgroupRoot``.

        ``/`` in a cgroup namespace rooted there (:attr:`cgroupns`), else :meth:`path`.
        """
        return "/" if self.cgroupns else self.path(cgroup)

    def base_dirs(self, teardown: bool = False) -> list[Path]:
        """The directory holding the kit's trees in each hierarchy that exists."""
        names = self.teardown if teardown else self.hierarchies
        return [CGROUP_ROOT / h / self.base if h else CGROUP_ROOT / self.base
                for h in names if (CGROUP_ROOT / h).is_dir()]

    def dirs(self, cgroup: str, teardown: bool = False) -> list[Path]:
        """The directories of ``cgroup`` in every hierarchy (``teardown``: also those only searched then)."""
        return [base / cgroup.strip("/") for base in self.base_dirs(teardown)]

    def supervisor_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` of the supervisor, started in the delegated scope where the layout has one."""
        if self.scope is None:
            return list(argv)
        return ["systemd-run", "--scope", "--quiet", f"--unit={self.scope}", f"--slice={SLICE}",
                "--property=Delegate=yes", "--collect", "--", *argv]


def plan(cgroup: str, systemd: bool) -> Layout:
    """Decide the :class:`Layout` for a host's cgroup mode (:func:`labkit.machine.cgroup_layout`) and init."""
    if cgroup in ("v1", "hybrid"):
        return Layout("v1")
    if cgroup == "v2" and systemd:
        return Layout("v2", base=f"{SLICE}/{SCOPE}", hierarchies=("",), teardown=("",), scope=SCOPE, cgroupns=True)
    if cgroup == "v2":
        return Layout("v2", hierarchies=("",), teardown=("",))
    raise CgroupError(f"no cgroup file system at {CGROUP_ROOT} (the embedded test bed needs one)")


@functools.cache
def current() -> Layout:
    """The :class:`Layout` of this host (detected once per process)."""
    return plan(machine.cgroup_layout(CGROUP_ROOT), machine.has_systemd())


# --- making and joining cgroups ----------------------------------------------------------------

def create(layout: Layout, cgroup: str, leaves: Sequence[str] = (), enable: bool = True) -> None:
    """Make ``cgroup`` and its ``leaves`` (``system``) in every hierarchy of ``layout``.

    v1: an empty cpuset admits no task, so ``cpuset.cpus``/``cpuset.mems`` are copied from the
    parent. v2: the controllers available to ``cgroup`` are enabled in its
    ``cgroup.subtree_control`` (it holds no process itself, only its leaves do); with
    ``enable=False`` later, by :func:`enable` (a process must first sit in ``cgroup`` itself to
    root a cgroup namespace there).
    """
    _enable_top(layout)
    for directory in layout.dirs(cgroup):
        for sub in (directory, *(directory / leaf for leaf in leaves)):
            sub.mkdir(exist_ok=True)
            if layout.mode == "v1" and directory.parent.name == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    target = sub / knob
                    if target.exists() and not target.read_text().strip():
                        target.write_text((sub.parent / knob).read_text())
        if layout.mode == "v2" and leaves and enable:
            enable_controllers(directory)


def enable(layout: Layout, cgroup: str) -> None:
    """v2: enable the controllers ``cgroup`` has for its children (see :func:`create`'s ``enable``)."""
    if layout.mode == "v2":
        for directory in layout.dirs(cgroup):
            enable_controllers(directory)


def _enable_top(layout: Layout) -> None:
    """v2 without systemd: the root cgroup is the kit's to configure (no other manager)."""
    if layout.mode == "v2" and layout.scope is None:
        for base in layout.base_dirs():
            enable_controllers(base)


def enable_controllers(directory: Path) -> list[str]:
    """Enable every controller ``directory`` has (``cgroup.controllers``) for its children; return them."""
    wanted = (directory / "cgroup.controllers").read_text().split()
    have = set((directory / "cgroup.subtree_control").read_text().split())
    missing = [c for c in wanted if c not in have]
    if missing:
        try:
            (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
        except OSError as err:
            raise CgroupError(f"cannot enable the controllers {missing} in {directory}: {err}") from None
    return wanted


def join(layout: Layout, cgroup: str, pid: int | None = None) -> None:
    """Move process ``pid`` (default: the caller) into ``cgroup`` in every hierarchy."""
    text = str(pid or os.getpid())
    for directory in layout.dirs(cgroup):
        (directory / "cgroup.procs").write_text(text)


def adopt_scope(layout: Layout) -> None:
    """Called by the supervisor first thing in the delegated scope: move into its leaf, enable controllers.

    The scope's cgroup holds only the supervisor at this point; once it sits in
    :data:`SUPERVISOR`, the scope's controllers can be handed down to the VMs' trees.
    """
    if layout.scope is None:
        return
    own = Path(f"/proc/{os.getpid()}/cgroup").read_text()
    if layout.path("") not in own:
        raise CgroupError(f"the supervisor is not in the delegated scope {layout.path('')} (its cgroup: "
                          f"{own.strip()}); systemd-run --scope did not place it")
    create(layout, SUPERVISOR)
    join(layout, SUPERVISOR)
    for base in layout.base_dirs():
        enable_controllers(base)


def wait_scope_gone(layout: Layout, timeout: float = 15.0) -> None:
    """Wait until systemd has removed the scope of a previous test bed (its last process just ended).

    Raises
    ------
    CgroupError
        When the scope is still there after ``timeout`` seconds (its processes outlived SIGKILL).
    """
    if layout.scope is None:
        return
    deadline = time.monotonic() + timeout
    while any(d.exists() for d in layout.base_dirs()):
        if time.monotonic() > deadline:
            raise CgroupError(f"systemd still has the scope {layout.scope} of a previous test bed "
                              f"after {timeout:.0f} s (`systemctl status {layout.scope}`)")
        time.sleep(0.2)


def scope_active(layout: Layout) -> bool:
    """Whether systemd has the kit's scope (``systemctl is-active``; ``False`` without a scope)."""
    if layout.scope is None:
        return False
    out = subprocess.run(["systemctl", "is-active", layout.scope], capture_output=True, text=True)
    return out.stdout.strip() in ("active", "activating", "deactivating")
