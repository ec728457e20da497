"""Liqo's own source and programs: fetched, checked to be the pinned version, built once.

Liqo's Go module is refused by the Go module proxy, so its source comes from the user:

1. ``$LABKIT_LIQO_SOURCE``: a directory (an unpacked tag, or a git checkout) or a tarball
   (``git archive`` of the tag; CI points it at ``../shared/vendor/liqo-v0.10.2.tar.gz``);
2. otherwise a shallow ``git clone`` of the tag from Liqo's public repository.

What was got must be the pinned version (:data:`LIQO_VERSION`, overridable for a run of
``invoke setup`` with ``$LABKIT_LIQO_VERSION``): its file tree hashes, as git hashes trees, to
the tree of the tag (:data:`RELEASES`); a git checkout is asked for its tag and commit; a
tarball made by ``git archive`` names its commit. Anything else is refused in one error that
names the source and the version (or commit) it holds.

The checked source is unpacked into ``~/.cache/labkit/src/liqo-<version>/`` (the chart that
``liqoctl install --local-chart-path`` deploys comes from there), and the eight programs are
built into ``~/.cache/labkit/bin/liqo-<version>-<go version>/`` with ``CGO_ENABLED=0`` and
``-ldflags "-s -w -X ...liqoctlVersion=<version>"`` (liqoctl reports the version; upstream's
release builds do the same), keyed like the Kubernetes binaries by version and Go.

No Liqo code is in this repository: it is fetched and built from the user's source.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit import setup_steps as steps
from labkit import gobuild

Log = Callable[[str], None]

#: The Liqo of the thesis.
LIQO_VERSION = "v0.10.2"
#: Overrides :data:`LIQO_VERSION` for ``invoke setup`` (a version named in :data:`RELEASES`, or any tag of a clone).
VERSION_ENV = "LABKIT_LIQO_VERSION"
#: Where the user's source is: a directory or a tarball.
SOURCE_ENV = "LABKIT_LIQO_SOURCE"
#: Cloned when :data:`SOURCE_ENV` is not set.
REPOSITORY = "https://github.com/liqotech/liqo"
#: The programs built from ``./cmd/<name>`` (discovery and telemetry stay off, so are not built).
PROGRAMS = ("liqo-controller-manager", "liqonet", "virtual-kubelet", "crd-replicator", "auth-service",
            "metric-agent", "uninstaller", "liqoctl")
#: The Go package whose ``liqoctlVersion`` the linker sets (``pkg/liqoctl/version/handler.go``).
LIQOCTL_VERSION_VAR = "github.com/liqotech/liqo/pkg/liqoctl/version.liqoctlVersion"
#: Debian packages this needs, with the reason.
APT_PACKAGES: dict[str, str] = {"git": f"clones Liqo's tag from {REPOSITORY} when {SOURCE_ENV} is not set"}
#: Written last into a checked source directory: its tree id.
CHECKED = ".labkit-checked"


@dataclass(frozen=True)
class Release:
    """A Liqo release the kit can check a source against: the tag's commit and its root tree."""

    commit: str
    tree: str


#: Known releases (commit and git tree id of the tag; ``git rev-parse <tag> <tag>^{tree}``).
RELEASES: dict[str, Release] = {
    "v0.10.2": Release(commit="f72d0fe7cf40ae9cc5e64e3b683e5b701c7e3532",
                       tree="f2c43da8e0e97f513a2b89ea9a7adb14e5d16b22"),
}


class SourceError(steps.SetupError):
    """Liqo's source is not the pinned version, or cannot be read; the message names it."""


class SourceUnavailable(SourceError):
    """No Liqo source can be had here (no ``$LABKIT_LIQO_SOURCE``, no clone)."""


def liqo_version() -> str:
    """The version setup fetches and builds: ``$LABKIT_LIQO_VERSION`` or :data:`LIQO_VERSION`."""
    return os.environ.get(VERSION_ENV, "").strip() or LIQO_VERSION


# --- identifying a source -----------------------------------------------------------------------

def git_tree_id(root: Path) -> str:
    """The id git gives the tree of the files under ``root`` (``.git`` left out; empty directories too).

    Blobs hash ``blob <size>\\0<content>``; a tree lists its entries sorted by name (a
    directory's name as if it ended in ``/``) as ``<mode> <name>\\0<20-byte id>``, with mode
    100755 for executables, 100644 for other files, 120000 for symbolic links, 40000 for trees.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []
    with os.scandir(root) as scan:
        for entry in scan:
            if entry.name == ".git":
                continue
            name = os.fsencode(entry.name)
            if entry.is_symlink():
                data = os.fsencode(os.readlink(entry.path))
                entries.append((name, b"120000", _object(b"blob", data)))
            elif entry.is_dir():
                sub = git_tree_id(Path(entry.path))
                if sub != _EMPTY_TREE:
                    entries.append((name + b"/", b"40000", bytes.fromhex(sub)))
            else:
                mode = b"100755" if entry.stat().st_mode & stat.S_IXUSR else b"100644"
                entries.append((name, mode, _object(b"blob", Path(entry.path).read_bytes())))
    body = b"".join(mode + b" " + name.rstrip(b"/") + b"\0" + oid for name, mode, oid in sorted(entries))
    return _object(b"tree", body).hex()


def _object(kind: bytes, data: bytes) -> bytes:
    return hashlib.sha1(kind + b" " + str(len(data)).encode() + b"\0" + data).digest()


_EMPTY_TREE = _object(b"tree", b"").hex()


def describe(tree: str | None = None, commit: str | None = None) -> str:
    """A name for a source: its release when :data:`RELEASES` knows its tree or commit, else the id."""
    for version, release in RELEASES.items():
        if tree == release.tree or (commit and commit == release.commit):
            return version
    if commit:
        return f"commit {commit[:12]}"
    return f"an unknown version (tree {tree[:12] if tree else '?'})"


def _git(argv: list[str], cwd: Path) -> str | None:
    """Output of ``git <argv>`` in ``cwd``, ``None`` when git is missing or fails."""
    if shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)
    return proc.stdout.strip() if proc.returncode == 0 else None


def check_directory(source: Path, version: str) -> str:
    """Check that ``source`` holds Liqo ``version``; return its tree id.

    A git checkout must be at the tag (or its commit) with no change to tracked files; any
    directory must hash to the tag's tree when :data:`RELEASES` knows it.

    Raises
    ------
    SourceError
        Naming ``source`` and the version found in it.
    """
    if not (source / "go.mod").is_file() or "module github.com/liqotech/liqo" not in (source / "go.mod").read_text():
        raise SourceError(f"{source} is not Liqo's source (no go.mod of module github.com/liqotech/liqo)")
    release = RELEASES.get(version)
    if (source / ".git").exists():
        commit = _git(["rev-parse", "HEAD"], source)
        tag = _git(["describe", "--tags", "--exact-match", "HEAD"], source)
        if commit is None:
            raise SourceError(f"{source}: git cannot read the checkout (is git installed?)")
        if (release and commit != release.commit) or (not release and tag != version):
            found = tag or describe(commit=commit)
            raise SourceError(f"{source} holds Liqo {found}, not {version}: check out the tag {version} "
                              f"(or set {VERSION_ENV}={found} to build that one)")
        if _git(["status", "--porcelain", "--untracked-files=no"], source):
            raise SourceError(f"{source}: the checkout of {version} has local changes (`git status`); "
                              "build from an unchanged tag")
        tree = _git(["rev-parse", "HEAD^{tree}"], source) or ""
        return tree
    tree = git_tree_id(source)
    if release is None:
        raise SourceError(f"{source}: cannot check a plain directory against {version} (only "
                          f"{', '.join(RELEASES)} known); use a git checkout of the tag")
    if tree != release.tree:
        raise SourceError(f"{source} holds Liqo {describe(tree=tree)}, not {version} (its files hash to tree "
                          f"{tree[:12]}, the tag's is {release.tree[:12]}): point {SOURCE_ENV} at the {version} "
                          "source, unchanged")
    return tree


def archive_commit(tarball: Path) -> str | None:
    """The commit ``git archive`` recorded in a tarball's global header (``None`` when absent)."""
    try:
        with tarfile.open(tarball) as tar:
            comment = tar.pax_headers.get("comment", "").strip()
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"{tarball} is not a readable tarball ({exc})") from None
    return comment if len(comment) == 40 else None


# --- getting it ---------------------------------------------------------------------------------

def src_root() -> Path:
    """``~/.cache/labkit/src``: checked sources, one directory per version."""
    return paths.cache_dir() / "src"


def source_dir(version: str | None = None) -> Path:
    """Where the checked source of ``version`` is kept."""
    return src_root() / f"liqo-{version or liqo_version()}"


def chart_dir(version: str | None = None) -> Path:
    """Liqo's Helm chart in the checked source (``liqoctl install --local-chart-path``)."""
    return source_dir(version) / "deployments" / "liqo"


def source_ready(version: str | None = None) -> bool:
    """Whether the checked source of ``version`` is in the cache."""
    return (source_dir(version) / CHECKED).is_file()


def fetch(version: str | None = None, log: Log = print) -> Path:
    """Get, check and keep the source of ``version``; return its directory in the cache.

    Raises
    ------
    SourceError
        When the source is another version, unreadable, or the clone fails.
    SourceUnavailable
        When ``$LABKIT_LIQO_SOURCE`` is unset and git cannot clone.
    """
    version = version or liqo_version()
    target = source_dir(version)
    if source_ready(version):
        return target
    src_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".liqo-{version}-", dir=src_root()))
    try:
        given = os.environ.get(SOURCE_ENV, "").strip()
        if given:
            unpacked = _from_given(Path(given).expanduser(), version, work, log)
        else:
            unpacked = _clone(version, work, log)
        tree = check_directory(unpacked, version)
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
        (target / CHECKED).write_text(f"{version} tree {tree}\n")
        log(f"  Liqo {version} source checked (tree {tree[:12]}) in {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _from_given(source: Path, version: str, work: Path, log: Log) -> Path:
    """Copy or unpack the user's source into ``work``; return the source directory there."""
    if not source.exists():
        raise SourceError(f"{SOURCE_ENV}={source}: no such file or directory")
    if source.is_dir():
        check_directory(source, version)  # before copying: a wrong directory is named as given
        if (source / ".git").exists():  # the tracked files at the tag, not what a build left beside them
            log(f"  git archive HEAD of {source}")
            data = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=source, capture_output=True,
                                  check=True, timeout=300).stdout
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(work / "src", filter="tar")
        else:
            log(f"  copying Liqo's source from {source}")
            shutil.copytree(source, work / "src", symlinks=True)
        return work / "src"
    commit = archive_commit(source)
    release = RELEASES.get(version)
    if commit and release and commit != release.commit:
        raise SourceError(f"{SOURCE_ENV}={source} is a git archive of Liqo {describe(commit=commit)}, not "
                          f"{version} (commit {release.commit[:12]})")
    log(f"  unpacking {source}")
    with tarfile.open(source) as tar:
        tar.extractall(work / "tar", filter="tar")
    tops = [p for p in (work / "tar").iterdir()]
    root = tops[0] if len(tops) == 1 and tops[0].is_dir() else work / "tar"
    try:
        check_directory(root, version)
    except SourceError as err:
        raise SourceError(f"{SOURCE_ENV}={source}: {err}") from None
    return root


def _clone(version: str, work: Path, log: Log) -> Path:
    """``git clone --depth 1 --branch <version>`` of :data:`REPOSITORY` into ``work``."""
    if shutil.which("git") is None:
        raise SourceUnavailable(f"no Liqo source: {SOURCE_ENV} is not set and git is not installed to clone "
                                f"{REPOSITORY} {version}")
    log(f"  git clone --depth 1 --branch {version} {REPOSITORY}")
    proc = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", version, REPOSITORY,
                           str(work / "clone")], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])
        raise SourceUnavailable(f"no Liqo source: {SOURCE_ENV} is not set and cloning {REPOSITORY} at {version} "
                                f"failed ({tail})")
    return work / "clone"


# --- building -----------------------------------------------------------------------------------

def bin_dir(version: str | None = None, go: str | None = None) -> Path:
    """Cache directory of the programs of ``version`` built with the current (or ``go``) Go."""
    return gobuild.bin_root() / f"liqo-{version or liqo_version()}-{go or gobuild.go_version()}"


def built(version: str | None = None) -> bool:
    """Whether every program of ``version`` is in the cache."""
    directory = bin_dir(version)
    return all((directory / p).is_file() for p in PROGRAMS)


def ldflags(version: str) -> str:
    """Linker flags: stripped, liqoctl reporting ``version``."""
    return f"-s -w -X '{LIQOCTL_VERSION_VAR}={version}'"


def build(version: str | None = None, log: Log = print) -> Path:
    """Build the :data:`PROGRAMS` of ``version`` from its checked source; return their directory.

    Raises
    ------
    labkit.setup_steps.SetupError
        When Go is missing or a step fails (with the last output lines), or liqoctl does not
        report ``version``.
    """
    version = version or liqo_version()
    target = bin_dir(version)
    if built(version):
        return target
    go = gobuild.go_binary()
    if go is None:
        raise steps.SetupError(f"Go is needed to build Liqo {version} from its source: install Go >= 1.22 "
                                 "(https://go.dev/dl; `go` on PATH or /usr/local/go/bin/go)")
    source = fetch(version, log)
    start = time.monotonic()
    log(f"  go mod download in {source} (Liqo {version}'s dependencies, from the Go module proxy)")
    gobuild.run_go([str(go), "mod", "download"], log, cwd=source, label="download")
    packages = [f"./cmd/{p}" for p in PROGRAMS]
    deps = subprocess.run([str(go), "list", "-deps", *packages], cwd=source, capture_output=True, text=True,
                          env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"})
    total = len(deps.stdout.split()) if deps.returncode == 0 else 0
    log(f"  go build of {len(PROGRAMS)} programs: {total or '?'} packages; about 6-12 min cold on 2 cores")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gobuild.run_go([str(go), "build", "-v", "-buildvcs=false", "-ldflags", ldflags(version), "-o", f"{tmp}/",
                     *packages], log, cwd=source, total=total, label="build",
                    extra_env={"CGO_ENABLED": "0"})
    _check_liqoctl(tmp / "liqoctl", version)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    size = sum((target / p).stat().st_size for p in PROGRAMS) / 2**20
    log(f"  built {len(PROGRAMS)} programs ({size:.0f} MB) into {target} in {time.monotonic() - start:.0f} s")
    return target


def _check_liqoctl(liqoctl: Path, version: str) -> None:
    out = subprocess.run([str(liqoctl), "version", "--client"], capture_output=True, text=True, timeout=30)
    if version not in out.stdout + out.stderr:
        raise steps.SetupError(f"{liqoctl} reports {(out.stdout + out.stderr).strip()!r}, not {version}")


@dataclass(frozen=True)
class LiqoPrograms:
    """A built Liqo: the programs' directory and the chart of the same source."""

    version: str
    bin: Path
    chart: Path

    @property
    def liqoctl(self) -> Path:
        """The liqoctl binary."""
        return self.bin / "liqoctl"

    def program(self, name: str) -> Path:
        """One of :data:`PROGRAMS`."""
        return self.bin / name


def find(version: str | None = None) -> LiqoPrograms:
    """The built programs and the chart of ``version``.

    Raises
    ------
    labkit.testbed.embedded.gobuild.BinariesMissing
        Saying how to build them, or how to choose the kit's look-alike instead.
    """
    version = version or liqo_version()
    if not built(version) or not source_ready(version):
        raise gobuild.BinariesMissing(
            f"Liqo {version} is not built in {bin_dir(version)}: run `invoke setup` with {SOURCE_ENV} pointing at "
            f"its source (a directory or a `git archive` tarball) or with access to {REPOSITORY}; or run the "
            "kit's Liqo look-alike instead (env `backend: {peering: kit}`, or LABKIT_PEERING=kit)")
    return LiqoPrograms(version, bin_dir(version), chart_dir(version))


# --- setup --------------------------------------------------------------------------------------

def setup_step() -> steps.Step:
    """Setup step: Liqo's source checked and its programs built (one line and no failure without a source)."""
    version = liqo_version()

    def run(log: Log) -> None:
        try:
            build(version, log)
        except SourceUnavailable as exc:
            log(f"  {exc}; Liqo not built: the embedded test bed can run the kit's look-alike "
                f"(backend.peering: kit, or LABKIT_PEERING=kit)")

    return steps.Step(name="liqo", what=f"Liqo {version} built from its source ({SOURCE_ENV} or a clone) into "
                                          f"{bin_dir(version)}",
                        check=lambda: built(version) and source_ready(version), run=run)
