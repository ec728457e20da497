"""The wheelhouse the guest's pip installs from: the kit's pins, downloaded on the host.

``bootstrap.sh`` in the guest runs ``pip install -e '.[dev]'`` unmodified; the guest's
``/etc/pip.conf`` (:func:`labkit.guest.image.guest_files`) points pip at this wheelhouse on the
host-only network instead of an index. It holds every ``name==version`` pin of
``pyproject.toml`` (runtime and extras) with their dependencies, the pip that ``bootstrap.sh``
pins, and the build backend of the kit's editable install, for the guest's Python version
(downloaded for that version and platform when it differs from the host's).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from labkit import paths

Log = Callable[[str], None]


class WheelsError(RuntimeError):
    """The wheelhouse could not be downloaded; the message has pip's last lines."""


def bootstrap_pip(bootstrap: Path) -> str:
    """The ``PIP_VERSION`` that ``bootstrap.sh`` pins."""
    found = re.search(r"^PIP_VERSION=(\S+)$", bootstrap.read_text(), re.MULTILINE)
    if not found:
        raise WheelsError(f"{bootstrap}: no PIP_VERSION=... line")
    return found.group(1)


def requirements(root: Path) -> list[str]:
    """What the wheelhouse must hold for the checkout ``root``: pins, pip, build backend."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    pins = list(project["project"].get("dependencies", []))
    for extra in project["project"].get("optional-dependencies", {}).values():
        pins += extra
    backend = project.get("build-system", {}).get("requires", [])
    from labkit.images.sources import BUILD_BACKEND_PINS  # the kit's pinned backend, as its image builds use

    names = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower() for r in BUILD_BACKEND_PINS}
    backend = [r for r in backend if re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower() not in names]
    return sorted({*pins, *backend, *BUILD_BACKEND_PINS, f"pip=={bootstrap_pip(root / 'bootstrap.sh')}"})


def download_argv(reqs: list[str], dest: Path, python_version: str) -> list[str]:
    """``pip download`` of ``reqs`` into ``dest`` for CPython ``python_version`` (``3.11``).

    For the host's own version, sources are allowed (built in the guest); for another, only
    wheels can be chosen for it (pip's rule), for manylinux x86_64.
    """
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", str(dest)]
    if python_version != f"{sys.version_info.major}.{sys.version_info.minor}":
        argv += ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
                 "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"]
    return argv + reqs


def wheelhouse(root: Path, python_version: str, log: Log = print) -> Path:
    """The wheelhouse for checkout ``root`` and the guest's Python, downloaded once per set of pins."""
    reqs = requirements(root)
    key = hashlib.sha256("\n".join([python_version, *reqs]).encode()).hexdigest()[:16]
    dest = paths.cache_dir() / "guest" / f"wheels-py{python_version}-{key}"
    if (dest / "ready").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    log(f"[guest] pip download {len(reqs)} pins and their dependencies for Python {python_version} into {dest}")
    proc = subprocess.run(download_argv(reqs, dest, python_version), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise WheelsError(f"pip download exited {proc.returncode}:\n{tail}")
    (dest / "ready").write_text("\n".join(reqs) + "\n")
    return dest
