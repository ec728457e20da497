"""``invoke setup``: every setup step of the kit, collected in the order they must run.

The vocabulary (:class:`~labkit.setup_steps.Step`, :func:`~labkit.setup_steps.run_steps`,
:func:`~labkit.setup_steps.apt_step`) is :mod:`labkit.setup_steps`; each part of the kit declares
its own steps and Debian packages there. This module adds the kit's own (the Python package, the
Jupyter kernel) and collects the others': the backends' through :mod:`labkit.testbed`, the
images' from :mod:`labkit.images`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from labkit import paths
from labkit.setup_steps import Log, Step, apt_step, call

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
        call([sys.executable, "-m", "pip", "install", "-q", "-e", f"{root}[dev]"])

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
    """A step that registers the ``labkit`` Jupyter kernel for this Python, inside its environment.

    The kernel spec goes to ``sys.prefix`` (``.venv/share/jupyter/kernels/labkit``), so each
    environment has its own and none overwrites another's. Jupyter reads a user's kernels first:
    a user-level ``labkit`` kernel (older versions of the kit put it there) whose Python is not
    this one would shadow it, so the step removes that one, saying so.
    """

    def check() -> bool:
        from jupyter_client.kernelspec import KernelSpecManager
        spec = KernelSpecManager().find_kernel_specs().get(KERNEL_NAME)
        return bool(spec) and _kernel_python(Path(spec)) == Path(sys.executable).absolute()

    def run(log: Log) -> None:
        _remove_shadowing_user_kernel(log)
        log(f"python -m ipykernel install --sys-prefix --name {KERNEL_NAME}")
        call([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
              "--display-name", "Python (labkit)"])

    return Step(name="kernel", what=f"Jupyter kernel '{KERNEL_NAME}' for the notebooks", check=check, run=run)


def _kernel_python(spec_dir: Path) -> Path | None:
    """The Python a kernel spec starts (not resolved: a virtual environment's python is a symlink to
    the base interpreter, whose kernel would import another environment's packages)."""
    import json
    try:
        return Path(json.loads((spec_dir / "kernel.json").read_text())["argv"][0]).absolute()
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _remove_shadowing_user_kernel(log: Log) -> None:
    """Remove a user-level ``labkit`` kernel spec that starts another Python than this one."""
    from jupyter_core.paths import jupyter_data_dir
    user = Path(jupyter_data_dir()) / "kernels" / KERNEL_NAME
    if user.is_dir() and _kernel_python(user) != Path(sys.executable).absolute():
        log(f"removing {user}: a user-level '{KERNEL_NAME}' kernel for {_kernel_python(user)} would shadow this one")
        shutil.rmtree(user)


def all_steps(root: Path | None = None) -> list[Step]:
    """Every setup step of the kit, in the order they must run.

    One ``apt`` step installs the Debian packages of every part of the kit (each part declares
    its own ``APT_PACKAGES`` with the reason for each); then the Python package, the Jupyter
    kernel, the backends' steps (the Kubernetes and CoreDNS binaries of the embedded test bed,
    the virtual kubelet of its Liqo-compatible peering) and the OCI images.
    """
    from labkit import images, testbed

    root = root or paths.repo_root()
    return [apt_step(apt_packages()), python_package_step(root), kernel_step(), *testbed.setup_steps(),
            *images.setup_steps()]


def apt_packages(hosts_tier: bool | None = None) -> dict[str, str]:
    """The Debian packages of every part of the kit (each part's ``APT_PACKAGES``, with the reasons).

    ``hosts_tier``: include the hosts tier's (qemu, ...); default: where it can run, with ``/dev/kvm``.
    """
    from labkit import images, testbed
    from labkit.guest.packages import APT_PACKAGES as HOSTS_TIER_PACKAGES

    if hosts_tier is None:
        hosts_tier = Path("/dev/kvm").exists()
    hosts = HOSTS_TIER_PACKAGES if hosts_tier else {}
    return {**APT_PACKAGES, **testbed.apt_packages(), **images.APT_PACKAGES, **hosts}
