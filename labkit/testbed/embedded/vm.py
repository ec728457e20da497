"""Network-namespace "VMs": a network namespace, a mount namespace and a cgroup root each.

Layout (every name carries the kit's prefix ``lkt`` so :func:`sweep` finds leftovers):

- the lab network (Crownlabs' internal network) is the bridge ``lkt-lab0`` with
  ``10.250.0.1/24`` in the host namespace, so the kit can reach each apiserver; the host
  does not forward (no VM has a default route), so nothing leaves the kit's namespaces;
- VM ``n`` is the network namespace ``lkt-<name>`` whose ``eth0`` is a veth to the bridge
  (host side ``lkt-h<n>``); a link fault sets the host side down, like pulling the cable;
- its mount namespace is kept in ``/run/lkt/ns/<name>.mnt`` and gives the VM private
  ``/var/lib/kubelet``, ``/var/lib/containerd``, ``/run/containerd``, ``/var/log/pods``,
  ``/var/log/containers``, ``/etc/cni/net.d``, ``/var/lib/cni``, ``/etc/kubernetes``,
  ``/var/lib/etcd`` and ``/run/netns`` (bound from ``/var/lib/lkt/<name>/``). The host's
  paths are never created or changed: a path the host has is covered inside the VM's mount
  namespace only; for one the host lacks, the nearest directory the host has is *shadowed*
  there (:func:`shadow`: a tmpfs holding the host's entries bound back, and room for the new
  mount point), so no empty ``/var/lib/etcd`` appears under a package that owns it later;
- its cgroup root is ``/lkt-<name>`` (daemons in ``/lkt-<name>/system``, pods in
  ``/lkt-<name>/kubepods`` made by the kubelet), under every cgroup v1 controller or, on a
  cgroup v2 host, in the unified hierarchy (below the kit's delegated systemd scope where
  systemd runs, in a cgroup namespace rooted at the VM's cgroup, kept in
  ``/run/lkt/ns/<name>.cgroup``, with ``/sys/fs/cgroup`` mounted again in the VM's mount
  namespace): :mod:`.cgroups` decides where.

A process enters a VM with :func:`enter` (join the cgroups, ``setns`` into the network, cgroup
and mount namespaces); ``/sys`` itself is never remounted.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError

from labkit import timescale
from labkit.testbed.embedded import cgroups, disk, linux

PREFIX = "lkt"
#: Prefix of this backend's VM namespaces and cgroups: the kit's prefix plus ``vm``, so the
#: sweeper removes only what the embedded testbed made (other parts of the kit use ``lkt-``).
VM_PREFIX = f"{PREFIX}-vm-"


def netns_name(vm_name: str) -> str:
    """Network namespace of VM ``vm_name``."""
    return f"{VM_PREFIX}{vm_name}"


def cgroup_name(vm_name: str) -> str:
    """Cgroup root of VM ``vm_name`` (the same path under every hierarchy)."""
    return f"/{VM_PREFIX}{vm_name}"


#: This backend's host links: the lab bridge and the host ends of the VMs' veths.
_OWN_LINK = re.compile(rf"^{PREFIX}-(lab0|h\d+)$")
LAB_BRIDGE = f"{PREFIX}-lab0"
LAB_NETWORK = ipaddress.ip_network("10.250.0.0/24")
LAB_GATEWAY = str(LAB_NETWORK.network_address + 1)
STATE_ROOT = Path("/var/lib") / PREFIX
#: Removed VMs' state waiting for its background deletion (:func:`discard`; not a leftover). On
#: the VMs' file system (:mod:`.disk`), so that moving a tree there is a rename.
TRASH_ROOT = STATE_ROOT / ".trash"
NS_DIR = Path("/run") / PREFIX / "ns"

#: The kubelet's root directory (``--root-dir``), a shared mount in the VM (:func:`_create_mount_ns`).
KUBELET_ROOT = "/var/lib/kubelet"

#: Directories private to each VM (inside the VM -> under its state directory).
PRIVATE_DIRS = {
    KUBELET_ROOT: "kubelet",
    "/var/lib/containerd": "containerd",
    "/run/containerd": "run-containerd",
    "/var/log/pods": "log-pods",
    "/var/log/containers": "log-containers",
    "/etc/cni/net.d": "cni-conf",
    "/var/lib/cni": "cni-state",
    "/etc/kubernetes": "etc-kubernetes",
    "/var/lib/etcd": "etcd",
    "/var/lib/labkit": "labkit",
}

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class VmError(RuntimeError):
    """A VM could not be created, entered or removed; the message says what and why."""


@dataclass(frozen=True)
class Vm:
    """One network-namespace VM.

    Attributes
    ----------
    name
        DNS-label name; also the Kubernetes node name.
    index
        Position on the lab network (address ``10.250.0.<index + 10>``).
    """

    name: str
    index: int
    routes: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise VmError(f"VM name {self.name!r} must be a DNS label of at most 40 characters")
        if not 0 <= self.index < 240:
            raise VmError(f"VM index {self.index} out of range 0..239 (lab network {LAB_NETWORK})")

    @property
    def netns(self) -> str:
        """Name of the network namespace (``lkt-<name>``)."""
        return netns_name(self.name)

    @property
    def address(self) -> str:
        """Address on the lab network."""
        return str(LAB_NETWORK.network_address + 10 + self.index)

    @property
    def host_link(self) -> str:
        """Host side of the VM's veth (on the lab bridge)."""
        return f"{PREFIX}-h{self.index}"

    @property
    def cgroup(self) -> str:
        """Cgroup root of the VM relative to the kit's base (:mod:`.cgroups`), the same under every controller."""
        return cgroup_name(self.name)

    @property
    def cgroup_path(self) -> str:
        """Cgroup root of the VM as its processes see it (the kubelet's ``cgroupRoot``)."""
        return cgroups.current().vm_root(self.cgroup)

    @property
    def state_dir(self) -> Path:
        """Host directory holding everything private to the VM."""
        return STATE_ROOT / self.name

    @property
    def mnt_file(self) -> Path:
        """File the VM's mount namespace is bound to."""
        return NS_DIR / f"{self.name}.mnt"

    @property
    def cgroupns_file(self) -> Path:
        """File the VM's cgroup namespace is bound to (where the layout has them: :attr:`.cgroups.Layout.cgroupns`)."""
        return NS_DIR / f"{self.name}.cgroup"

    def host_path(self, vm_path: str) -> Path:
        """Host path of a path inside the VM's private directories (for writing configs)."""
        for inside, sub in sorted(PRIVATE_DIRS.items(), key=lambda kv: -len(kv[0])):
            if vm_path == inside or vm_path.startswith(inside + "/"):
                return self.state_dir / sub / vm_path[len(inside):].lstrip("/")
        raise VmError(f"{vm_path} is not in a VM-private directory ({', '.join(PRIVATE_DIRS)})")


# --- the lab network --------------------------------------------------------------------------

def ensure_lab_network() -> None:
    """Create the lab bridge with the host's address on it (idempotent)."""
    with IPRoute() as ip:
        if not ip.link_lookup(ifname=LAB_BRIDGE):
            ip.link("add", ifname=LAB_BRIDGE, kind="bridge")
        idx = ip.link_lookup(ifname=LAB_BRIDGE)[0]
        have = {a.get("address") for a in ip.get_addr(index=idx)}
        if LAB_GATEWAY not in have:
            ip.addr("add", index=idx, address=LAB_GATEWAY, prefixlen=LAB_NETWORK.prefixlen)
        ip.link("set", index=idx, state="up")


#: Host limits a test bed needs (sysctl under /proc/sys -> minimum). Every wireguard-go (two per
#: peering), kubelet and containerd holds inotify instances; the default 128 instances per user
#: stopped 8 clusters (28 peerings) with "Failed to listen on uapi socket: too many open files".
HOST_LIMITS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def ensure_host_limits(root: Path = Path("/proc/sys"), log: Callable[[str], None] = print) -> dict[str, int]:
    """Raise each :data:`HOST_LIMITS` sysctl that is lower than its minimum (never lower one); return what changed."""
    raised = {}
    for key, minimum in HOST_LIMITS.items():
        path = root / key
        current = int(path.read_text().split()[0])
        if current < minimum:
            try:
                path.write_text(f"{minimum}\n")
            except OSError as err:  # a read-only /proc/sys (some containers): small test beds still run
                log(f"[embedded] cannot raise {key.replace('/', '.')} from {current} to {minimum} ({err}); "
                    f"test beds of more than about 6 clusters may fail")
                continue
            raised[key] = minimum
            log(f"[embedded] raised {key.replace('/', '.')} from {current} to {minimum} (host-wide)")
    return raised


# --- creating a VM ----------------------------------------------------------------------------

def ensure_disk(log: Callable[[str], None] = print) -> str:
    """Give the VMs' state its own file system (:func:`.disk.ensure`); call before the first VM."""
    return disk.ensure(STATE_ROOT, log)


def create(vm: Vm) -> None:
    """Create the VM: network namespace + veth + addresses, cgroup root, mount (and cgroup) namespace."""
    ensure_lab_network()
    _create_netns(vm)
    layout = cgroups.current()
    # a cgroup namespace is rooted where its first process sits: the VM's cgroup, before its
    # controllers are handed down (then it may hold no process)
    cgroups.create(layout, vm.cgroup, leaves=("system",), enable=not layout.cgroupns)
    _create_mount_ns(vm, layout)
    if layout.cgroupns:
        cgroups.enable(layout, vm.cgroup)


def _create_netns(vm: Vm) -> None:
    if vm.netns not in netns.listnetns():
        netns.create(vm.netns)
    with IPRoute() as ip:
        if not ip.link_lookup(ifname=vm.host_link):
            ip.link("add", ifname=vm.host_link, kind="veth", peer={"ifname": f"{PREFIX}-p{vm.index}",
                                                                    "net_ns_fd": vm.netns})
        host = ip.link_lookup(ifname=vm.host_link)[0]
        bridge = ip.link_lookup(ifname=LAB_BRIDGE)[0]
        ip.link("set", index=host, master=bridge, state="up")
    with NetNS(vm.netns) as ns:
        peer = ns.link_lookup(ifname=f"{PREFIX}-p{vm.index}")
        if peer:
            ns.link("set", index=peer[0], ifname="eth0")
        eth0 = ns.link_lookup(ifname="eth0")[0]
        if vm.address not in {a.get("address") for a in ns.get_addr(index=eth0)}:
            ns.addr("add", index=eth0, address=vm.address, prefixlen=LAB_NETWORK.prefixlen)
        ns.link("set", index=eth0, state="up")
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
    write_sysctl(vm, "net/ipv4/ip_forward", "1")


def write_sysctl(vm: Vm, key: str, value: str) -> None:
    """Write a per-network-namespace sysctl (``net/...``) inside the VM."""
    run_in_netns(vm.netns, lambda: Path("/proc/sys", key).write_text(value))


def run_in_netns(name: str, func) -> None:  # noqa: ANN001 (a no-argument callable)
    """Run ``func()`` in a forked child that entered network namespace ``name``.

    Raises
    ------
    VmError
        When the child fails.
    """
    pid = os.fork()
    if pid == 0:  # child: only system calls and file writes, then _exit
        code = 1
        try:
            linux.setns(f"/run/netns/{name}", linux.CLONE_NEWNET)
            func()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise VmError(f"operation in network namespace {name} failed")


def _ensure_private_ns_dir() -> None:
    NS_DIR.mkdir(parents=True, exist_ok=True)
    if not linux.is_mount_point(NS_DIR):
        linux.mount(NS_DIR, NS_DIR, flags=linux.MS_BIND)
        linux.mount(None, NS_DIR, flags=linux.MS_PRIVATE)


def missing_parents(points: Iterable[str]) -> list[str]:
    """For the mount points of ``points`` the host lacks, the nearest directory the host has.

    Each is returned once, outermost first (an inner one is shadowed after the outer one,
    through which it is then bound).
    """
    parents = set()
    for point in points:
        if os.path.lexists(point):
            continue
        parent = Path(point).parent
        while not parent.is_dir():
            parent = parent.parent
        parents.add(str(parent))
    return sorted(parents, key=lambda p: (p.count("/"), p))


def shadow(directory: str) -> None:
    """In this (private) mount namespace, cover ``directory`` with a tmpfs holding its entries bound back.

    Every entry of the host's ``directory`` appears as before (a directory or file bound
    recursively, so what the host changes inside them shows; a symbolic link copied), and a
    new entry made inside lands in the tmpfs, never on the host. What the host adds to
    ``directory`` itself later does not show here; a file the host replaces (a rename over
    it) keeps its old content here.
    """
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        host = f"/proc/self/fd/{fd}"  # the directory under the tmpfs, still reachable
        entries = os.listdir(host)
        linux.mount(f"{PREFIX}-shadow", directory, "tmpfs", 0,
                    f"mode={st.st_mode & 0o7777:o},uid={st.st_uid},gid={st.st_gid},size=64m")
        for name in entries:
            source, target = f"{host}/{name}", os.path.join(directory, name)
            try:
                entry = os.lstat(source)
            except FileNotFoundError:  # gone since the listing
                continue
            if stat.S_ISLNK(entry.st_mode):
                os.symlink(os.readlink(source), target)
                continue
            if stat.S_ISDIR(entry.st_mode):
                os.mkdir(target)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
            linux.mount(source, target, flags=linux.MS_BIND | linux.MS_REC)
    finally:
        os.close(fd)


def _create_mount_ns(vm: Vm, layout: cgroups.Layout) -> None:
    """Create the VM's mount namespace (and cgroup namespace) and bind it to :attr:`Vm.mnt_file`.

    The host's file system is not changed: see the module doc and :func:`shadow`.
    """
    if vm.mnt_file.exists() and linux.is_mount_point(vm.mnt_file):
        return
    _ensure_private_ns_dir()
    vm.mnt_file.touch()
    if layout.cgroupns:
        vm.cgroupns_file.touch()
    binds = []
    for inside, sub in PRIVATE_DIRS.items():
        source = vm.state_dir / sub
        source.mkdir(parents=True, exist_ok=True)
        binds.append((source, inside))
    shadows = missing_parents(PRIVATE_DIRS)
    Path("/run/netns").mkdir(parents=True, exist_ok=True)
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: build the namespaces, wait until the parent has bound them, exit
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            if layout.cgroupns:
                cgroups.join(layout, vm.cgroup)  # the namespace's root
                linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWCGROUP)
            else:
                linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", flags=linux.MS_REC | linux.MS_PRIVATE)
            for point in linux.mount_points("/run/netns") + linux.mount_points(str(NS_DIR.parent)):
                try:
                    linux.umount(point)
                except OSError:
                    pass
            for directory in shadows:
                shadow(directory)
            linux.mount(f"{PREFIX}-netns", "/run/netns", "tmpfs", 0, "mode=755,size=1m")
            for source, inside in binds:
                os.makedirs(inside, exist_ok=True)  # only ever inside a shadow: the host has the others
                linux.mount(source, inside, flags=linux.MS_BIND)
            # Shared, as every mount of a systemd host is: else the kubelet makes its root directory
            # shared itself at start (a bind mount of it onto itself), while its pod-resources socket
            # is being renamed into that directory: "invalid cross-device link", and the kubelet exits.
            # A new peer group of this namespace only: nothing propagates to the host or another VM.
            linux.mount(None, KUBELET_ROOT, flags=linux.MS_REC | linux.MS_SHARED)
            if layout.cgroupns:  # the namespace's view; the host's mount (the same super block) first goes
                for point in linux.mount_points(str(cgroups.CGROUP_ROOT)):
                    linux.umount(point)
                linux.mount("cgroup2", cgroups.CGROUP_ROOT, "cgroup2",
                            linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
            code = 0
        except BaseException as exc:  # noqa: BLE001 (the parent reports it)
            os.write(ready_w, f"0{type(exc).__name__}: {exc}".encode()[:500])
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        answer = os.read(ready_r, 512)
        if answer != b"1":
            raise VmError(f"could not create the mount namespace of VM {vm.name}: "
                          f"{answer[1:].decode(errors='replace') or 'its child died'}")
        linux.mount(f"/proc/{pid}/ns/mnt", vm.mnt_file, flags=linux.MS_BIND)
        if layout.cgroupns:
            linux.mount(f"/proc/{pid}/ns/cgroup", vm.cgroupns_file, flags=linux.MS_BIND)
    finally:
        os.write(done_w, b"1")
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


# --- entering a VM ----------------------------------------------------------------------------

def enter(vm_name: str, cgroup: str | None = None) -> None:
    """Move the calling (freshly forked, single-threaded) process into VM ``vm_name``.

    Joins the cgroup ``cgroup`` (default ``/lkt-<vm>/system``) in every hierarchy,
    then the VM's network, cgroup (where the layout has one) and mount namespaces.
    """
    layout = cgroups.current()
    cgroups.join(layout, cgroup or f"{cgroup_name(vm_name)}/system")
    linux.setns(f"/run/netns/{netns_name(vm_name)}", linux.CLONE_NEWNET)
    if layout.cgroupns:
        linux.setns(NS_DIR / f"{vm_name}.cgroup", linux.CLONE_NEWCGROUP)
    linux.setns(NS_DIR / f"{vm_name}.mnt", linux.CLONE_NEWNS)
    os.chdir("/")


# --- links and routes -------------------------------------------------------------------------

def set_routes(vm: Vm, routes: dict[str, str]) -> None:
    """Make the VM route each destination CIDR via the given lab address (replace, idempotent)."""
    with NetNS(vm.netns) as ns:
        for dst, via in routes.items():
            ns.route("replace", dst=dst, gateway=via)


def set_service_route(vm: Vm, service_cidr: str) -> None:
    """Route the cluster's service CIDR on-link out of ``eth0`` (replace, idempotent).

    A process of the VM itself (a hostNetwork pod, the apiserver calling a webhook) connecting
    to a ClusterIP needs a route before kube-proxy's OUTPUT DNAT can rewrite the address; the
    VMs have no default route. On-link and without a gateway, a packet kube-proxy did not
    translate stays on the lab segment unanswered instead of reaching the host.
    """
    with NetNS(vm.netns) as ns:
        ns.route("replace", dst=service_cidr, oif=ns.link_lookup(ifname="eth0")[0], scope=253)


#: nftables table of the VM's own rules (:func:`masquerade_pods`).
EGRESS_TABLE = f"{PREFIX}_egress"


def nft(netns_name: str, script: str) -> None:
    """Run an ``nft -f -`` script in network namespace ``netns_name``.

    Raises
    ------
    VmError
        With nft's error when it refuses the script.
    """
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=10,
                          preexec_fn=lambda: linux.setns(f"/run/netns/{netns_name}", linux.CLONE_NEWNET))
    if proc.returncode != 0:
        raise VmError(f"nft in {netns_name}: {proc.stderr.strip()}")


def masquerade_pods(vm: Vm, pod_cidr: str) -> None:
    """Masquerade the VM's pod traffic that leaves on ``eth0`` for the lab network (replace, idempotent).

    flannel's rule on a k3s node: a pod reaching another machine's address (an apiserver, a
    NodePort of another cluster) leaves with the node's address, so the reply finds its way
    back. Traffic to pod CIDRs is left alone (pod-to-pod keeps its addresses, over any path).
    """
    table = EGRESS_TABLE
    nft(vm.netns, f"table ip {table}\ndelete table ip {table}\n"
                  f"table ip {table} {{\n  chain post {{\n"
                  f"    type nat hook postrouting priority srcnat; policy accept;\n"
                  f"    oifname \"eth0\" ip saddr {pod_cidr} ip daddr {LAB_NETWORK} masquerade\n  }}\n}}\n")


def set_link(vm: Vm, up: bool) -> None:
    """Set the host side of the VM's lab link up or down (the VM's eth0 loses carrier)."""
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=vm.host_link)
        if not idx:
            raise VmError(f"VM {vm.name} has no lab link {vm.host_link}")
        ip.link("set", index=idx[0], state="up" if up else "down")


# --- tearing down -----------------------------------------------------------------------------

def cgroup_pids(vm_cgroup: str) -> set[int]:
    """Every pid in the cgroup tree ``vm_cgroup`` under any controller."""
    pids: set[int] = set()
    for directory in cgroups.current().dirs(vm_cgroup, teardown=True):
        if not directory.is_dir():
            continue
        for procs in _procs_files(directory):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
    return pids


def _procs_files(directory: Path) -> list[Path]:
    """Every ``cgroup.procs`` under ``directory`` (``os.walk`` skips pod cgroups that vanish mid-walk)."""
    return [Path(root) / "cgroup.procs" for root, _, files in os.walk(directory) if "cgroup.procs" in files]


def kill_cgroup(vm_cgroup: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in the cgroup tree until it is empty (or ``timeout`` passes).

    Raises
    ------
    VmError
        When processes survive ``timeout`` seconds.
    """
    deadline = timescale.deadline(timeout)
    while True:
        pids = cgroup_pids(vm_cgroup)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_children()
        if time.monotonic() > deadline:
            raise VmError(f"processes {sorted(pids)} in cgroup {vm_cgroup} survived SIGKILL")
        time.sleep(0.1)


def _reap_children() -> None:
    """Reap any of our exited children (we may be their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def remove_cgroup(vm_cgroup: str) -> None:
    """Remove the cgroup tree ``vm_cgroup`` under every hierarchy, deepest first."""
    for directory in cgroups.current().dirs(vm_cgroup, teardown=True):
        if not directory.is_dir():
            continue
        for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir(sub)
        _rmdir(directory)


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    raise VmError(f"cannot remove cgroup {path} (processes still in it?)")


def destroy(name: str, index: int | None = None) -> dict[str, float]:
    """Remove everything of VM ``name``: processes, mount namespace, netns, links, cgroups, state.

    Returns
    -------
    dict[str, float]
        Seconds each phase took (for diagnosing slow teardowns).
    """
    cg = cgroup_name(name)
    mnt = NS_DIR / f"{name}.mnt"
    took: dict[str, float] = {}

    def phase(label: str, action) -> None:  # noqa: ANN001
        start = time.monotonic()
        action()
        took[label] = round(time.monotonic() - start, 2)

    phase("kill", lambda: kill_cgroup(cg))
    phase("mount ns", lambda: (_unbind(mnt), _unbind(NS_DIR / f"{name}.cgroup")))
    phase("netns", lambda: netns.remove(netns_name(name)) if netns_name(name) in netns.listnetns() else None)
    phase("links", lambda: _remove_links([f"{PREFIX}-h{index}"]) if index is not None else None)
    phase("cgroups", lambda: remove_cgroup(cg))
    phase("state", lambda: discard(STATE_ROOT / name))
    return took


def discard(path: Path) -> None:
    """Remove the directory tree ``path`` now from where it was, and from the disk in the background.

    It is renamed into :data:`TRASH_ROOT` (same file system: instant) and deleted there by a
    detached ``rm`` at idle CPU and I/O priority: deleting a VM's unpacked image layers takes
    25-35 s on a disk mounted with ``discard``, and nothing needs to wait for it. Falls back to
    deleting in place when the rename is refused.
    """
    if not path.exists():
        return
    TRASH_ROOT.mkdir(parents=True, exist_ok=True)
    target = TRASH_ROOT / f"{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        path.rename(target)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    linux.delete_detached(target)


#: How many failed starts' logs :func:`keep_logs` keeps (the oldest go first).
KEPT_LOGS = 5


def keep_logs(into: Path) -> Path | None:
    """Copy every VM's logs (and the supervisor's) to a new directory under ``into``.

    Called before a failed ``up()`` tears the VMs down, which deletes their state: the logs
    of the component that failed would go with it. Per VM: its processes' ``logs/`` and, in
    ``pods/``, its pods' logs (the kubelet's ``/var/log/pods``: the virtual kubelets, CoreDNS).
    Keeps the newest :data:`KEPT_LOGS` copies. Returns the copy, or ``None`` when there was
    nothing to keep.
    """
    sources = sorted(STATE_ROOT.glob("*/logs")) if STATE_ROOT.is_dir() else []
    if not sources:
        return None
    target = into / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for logs in sources:
        shutil.copytree(logs, target / logs.parent.name, dirs_exist_ok=True)
        pods = logs.parent / PRIVATE_DIRS["/var/log/pods"]
        if pods.is_dir():
            shutil.copytree(pods, target / logs.parent.name / "pods", symlinks=True, dirs_exist_ok=True)
    supervisor = STATE_ROOT / "supervisor.log"
    if supervisor.exists():
        shutil.copy2(supervisor, target / supervisor.name)
    for old in sorted(p for p in into.iterdir() if p.is_dir())[:-KEPT_LOGS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def purge_trash() -> None:
    """Start deleting what :data:`TRASH_ROOT` and :data:`.disk.HOST_TRASH` hold and no ``rm`` deletes yet.

    (Left by a reboot mid-deletion.)
    """
    trashes = [t for t in (TRASH_ROOT, disk.HOST_TRASH) if t.is_dir()]
    if not trashes:
        return
    busy = {arg for argv in linux.running_deletions().values() for arg in argv}
    for entry in (e for trash in trashes for e in trash.iterdir()):
        if str(entry) not in busy:
            linux.delete_detached(entry)


def _unbind(mnt: Path) -> None:
    if linux.is_mount_point(mnt):
        linux.umount(mnt)
    mnt.unlink(missing_ok=True)


def _remove_links(names: Iterable[str]) -> None:
    with IPRoute() as ip:
        for link in names:
            idx = ip.link_lookup(ifname=link)
            if idx:
                try:
                    ip.link("del", index=idx[0])
                except NetlinkError as exc:  # a veth goes away with its peer's netns
                    if exc.code != errno.ENODEV:
                        raise


@dataclass
class Leftovers:
    """What of the kit exists on this host (all found by the ``lkt`` prefix)."""

    netns: list[str]
    links: list[str]
    mounts: list[str]
    cgroups: list[str]
    pids: list[int]
    state: list[str]

    def empty(self) -> bool:
        """Whether nothing is left."""
        return not (self.netns or self.links or self.mounts or self.cgroups or self.pids)


def leftovers() -> Leftovers:
    """Everything of this backend on the host, found by name (for the sweeper and the tests).

    Only names this backend makes count: netns and cgroups ``lkt-vm-*`` (and the supervisor's
    cgroup ``lkt-supervisor``), links ``lkt-lab0`` and ``lkt-h<n>``, mounts under ``/run/lkt``
    and of ``lkt-vm-*`` netns, the VMs' file system on :data:`STATE_ROOT`, and on a systemd
    cgroup v2 host the kit's delegated scope (:data:`.cgroups.SCOPE`, with every process in it);
    other parts of the kit may use other ``lkt-`` names.
    """
    with IPRoute() as ip:
        links = [lk.get("ifname") for lk in ip.get_links() if _OWN_LINK.match(lk.get("ifname") or "")]
    layout = cgroups.current()
    own_cgroups = (VM_PREFIX.lstrip("/") + "*", cgroups.SUPERVISOR.lstrip("/"))
    bases = [b for b in layout.base_dirs(teardown=True) if b.is_dir()]
    found = sorted({p.name for base in bases for pattern in own_cgroups for p in base.glob(pattern) if p.is_dir()})
    pids = sorted({pid for cg in found for pid in cgroup_pids("/" + cg)})
    if layout.scope is not None and bases:
        found.append(layout.scope)
        pids = sorted(set(pids) | cgroup_pids(""))
    mounts = [m for m in linux.mount_points("/")
              if m.startswith(str(NS_DIR.parent)) or m.startswith(f"/run/netns/{VM_PREFIX}") or m == str(STATE_ROOT)]
    state = sorted(p.name for p in STATE_ROOT.iterdir() if not p.name.startswith(".")) if STATE_ROOT.is_dir() else []
    return Leftovers(netns=sorted(n for n in netns.listnetns() if n.startswith(VM_PREFIX)), links=links,
                     mounts=mounts, cgroups=found, pids=pids, state=state)


def sweep() -> Leftovers:
    """Remove everything :func:`leftovers` finds; return what was found before.

    Order: kill every process in the kit's cgroups, unmount the VM mount namespaces,
    delete the network namespaces, the links, the cgroups and the state directories (unmount
    the VMs' file system and delete its image, :func:`.disk.release`).
    """
    found = leftovers()
    layout = cgroups.current()
    own = [cg for cg in found.cgroups if cg != layout.scope]
    for cg in own:
        kill_cgroup("/" + cg)
    if layout.scope in found.cgroups:
        kill_cgroup("")  # the whole scope: systemd removes it when its last process is gone
    for point in linux.mount_points(str(NS_DIR)):
        try:
            linux.umount(point)
        except OSError:
            pass
    for name in found.netns:
        netns.remove(name)
    _remove_links([lk for lk in found.links if lk != LAB_BRIDGE] + ([LAB_BRIDGE] if LAB_BRIDGE in found.links else []))
    for cg in own:
        remove_cgroup("/" + cg)
    cgroups.wait_scope_gone(layout)
    if disk.mounted(STATE_ROOT):
        disk.release(STATE_ROOT)  # an unmount: the VMs' files go with the image
    purge_trash()  # before discard: it would not yet see the new rm and start a second one
    if STATE_ROOT.is_dir():  # the state kept on the host's file system
        for entry in STATE_ROOT.iterdir():
            if entry != TRASH_ROOT:
                discard(entry)
    shutil.rmtree(NS_DIR.parent, ignore_errors=True)
    for sock in Path("/var/run/wireguard").glob(f"{PREFIX}-wg*.sock"):  # the gateways' wireguard-go sockets
        sock.unlink(missing_ok=True)
    return found
