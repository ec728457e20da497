"""The wheelhouse the guest's pip installs from: the kit's pins, downloaded on the host.

``bootstrap.sh`` in the guest runs ``pip install -e '.[dev]'`` unmodified; the guest's
``/etc/pip.conf`` (:func:`labkit.guest.image.guest_files`) points pip at this wheelhouse on the
host-only network instead of an index. It holds every ``name==version`` pin of
``pyproject.toml`` (runtime and extras) with their dependencies, the pip that ``bootstrap.sh``
pins, and the build backend of the kit's editable install, resolved for the guest's exact
Python version (Debian 12's 3.11.2: a host resolving for its own 3.11.7 picked a soupsieve that
requires >= 3.11.5, and the guest's pip refused it).
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


def manylinux_platforms(glibc_minor: int) -> list[str]:
    """pip platform tags a glibc 2.<minor> x86_64 system installs, newest first (bookworm: 36)."""
    return [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 16, -1)] + ["manylinux2014_x86_64"]


def download_argv(reqs: list[str], dest: Path, python_version: str | None = None, no_deps: bool = False,
                  glibc_minor: int = 36) -> list[str]:
    """``pip download`` of ``reqs`` into ``dest``, resolved for CPython ``python_version`` (``3.11.2``).

    With a version, only wheels can be chosen (pip's rule for ``--python-version``), for the
    manylinux tags of a glibc 2.``glibc_minor`` x86_64 system; the version's micro part matters:
    packages declare e.g. ``>=3.11.5``.
    """
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", str(dest)]
    if python_version:
        argv += ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
        argv += [arg for platform in manylinux_platforms(glibc_minor) for arg in ("--platform", platform)]
    return argv + (["--no-deps"] if no_deps else []) + reqs


def project_name(filename: str) -> str:
    """The normalised project name of a wheel or sdist file name (``soupsieve-2.5-py3-none-any.whl`` -> ``soupsieve``)."""
    stem = filename.removesuffix(".whl").removesuffix(".tar.gz").removesuffix(".zip")
    return re.sub(r"[-_.]+", "-", stem.split("-")[0]).lower()


def wheelhouse(root: Path, python_version: str, log: Log = print) -> Path:
    """The wheelhouse for checkout ``root`` and the guest's Python (``3.11.2``), downloaded once per set of pins.

    Three passes, because pip resolves for another Python only among wheels: (1) resolve on this
    host, to learn which pins exist only as sources (sdists); (2) resolve everything else for the
    guest's Python; (3) add the sdists (built in the guest) and whatever only they pulled in.
    """
    reqs = requirements(root)
    key = hashlib.sha256("\n".join([python_version, *reqs]).encode()).hexdigest()[:16]
    dest = paths.cache_dir() / "guest" / f"wheels-py{python_version}-{key}"
    if (dest / "ready").exists():
        return dest
    probe = dest / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    log(f"[guest] pip download {len(reqs)} pins and their dependencies for Python {python_version} into {dest}")
    _pip(download_argv(reqs, probe))
    sources = {project_name(f.name) for f in probe.iterdir() if not f.name.endswith(".whl")}
    _pip(download_argv([r for r in reqs if project_name(r.split("==")[0]) not in sources], dest, python_version))
    have = {project_name(f.name) for f in dest.iterdir() if f.is_file()}
    for extra in (f for f in probe.iterdir() if project_name(f.name) not in have):
        extra.rename(dest / extra.name)
    for leftover in probe.iterdir():
        leftover.unlink()
    probe.rmdir()
    (dest / "ready").write_text("\n".join(reqs) + "\n")
    return dest


def _pip(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise WheelsError(f"pip download exited {proc.returncode}:\n{tail}")
