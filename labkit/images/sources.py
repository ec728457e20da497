"""Layer sources: what goes into each layer and how it is made (Go, mmdebstrap, pip).

Every source has a ``key()`` — a hash of its inputs — and ``layer(work, store, log)``, which
builds the content in ``work`` and writes one layer blob into ``store``. The cache in
:mod:`labkit.images.build` reuses a layer when its key is unchanged, so a labkit code
change rebuilds only the small wheel layer.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import BinaryIO, Protocol

from labkit.images import oci

Log = Callable[[str], None]

#: Where the runtime image's virtual environment lives.
VENV = "/opt/labkit/venv"
#: Python of Debian bookworm (the image's interpreter; wheels are chosen for it).
IMAGE_PYTHON = "3.11"
#: Wheel platform tags accepted for bookworm (glibc 2.36) on amd64, newest first.
PLATFORMS = tuple(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)) + ("manylinux2014_x86_64",)
#: Dependencies left out of the runtime image: the notebook, report and task tooling, the
#: plotting, the test bed control (Kubernetes client, netlink, SSH) and the parquet tables run on
#: the host, never inside a pod; the pods run ``labkit.grid`` alone, and its recorder writes CSV.
#: Leaving them out makes the image's packages 810 -> 545 MB, and 170 MB less without pyarrow;
#: every node imports the image.
EXCLUDED_FROM_IMAGE = frozenset({"jupyterlab", "papermill", "nbclient", "nbformat", "nbconvert", "ipykernel",
                                 "invoke", "matplotlib", "seaborn", "kubernetes", "pyroute2", "asyncssh",
                                 "cryptography", "pyarrow"})
#: Import names of :data:`EXCLUDED_FROM_IMAGE` that ``labkit.grid`` must never import (tests check it).
HOST_ONLY_MODULES = ("matplotlib", "seaborn", "kubernetes", "pyroute2", "asyncssh", "cryptography", "papermill",
                     "nbclient", "nbformat", "nbconvert", "ipykernel", "invoke", "jupyterlab", "pyarrow")
#: Directories left out of the installed distributions: their own test suites (numpy, scipy,
#: pandas, networkx, pyarrow ship about 5,000 files and 96 MB of them). Every node unpacks the
#: image; without them one import into an idle containerd took 15.5 s instead of 17.7 s (29 Nov).
#: ``labkit.grid`` never imports them; pip's RECORD still lists them (nothing in a pod reads it).
DROPPED_DIRS = frozenset({"tests"})
#: Build backend used by ``pip wheel`` for the labkit wheel (pinned so the wheel's metadata,
#: and so the layer digest, do not change with a new setuptools release).
BUILD_BACKEND_PINS = ("setuptools==80.9.0", "wheel==0.45.1")


class ImageError(RuntimeError):
    """An image cannot be built or imported; the message names the command and its output."""


class LayerSource(Protocol):
    """Something that can make one layer."""

    name: str

    def key(self) -> str:
        """Hash of every input that decides the layer's content."""
        ...

    def layer(self, work: Path, store: Path, log: Log) -> oci.Layer:
        """Build the content under ``work`` and write the layer blob into ``store``."""
        ...


# --- helpers ---------------------------------------------------------------------------

def run(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 3600) -> str:
    """Run a command and return its output; raise :class:`ImageError` with its last lines."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        raise ImageError(f"command not found: {argv[0]} (needed for `{' '.join(argv[:3])} ...`)")
    try:
        proc = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise ImageError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    return proc.stdout


def hash_parts(*parts: object) -> str:
    """A sha256 hex digest over the ``repr`` of ``parts``."""
    sha = hashlib.sha256()
    for part in parts:
        sha.update(repr(part).encode())
        sha.update(b"\0")
    return sha.hexdigest()


def hash_tree(root: Path, suffixes: Iterable[str] | None = None) -> str:
    """A sha256 over relative paths and contents of the files under ``root`` (no caches)."""
    sha = hashlib.sha256()
    wanted = tuple(suffixes) if suffixes else None
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        if wanted and not rel.endswith(wanted):
            continue
        sha.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def require_root(what: str) -> None:
    """Raise :class:`ImageError` unless this process runs as root."""
    if os.geteuid() != 0:
        raise ImageError(f"{what} needs root (mmdebstrap --mode=root, chroot, device nodes); "
                         "this process is not root: run `sudo invoke setup`")


def go_binary() -> str:
    """The ``go`` command: on PATH, else ``/usr/local/go/bin/go``."""
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not found:
        raise ImageError("go not found (PATH or /usr/local/go/bin/go): needed to build static binaries")
    return found


def _build_env() -> dict[str, str]:
    """The environment for builds: this one plus a fixed ``SOURCE_DATE_EPOCH``."""
    return {**os.environ, "SOURCE_DATE_EPOCH": str(oci.source_date_epoch())}


# --- static Go binary ------------------------------------------------------------------

@dataclass(frozen=True)
class GoBinary:
    """A static, stripped Go binary built from a main module, placed at ``dest`` in the image.

    Attributes
    ----------
    name
        Layer name (for the cache and logs).
    module
        Directory of the Go main module (``go.mod`` + sources).
    dest
        Path of the binary inside the image, e.g. ``pause``.
    """

    name: str
    module: Path
    dest: str

    def key(self) -> str:
        version = run([go_binary(), "env", "GOVERSION"]).strip()
        return hash_parts("go", version, self.dest, self.flags(), hash_tree(self.module))

    @staticmethod
    def flags() -> list[str]:
        """``go build`` flags: reproducible (no paths, no build id) and stripped."""
        return ["-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="]

    def build_binary(self, out: Path, log: Log) -> Path:
        """``CGO_ENABLED=0 go build`` into ``out``; returns the binary's path."""
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        log(f"go build {self.module} (static, stripped)")
        run([go_binary(), "build", *self.flags(), "-o", str(out), "."], env=env, cwd=self.module)
        return out

    def layer(self, work: Path, store: Path, log: Log) -> oci.Layer:
        binary = self.build_binary(work / Path(self.dest).name, log)
        return oci.write_layer([oci.Entry(_file_info(self.dest, binary, 0o755), _opener(binary))], store)


def _file_info(name: str, path: Path, mode: int) -> tarfile.TarInfo:
    """Tar header for a root-owned regular file with ``path``'s size."""
    info = tarfile.TarInfo(name)
    info.mode, info.size = mode, path.stat().st_size
    return info


def _opener(path: Path) -> Callable[[], BinaryIO]:
    """A function opening ``path``."""
    return lambda: path.open("rb")


@dataclass(frozen=True)
class StaticFile:
    """An existing executable placed at ``dest`` in the image (root-owned, mode 0755).

    Attributes
    ----------
    name
        Layer name.
    path
        The file on this machine.
    dest
        Path inside the image.
    """

    name: str
    path: Path
    dest: str

    def key(self) -> str:
        if not self.path.is_file():
            raise ImageError(f"no such file for image layer {self.name}: {self.path}")
        digest = hashlib.sha256()
        with self.path.open("rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                digest.update(chunk)
        return hash_parts("file", self.dest, digest.hexdigest())

    def layer(self, work: Path, store: Path, log: Log) -> oci.Layer:
        return oci.write_layer([oci.Entry(_file_info(self.dest, self.path, 0o755), _opener(self.path))], store)


# --- Debian rootfs -----------------------------------------------------------------------

def mmdebstrap_version() -> str:
    """``mmdebstrap --version`` (``none`` without it), asked once per process once it is installed: every
    image reference computes its layers' keys, and one ``--version`` costs a Perl start (~0.1 s of CPU).

    ``none`` is not remembered: ``invoke setup`` computes keys before its apt step installs
    mmdebstrap, and a remembered ``none`` gave its rootfs layers keys no later process computes
    (each rootfs was built twice).
    """
    return _mmdebstrap_version() if shutil.which("mmdebstrap") else "none"


@functools.cache
def _mmdebstrap_version() -> str:
    return run(["mmdebstrap", "--version"]).strip()


@dataclass(frozen=True)
class DebianRootfs:
    """A Debian rootfs made by ``mmdebstrap`` from this machine's apt sources.

    Attributes
    ----------
    name
        Layer name.
    packages
        Packages to include (``--include``), their dependencies follow.
    suite
        Debian suite.
    variant
        mmdebstrap variant (``apt``: Essential plus apt, the smallest with a package manager).
    emptied
        Directories kept (with their owner and mode) but left empty in the layer, for state
        that package scripts create at build time and that differs on every build (e.g.
        ``var/lib/mysql``, which mariadb-server's postinst initialises).
    """

    name: str
    packages: tuple[str, ...]
    suite: str = "bookworm"
    variant: str = "apt"
    emptied: tuple[str, ...] = ()

    def options(self) -> list[str]:
        """mmdebstrap options: no recommends, no docs/man/locales, tar output."""
        return [
            f"--variant={self.variant}", "--mode=root", "--format=tar",
            "--aptopt=APT::Install-Recommends \"false\"",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            f"--include={','.join(sorted(self.packages))}",
        ]

    def key(self) -> str:
        sources = [p.read_bytes() for p in sorted(Path("/etc/apt").glob("sources.list*")) if p.is_file()]
        sources += [p.read_bytes() for p in sorted(Path("/etc/apt/sources.list.d").glob("*")) if p.is_file()]
        version = mmdebstrap_version()
        return hash_parts("rootfs", version, self.suite, self.options(), self.emptied, sources,
                          oci.source_date_epoch())

    def keep(self, entry: oci.Entry) -> bool:
        """Whether ``entry`` stays in the layer (not inside an :attr:`emptied` directory)."""
        name = oci.clean_name(entry.info.name)
        return not any(name.startswith(d.strip("/") + "/") for d in self.emptied)

    def layer(self, work: Path, store: Path, log: Log) -> oci.Layer:
        require_root(f"building the {self.name} rootfs")
        if not shutil.which("mmdebstrap"):
            raise ImageError("mmdebstrap not found: `apt-get install mmdebstrap` (or `sudo invoke setup`)")
        out = work / "rootfs.tar"
        log(f"mmdebstrap {self.suite} ({self.variant} + {', '.join(sorted(self.packages))})")
        run(["mmdebstrap", "--quiet", *self.options(), self.suite, str(out)], env=_build_env())
        log(f"rootfs tar {out.stat().st_size / 1e6:.0f} MB; writing layer")
        with tarfile.open(out) as tar:
            layer = oci.write_layer(filter(self.keep, oci.entries_from_tar(tar)), store)
        out.unlink()
        return layer


# --- Python dependencies ----------------------------------------------------------------

def runtime_requirements(pyproject: Path, exclude: frozenset[str] = EXCLUDED_FROM_IMAGE) -> list[str]:
    """Names of ``[project].dependencies`` in ``pyproject`` minus ``exclude`` (normalised names)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if canonicalize_name(Requirement(d).name) not in exclude]


def locked_closure(requirements: Iterable[str]) -> list[str]:
    """Pin ``requirements`` and all their dependencies to the versions installed here.

    The host environment is installed from the pinned ``pyproject.toml``, so its versions
    of the transitive dependencies are the ones tests ran with; the image gets exactly those.

    Raises
    ------
    ImageError
        When a dependency is not installed in this environment.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins: dict[str, tuple[str, set[str]]] = {}
    stack = [Requirement(r) for r in requirements]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in pins and extras <= pins[name][1]:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError as exc:
            raise ImageError(f"{req.name} is not installed here; run `invoke setup` first") from exc
        extras |= pins.get(name, ("", set()))[1]
        pins[name] = (dist.version, extras)
        environments = [{"extra": ""}] + [{"extra": e} for e in sorted(extras)]
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate(e) for e in environments):
                stack.append(dep)
    return [f"{name}=={version}" for name, (version, _) in sorted(pins.items())]


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def pip_install_target(specs: Sequence[str], target: Path, log: Log) -> None:
    """``pip install --no-deps --target`` of wheels for the image's Python and platform.

    Byte-code is not compiled by pip (it would embed a random temporary path); see
    :func:`compile_tree`.
    """
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    log(f"pip install --target ({len(specs)} distributions, cp{IMAGE_PYTHON.replace('.', '')} manylinux wheels)")
    run([*_pip(), "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile",
         "--only-binary=:all:", *platforms, "--python-version", IMAGE_PYTHON, "--implementation", "cp",
         "--abi", f"cp{IMAGE_PYTHON.replace('.', '')}", "--target", str(target), *specs], env=_build_env())


def compile_tree(tree: Path, image_dir: str) -> None:
    """Compile ``tree`` to hash-checked ``.pyc`` files naming ``image_dir`` as their location.

    Hash-based pycs do not depend on file mtimes, and ``-d`` fixes the recorded path, so the
    bytes are the same on every build. Files that do not compile (e.g. test data written in
    old syntax) are skipped, as pip does.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-q", "-j", "0", "-d", image_dir,
                    "--invalidation-mode", "checked-hash", str(tree)],
                   env=_build_env(), capture_output=True, text=True)


def drop_dirs(site: Path, names: Iterable[str]) -> int:
    """Remove every directory called one of ``names`` inside a package of ``site``; return the bytes freed.

    Only below a top-level directory (``site/<pkg>/.../tests``): a top-level package of that
    name is some distribution's code, not a test suite.
    """
    names, freed = frozenset(names), 0
    for dirpath, dirnames, _ in os.walk(site):
        if Path(dirpath) == site:
            continue
        for name in [d for d in dirnames if d in names]:
            path = Path(dirpath) / name
            freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(path)
            dirnames.remove(name)
    return freed


def _rewrite_scripts(bin_dir: Path, python: str) -> None:
    """Point the shebang of pip-generated scripts at the image's venv Python."""
    for script in sorted(bin_dir.iterdir()):
        if not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            script.write_bytes(f"#!{python}\n".encode() + data.split(b"\n", 1)[1])


def venv_skeleton(prefix: str) -> list[oci.Entry]:
    """Entries making ``prefix`` a virtual environment on the image's ``/usr/bin/python3``."""
    rel = prefix.strip("/")
    cfg = f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {IMAGE_PYTHON}\n"
    return [
        oci.file_entry(f"{rel}/pyvenv.cfg", cfg.encode()),
        oci.symlink_entry(f"{rel}/bin/python", f"/usr/bin/python{IMAGE_PYTHON}"),
        oci.symlink_entry(f"{rel}/bin/python3", "python"),
        oci.symlink_entry(f"{rel}/bin/python{IMAGE_PYTHON}", "python"),
        oci.symlink_entry(f"{rel}/lib64", "lib"),
    ]


def site_packages(prefix: str = VENV) -> str:
    """The venv's site-packages directory inside the image."""
    return f"{prefix}/lib/python{IMAGE_PYTHON}/site-packages"


@dataclass(frozen=True)
class PythonDeps:
    """The kit's pinned dependencies as wheels unpacked into a venv at ``prefix``.

    Attributes
    ----------
    name
        Layer name.
    specs
        ``name==version`` pins (the locked closure).
    prefix
        Virtual environment directory in the image.
    """

    name: str
    specs: tuple[str, ...]
    prefix: str = VENV

    def key(self) -> str:
        return hash_parts("deps", metadata.version("pip"), sys.version_info[:2], PLATFORMS,
                          IMAGE_PYTHON, self.prefix, self.specs, sorted(DROPPED_DIRS), oci.source_date_epoch())

    def layer(self, work: Path, store: Path, log: Log) -> oci.Layer:
        target = work / "site-packages"
        pip_install_target(self.specs, target, log)
        log(f"dropped {drop_dirs(target, DROPPED_DIRS) / 1e6:.0f} MB of test suites")
        bin_dir = work / "bin"
        if (target / "bin").exists():
            shutil.move(target / "bin", bin_dir)
            _rewrite_scripts(bin_dir, f"{self.prefix}/bin/python")
        log("compiling byte-code (hash-checked .pyc)")
        compile_tree(target, site_packages(self.prefix))
        entries = venv_skeleton(self.prefix)
        entries += oci.entries_from_dir(target, site_packages(self.prefix).strip("/"))
        if bin_dir.exists():
            entries += [e for e in oci.entries_from_dir(bin_dir, f"{self.prefix.strip('/')}/bin")
                        if e.info.name != f"{self.prefix.strip('/')}/bin"]
        return oci.write_layer(entries, store)


# --- the labkit wheel -------------------------------------------------------------------

@dataclass(frozen=True)
class LabkitWheel:
    """The labkit package built with ``pip wheel --no-deps`` and unpacked into the venv.

    Attributes
    ----------
    name
        Layer name.
    root
        Checkout holding ``pyproject.toml`` and ``labkit/``.
    prefix
        Virtual environment directory in the image.
    """

    name: str
    root: Path
    prefix: str = VENV
    files: tuple[str, ...] = field(default=("pyproject.toml", "README.md", "LICENSE"))

    def key(self) -> str:
        top = [(f, (self.root / f).read_bytes()) for f in self.files if (self.root / f).is_file()]
        return hash_parts("wheel", metadata.version("pip"), BUILD_BACKEND_PINS, self.prefix, top,
                          hash_tree(self.root / "labkit"), oci.source_date_epoch())

    def build_wheel(self, work: Path, log: Log) -> Path:
        """Copy the sources to ``work`` (so no build/ appears in the checkout) and build the wheel."""
        src = work / "src"
        shutil.copytree(self.root / "labkit", src / "labkit",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        for name in self.files:
            if (self.root / name).is_file():
                shutil.copy2(self.root / name, src / name)
        constraints = work / "build-constraints.txt"
        constraints.write_text("\n".join(BUILD_BACKEND_PINS) + "\n")
        log("pip wheel --no-deps labkit")
        env = {**_build_env(), "PIP_CONSTRAINT": str(constraints)}
        run([*_pip(), "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "-w",
             str(work / "wheel"), str(src)], env=env)
        wheels = sorted((work / "wheel").glob("labkit-*.whl"))
        if len(wheels) != 1:
            raise ImageError(f"pip wheel made {len(wheels)} labkit wheels in {work / 'wheel'}")
        return wheels[0]

    def layer(self, work: Path, store: Path, log: Log) -> oci.Layer:
        wheel = self.build_wheel(work, log)
        target = work / "site-packages"
        pip_install_target([str(wheel)], target, log)
        _drop_direct_url(target)
        compile_tree(target, site_packages(self.prefix))
        return oci.write_layer(oci.entries_from_dir(target, site_packages(self.prefix).strip("/")), store)


def _drop_direct_url(site: Path) -> None:
    """Remove ``direct_url.json`` (it names the temporary wheel path) and its RECORD line."""
    for direct in site.glob("*.dist-info/direct_url.json"):
        record = direct.with_name("RECORD")
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(line for line in lines if not line.startswith(f"{direct.parent.name}/direct_url.json,")))
        direct.unlink()
