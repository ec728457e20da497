"""``invoke setup``: idempotent installation of everything the kit needs on this host.

Setup is a list of :class:`Step` objects. Each step knows how to tell whether it is
already done (``check``) and how to do it (``run``); :func:`run_steps` prints what it
does, skips what is there, and refuses root-only steps without root, naming them.
Modules that need something installed contribute steps through :func:`all_steps`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import host_services, paths

#: Debian packages the kit needs, with the reason each is there.
APT_PACKAGES: dict[str, str] = {
    "iproute2": "network namespaces, veth, bridges (also used by pyroute2 users for debugging)",
    "iputils-ping": "ping RTT measurements (thesis Tables 7.2-7.4)",
    "nftables": "NAT remapping of colliding pod CIDRs and link faults",
    "wireguard-go": "userspace WireGuard tunnels between cluster gateways (no kernel module here)",
    "wireguard-tools": "wg(8) to configure the tunnels",
    "mariadb-server": "the Galera (Percona XtraDB) database holding PDC configuration",
    "galera-4": "Galera replication provider for MariaDB",
}

#: Name of the Jupyter kernel the notebooks run on.
KERNEL_NAME = "labkit"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One idempotent setup step.

    Attributes
    ----------
    name
        Short name shown in the log (``apt``, ``python``, ``kernel``, ...).
    what
        One line saying what the step installs and why.
    check
        Returns ``True`` when the step is already done (then it is skipped).
    run
        Does the step; receives a logging function.
    needs_root
        Whether ``run`` needs root (checked before anything runs).
    """

    name: str
    what: str
    check: Callable[[], bool]
    run: Callable[[Log], None]
    needs_root: bool = False


@dataclass
class StepResult:
    """What happened to one step: ``done``, ``skipped`` or ``failed``, and how long it took."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


class SetupError(RuntimeError):
    """Setup cannot proceed; the message says which step and why."""


def is_root() -> bool:
    """Whether this process runs with effective uid 0."""
    return os.geteuid() == 0


def missing_apt_packages(packages: Sequence[str]) -> list[str]:
    """Return the packages of ``packages`` that dpkg does not report as installed."""
    missing = []
    for pkg in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def apt_step(packages: dict[str, str]) -> Step:
    """A step that installs the missing Debian ``packages`` (``apt-get update`` first).

    The services those packages bring stay stopped and disabled (:func:`labkit.host_services.held`).
    """

    def run(log: Log) -> None:
        missing = missing_apt_packages(list(packages))
        log(f"apt-get update; apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=600"]  # wait for another apt/dpkg instead of failing
        _call(["apt-get", *lock, "update", "-q"], env=env)
        with host_services.held(log):  # the new packages' own daemons stay off: the kit runs its own in its VMs
            _call(["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *missing], env=env)

    return Step(
        name="apt",
        what=f"Debian packages: {', '.join(sorted(packages))}",
        check=lambda: not missing_apt_packages(list(packages)),
        run=run,
        needs_root=True,
    )


def python_package_step(root: Path) -> Step:
    """A step that installs the kit itself (editable, with the dev extras) into this Python.

    It is done when ``labkit`` imports from ``root`` and every pin of ``pyproject.toml``
    (runtime and dev) is installed at exactly its pinned version.
    """

    def check() -> bool:
        import labkit

        if Path(labkit.__file__).resolve().parent != (root / "labkit").resolve():
            return False
        return not unmet_pins(root / "pyproject.toml")

    def run(log: Log) -> None:
        log(f"pip install -e '{root}[dev]'")
        _call([sys.executable, "-m", "pip", "install", "-q", "-e", f"{root}[dev]"])

    return Step(name="python", what="the labkit package and its pinned dependencies", check=check, run=run)


def unmet_pins(pyproject: Path) -> list[str]:
    """The ``name==version`` pins of ``pyproject`` (runtime + extras) not installed as pinned."""
    import tomllib
    from importlib import metadata

    project = tomllib.loads(pyproject.read_text())["project"]
    pins = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        pins += extra
    unmet = []
    for pin in pins:
        name, _, version = pin.partition("==")
        try:
            installed = metadata.version(name.strip())
        except metadata.PackageNotFoundError:
            installed = None
        if version and installed != version.strip():
            unmet.append(f"{pin} (installed: {installed})")
    return unmet


def kernel_step() -> Step:
    """A step that registers the ``labkit`` Jupyter kernel for this Python."""

    def check() -> bool:
        from jupyter_client.kernelspec import KernelSpecManager
        spec = KernelSpecManager().find_kernel_specs().get(KERNEL_NAME)
        if not spec:
            return False
        import json
        argv = json.loads((Path(spec) / "kernel.json").read_text())["argv"]
        # not resolved: a virtual environment's python is a symlink to the base interpreter, whose
        # kernel would import another environment's packages (and labkit from another checkout)
        return Path(argv[0]).absolute() == Path(sys.executable).absolute()

    def run(log: Log) -> None:
        log(f"python -m ipykernel install --user --name {KERNEL_NAME}")
        _call([sys.executable, "-m", "ipykernel", "install", "--user", "--name", KERNEL_NAME,
               "--display-name", "Python (labkit)"])

    return Step(name="kernel", what=f"Jupyter kernel '{KERNEL_NAME}' for the notebooks", check=check, run=run)


def all_steps(root: Path | None = None) -> list[Step]:
    """Every setup step of the kit, in the order they must run.

    One ``apt`` step installs the Debian packages of every part of the kit (each part
    declares its own ``APT_PACKAGES`` with the reason for each); then the Python package,
    the Jupyter kernel, the Kubernetes and CoreDNS binaries of the embedded test bed, the
    virtual kubelet of its Liqo-compatible peering, and the OCI images.
    """
    from labkit import images
    from labkit.testbed.embedded import binaries
    from labkit.testbed.embedded.liqo.build import vk_step

    root = root or paths.repo_root()
    return [apt_step(apt_packages()), python_package_step(root), kernel_step(),
            *binaries.setup_steps(include_apt=False), vk_step(), *images.setup_steps()]


def apt_packages(hosts_tier: bool | None = None) -> dict[str, str]:
    """The Debian packages of every part of the kit (each part's ``APT_PACKAGES``, with the reasons).

    ``hosts_tier``: include the hosts tier's (qemu, ...); default: where it can run, with ``/dev/kvm``.
    """
    from labkit import guest, images
    from labkit.testbed import vms
    from labkit.testbed.embedded import binaries

    if hosts_tier is None:
        hosts_tier = Path("/dev/kvm").exists()
    hosts = guest.APT_PACKAGES if hosts_tier else {}
    return {**APT_PACKAGES, **binaries.APT_PACKAGES, **images.APT_PACKAGES, **vms.APT_PACKAGES, **hosts}


def run_steps(steps: Sequence[Step], log: Log = print, *, root: bool | None = None) -> list[StepResult]:
    """Run the steps that are not done yet, in order, and return what happened to each.

    Raises
    ------
    SetupError
        Before doing anything, when steps that are not done need root and this process
        is not root (the message lists them); or when a step fails.
    """
    root = is_root() if root is None else root
    pending = [s for s in steps if not _safe_check(s)]
    needs_root = [s for s in pending if s.needs_root]
    if needs_root and not root:
        lines = "\n".join(f"  - {s.name}: {s.what}" for s in needs_root)
        raise SetupError(f"these setup steps need root (run `sudo invoke setup`):\n{lines}")
    results = []
    for step in steps:
        if step not in pending:
            log(f"[setup] {step.name}: already there, skipped ({step.what})")
            results.append(StepResult(step.name, "skipped"))
            continue
        log(f"[setup] {step.name}: installing {step.what}")
        start = time.monotonic()
        try:
            step.run(log)
        except Exception as exc:  # re-raised with the step's name
            raise SetupError(f"setup step '{step.name}' failed: {exc}") from exc
        took = time.monotonic() - start
        log(f"[setup] {step.name}: done in {took:.1f} s")
        results.append(StepResult(step.name, "done", took))
    return results


def _safe_check(step: Step) -> bool:
    """Run a step's check; a check that raises means 'not done'."""
    try:
        return bool(step.check())
    except Exception:
        return False


def _call(argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run ``argv``; raise with its last output lines when it fails."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        raise SetupError(f"command not found: {argv[0]}")
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SetupError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
