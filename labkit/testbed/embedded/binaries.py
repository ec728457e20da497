"""Binaries of the embedded testbed: Kubernetes v1.24.17, CoreDNS, etcd, containerd, runc, CNI.

Kubernetes' own components (apiserver, controller manager, scheduler, kubelet, kube-proxy)
come from one multi-call binary built from the Go module in ``go/kube/`` (it pins
``k8s.io/kubernetes v1.24.17``); CoreDNS v1.11.1 is built with ``go install``; etcd,
containerd, runc and the CNI plugins are Debian packages.

Where a Kubernetes binary comes from, in order:

1. a ``kube-apiserver`` (etc.) already on ``PATH`` that reports v1.24.17;
2. the multi-call binary cached under ``~/.cache/labkit/bin/<version-key>/``;
3. with ``LABKIT_DOWNLOAD=1``, the release binaries from ``dl.k8s.io`` checked against the
   SHA-256 published beside them (for users with internet; not used on the development box);
4. otherwise :func:`setup_steps` builds it from the Go module proxy (about 12 min cold on
   two cores, 26 s after a small change) and prints progress.

The cache key holds the pinned versions and the Go version, so a change of either builds
into a new directory and never reuses a stale binary.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit.gobuild import BinariesMissing, bin_root, go_binary, go_env, go_version, run_go
from labkit.setup_steps import SetupError, Step, apt_step

#: Kubernetes version of the thesis' k3s v1.24.17+k3s1.
KUBERNETES_VERSION = "v1.24.17"
#: CoreDNS version (built from the Go module proxy).
COREDNS_VERSION = "v1.11.1"
#: Components of the multi-call binary, each reached through a symlink of this name.
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
#: Name of the multi-call binary in the cache.
MULTICALL = "kube"
#: Where Debian puts the CNI plugins.
CNI_BIN_DIR = Path("/usr/lib/cni")

#: Debian packages the embedded testbed needs, with the reason each is there.
APT_PACKAGES: dict[str, str] = {
    "etcd-server": "etcd 3.4, the datastore of each cluster's apiserver (k3s would use kine/sqlite)",
    "containerd": "container runtime of every kubelet (CRI), one daemon per VM",
    "runc": "OCI runtime used by containerd",
    "containernetworking-plugins": "CNI bridge, host-local and loopback plugins for pod networking",
    "iptables": "kube-proxy programs Services with iptables inside each VM",
    "conntrack": "kube-proxy clears stale UDP conntrack entries (DNS) with it",
    "iproute2": "debugging the VMs by hand (`ip netns`, `nsenter`); the kit uses pyroute2",
    "util-linux": "nsenter/unshare for debugging the VMs by hand",
    "mount": "loop-mounts the VMs' file system (labkit.testbed.embedded.disk)",
    "e2fsprogs": "mkfs.ext4 makes the VMs' file system in its image file",
}

Log = Callable[[str], None]


@dataclass(frozen=True)
class Binaries:
    """Paths of every program the embedded testbed runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    coredns: Path
    etcd: Path
    containerd: Path
    containerd_shim: Path
    runc: Path
    ctr: Path
    cni_bin_dir: Path

    def component(self, name: str) -> Path:
        """Path of a Kubernetes component by its command name (``kube-apiserver``, ...)."""
        return getattr(self, name.replace("-", "_"))


def kube_dir(go: str | None = None) -> Path:
    """Cache directory of the Kubernetes multi-call binary for the pinned versions."""
    return bin_root() / f"kube-{KUBERNETES_VERSION}-{go or go_version()}"


def coredns_dir(go: str | None = None) -> Path:
    """Cache directory of the CoreDNS binary for the pinned versions."""
    return bin_root() / f"coredns-{COREDNS_VERSION}-{go or go_version()}"


def go_module_dir() -> Path:
    """``go/kube/`` in the repository: the Go module that pins Kubernetes."""
    return paths.repo_root() / "go" / "kube"


def version_ldflags() -> str:
    """Linker flags: strip symbols and stamp v1.24.17 into ``/version`` and every Node."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [f"-X {pkg}.gitVersion={KUBERNETES_VERSION}", f"-X {pkg}.gitMajor={major}",
                   f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean"]
    return " ".join(["-s", "-w", *stamps])


def reports_version(binary: Path, version: str = KUBERNETES_VERSION) -> bool:
    """Whether ``binary --version`` prints ``version`` (``Kubernetes v1.24.17``)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return version in (out.stdout + out.stderr)


def kube_cached(directory: Path | None = None) -> bool:
    """Whether the cache holds the multi-call binary and all component symlinks."""
    directory = directory or kube_dir()
    return (directory / MULTICALL).is_file() and all((directory / c).exists() for c in COMPONENTS)


def coredns_cached(directory: Path | None = None) -> bool:
    """Whether the cache holds the CoreDNS binary."""
    return ((directory or coredns_dir()) / "coredns").is_file()


def find_kube_component(name: str) -> Path:
    """Locate a Kubernetes component: ``PATH`` (if v1.24.17), then the cache.

    Raises
    ------
    BinariesMissing
        When neither has it.
    """
    on_path = shutil.which(name)
    if on_path and reports_version(Path(on_path)):
        return Path(on_path)
    cached = kube_dir() / name
    if cached.exists():
        return cached
    raise BinariesMissing(
        f"{name} {KUBERNETES_VERSION} not found on PATH nor in {kube_dir()}: "
        "run `invoke setup` (builds it from go/kube in about 12 min the first time)")


def _require(program: str, package: str) -> Path:
    """Path of ``program`` on ``PATH`` (also ``/usr/sbin``), or :class:`BinariesMissing`."""
    found = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not found:
        raise BinariesMissing(f"{program} not found: install the Debian package {package} (`invoke setup` as root)")
    return Path(found)


def find_binaries() -> Binaries:
    """Every binary the embedded testbed runs.

    Raises
    ------
    BinariesMissing
        Naming the first missing binary and how to get it.
    """
    coredns = shutil.which("coredns")
    coredns_path = Path(coredns) if coredns else coredns_dir() / "coredns"
    if not coredns_path.exists():
        raise BinariesMissing(f"coredns {COREDNS_VERSION} not found in {coredns_dir()}: run `invoke setup`")
    if not (CNI_BIN_DIR / "bridge").exists():
        raise BinariesMissing(f"CNI plugins not found in {CNI_BIN_DIR}: install containernetworking-plugins")
    return Binaries(
        **{c.replace("-", "_"): find_kube_component(c) for c in COMPONENTS},
        coredns=coredns_path,
        etcd=_require("etcd", "etcd-server"),
        containerd=_require("containerd", "containerd"),
        containerd_shim=_require("containerd-shim-runc-v2", "containerd"),
        runc=_require("runc", "runc"),
        ctr=_require("ctr", "containerd"),
        cni_bin_dir=CNI_BIN_DIR,
    )


# --- building -------------------------------------------------------------------------------

def _require_go() -> Path:
    go = go_binary()
    if go is None:
        raise SetupError("Go is needed to build Kubernetes and CoreDNS: install Go >= 1.22 "
                                 "(https://go.dev/dl) or put the v1.24.17 binaries on PATH")
    return go


def build_kube(log: Log = print) -> Path:
    """Build the Kubernetes multi-call binary into :func:`kube_dir` and link the components.

    Returns
    -------
    Path
        The cache directory holding ``kube`` and the symlinks ``kube-apiserver``, ``kubelet``, ...
    """
    go = _require_go()
    module = go_module_dir()
    target = kube_dir()
    target.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log(f"  go mod download in {module} (Kubernetes {KUBERNETES_VERSION} and its staging modules)")
    run_go([str(go), "mod", "download"], log, cwd=module, label="download")
    deps = subprocess.run([str(go), "list", "-deps", "."], cwd=module, env=go_env(), capture_output=True,
                          text=True)
    total = len(deps.stdout.split()) if deps.returncode == 0 else 0
    log(f"  go build: {total or '?'} packages; about 12 min cold on 2 cores, seconds when cached")
    tmp = target / f"{MULTICALL}.tmp"
    run_go([str(go), "build", "-v", "-ldflags", version_ldflags(), "-o", str(tmp), "."], log, cwd=module,
            total=total, label="build")
    tmp.replace(target / MULTICALL)
    link_components(target)
    size = (target / MULTICALL).stat().st_size / 2**20
    log(f"  built {target / MULTICALL} ({size:.0f} MB) in {time.monotonic() - start:.0f} s; "
        f"links: {', '.join(COMPONENTS)}")
    return target


def link_components(directory: Path) -> None:
    """Create the symlinks ``kube-apiserver``, ``kubelet``, ... to the multi-call binary."""
    for name in COMPONENTS:
        link = directory / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(MULTICALL)


def build_coredns(log: Log = print) -> Path:
    """Build CoreDNS with ``go install github.com/coredns/coredns@<version>`` into the cache."""
    go = _require_go()
    target = coredns_dir()
    target.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log(f"  go install github.com/coredns/coredns@{COREDNS_VERSION} (about 2.5 min cold)")
    run_go([str(go), "install", "-v", "-ldflags", "-s -w", f"github.com/coredns/coredns@{COREDNS_VERSION}"],
            log, label="coredns", extra_env={"GOBIN": str(target), "CGO_ENABLED": "0"})
    log(f"  built {target / 'coredns'} in {time.monotonic() - start:.0f} s")
    return target / "coredns"


# --- downloading (users with internet) ------------------------------------------------------

RELEASE_URL = "https://dl.k8s.io/release/{version}/bin/linux/{arch}/{name}"


def download_release(log: Log = print, arch: str = "amd64") -> Path:
    """Download the release binaries and check each against its published ``.sha256``.

    Only used with ``LABKIT_DOWNLOAD=1``; the components land as separate files in
    :func:`kube_dir` (then no multi-call binary is needed).
    """
    target = kube_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in COMPONENTS:
        url = RELEASE_URL.format(version=KUBERNETES_VERSION, arch=arch, name=name)
        log(f"  downloading {url}")
        with urllib.request.urlopen(url + ".sha256", timeout=60) as resp:
            expected = resp.read().decode().split()[0]
        data = urllib.request.urlopen(url, timeout=600).read()
        if hashlib.sha256(data).hexdigest() != expected:
            raise SetupError(f"checksum mismatch for {url}")
        path = target / name
        path.write_bytes(data)
        path.chmod(0o755)
    (target / MULTICALL).write_text("release binaries, see the component files\n")
    return target


# --- setup steps ----------------------------------------------------------------------------

def _kube_on_path() -> bool:
    return all((p := shutil.which(c)) and reports_version(Path(p)) for c in COMPONENTS)


def kube_step() -> Step:
    """Setup step: Kubernetes v1.24.17 components (PATH, else download if allowed, else build)."""

    def run(log: Log) -> None:
        if os.environ.get("LABKIT_DOWNLOAD") == "1":
            download_release(log)
        else:
            build_kube(log)

    return Step(
        name="kubernetes",
        what=f"Kubernetes {KUBERNETES_VERSION} multi-call binary (apiserver, controller manager, "
             f"scheduler, kubelet, kube-proxy) in {kube_dir()}",
        check=lambda: _kube_on_path() or kube_cached(),
        run=run,
    )


def coredns_step() -> Step:
    """Setup step: CoreDNS built from the Go module proxy."""
    return Step(
        name="coredns",
        what=f"CoreDNS {COREDNS_VERSION} in {coredns_dir()}",
        check=lambda: bool(shutil.which("coredns")) or coredns_cached(),
        run=lambda log: None if build_coredns(log) else None,
    )


def setup_steps(include_apt: bool = True) -> list[Step]:
    """Setup steps of the embedded testbed, in order: Debian packages, Kubernetes, CoreDNS."""
    steps = [apt_step(APT_PACKAGES)] if include_apt else []
    return steps + [kube_step(), coredns_step()]


#: Public names for other Go builds of the kit (e.g. the virtual kubelet in ``liqo.build``).
require_go = _require_go
