"""The guest's disk image and its local apt repository, built by ``mmdebstrap`` without a registry.

One ``mmdebstrap`` run from the host's Debian mirror makes the guest's root file system
(:class:`Recipe`: Debian with systemd as PID 1, Debian's ``linux-image-amd64``, openssh and the
distribution's ``python3``, nothing of the kit) and, in a hook, downloads every ``.deb`` that the
kit's ``invoke setup`` and ``bootstrap.sh`` will install on top of it into a flat apt repository,
which the host then serves to the guest (the guest has no route to the internet). The root file
system becomes an ext4 image (``mkfs.ext4 -d``); Debian's kernel and initramfs are taken out of
it so that qemu boots them directly. Everything is cached under ``~/.cache/labkit/guest/<key>/``,
where the key hashes the recipe, the packages, the host's apt sources and ``mmdebstrap``'s version.

The guest's own apt reads the local repository (``Dir::Etc::SourceList`` in
``/etc/apt/apt.conf.d``), and its ``/etc/apt/sources.list*`` are byte copies of the host's: the
image cache keys of :mod:`labkit.images` hash those files, so the build cache copied into the
guest is found as built (the archive behind them is the same: the host's mirror, served through
the host).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from labkit import paths

Log = Callable[[str], None]

#: Bump when the image's layout changes in a way the recipe does not show.
FORMAT = 2
#: The host's address on the host-only network, where the guest finds the repository and wheels.
HOST_ADDRESS = "10.251.0.1"
#: The guest's address there.
GUEST_ADDRESS = "10.251.0.2"
#: Prefix length of the host-only network.
PREFIX_LEN = 24
#: Port of the HTTP server that serves the repository (``/debs/``) and the wheelhouse (``/wheels/``).
HTTP_PORT = 8000
#: Where the guest's apt finds its sources instead of /etc/apt (see the module doc).
GUEST_APT_DIR = "/etc/labkit-guest/apt"
#: The host's apt sources, copied byte for byte into the guest.
HOST_APT = Path("/etc/apt")

#: What a stock server install of the distribution has that the kit may rely on: systemd as init
#: (with dbus, which the installer brings as systemd's recommendation), Debian's kernel, sshd, the
#: distribution's python3 (no venv, no pip), git (the checkout came by it).
BASE_PACKAGES = ("systemd-sysv", "dbus", "linux-image-amd64", "initramfs-tools", "openssh-server", "python3", "git",
                 "kmod", "iproute2", "procps", "ca-certificates")


class ImageError(RuntimeError):
    """The guest image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class Recipe:
    """What the guest image is made of.

    Attributes
    ----------
    suite
        Debian release (``bookworm``; ``trixie`` where the mirror has it).
    variant
        mmdebstrap variant: ``important`` is Debian's priority-important set, a small server.
    packages
        Installed in the image.
    repo_packages
        Downloaded (with their dependencies missing from the image) into the local apt
        repository, not installed: what the kit's setup and ``bootstrap.sh`` ask apt for.
    disk_gib
        Size of the (sparse) disk image.
    sources
        The host's apt sources files (:func:`host_sources`), copied into the guest's ``/etc/apt``.
    """

    suite: str = "bookworm"
    variant: str = "important"
    packages: tuple[str, ...] = BASE_PACKAGES
    repo_packages: tuple[str, ...] = ()
    disk_gib: int = 48
    sources: tuple[tuple[str, str], ...] = ()

    def key(self, mmdebstrap_version: str) -> str:
        """Cache key: the recipe (with the host's apt sources it copies), ``mmdebstrap``'s version, :data:`FORMAT`."""
        doc = json.dumps({**asdict(self), "mmdebstrap": mmdebstrap_version, "format": FORMAT}, sort_keys=True)
        return f"{self.suite}-{hashlib.sha256(doc.encode()).hexdigest()[:16]}"

    def mmdebstrap_argv(self, target: Path, overlay: Path, repo: Path) -> list[str]:
        """The ``mmdebstrap`` command: the root file system into ``target``, the repository into ``repo``.

        Hooks, in order: download the repository's ``.deb`` files (the chroot's apt still reads
        the mirror) and empty apt's cache; drop the chroot's sources and copy ``overlay`` (the
        guest's configuration, :func:`guest_files`) over the root; enable systemd-networkd.
        """
        download = ("chroot \"$1\" apt-get install --download-only -y -q --no-install-recommends "
                    + " ".join(sorted(self.repo_packages)))
        return [
            "mmdebstrap", "--quiet", f"--variant={self.variant}", "--mode=root", "--format=directory",
            "--aptopt=APT::Install-Recommends \"false\"",
            "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            f"--include={','.join(sorted(self.packages))}",
            *([f"--customize-hook={download}",
               f"--customize-hook=cp \"$1\"/var/cache/apt/archives/*.deb {repo}/"] if self.repo_packages else []),
            "--customize-hook=chroot \"$1\" apt-get clean",
            "--customize-hook=rm -f \"$1\"/etc/apt/sources.list \"$1\"/etc/apt/sources.list.d/*",
            f"--customize-hook=cp -a {overlay}/. \"$1\"/",
            "--customize-hook=chroot \"$1\" systemctl enable systemd-networkd",
            self.suite, str(target),
        ]


def host_sources(root: Path = HOST_APT) -> tuple[tuple[str, str], ...]:
    """The host's ``sources.list`` and ``sources.list.d/*`` files as (path below /etc/apt, text)."""
    files = [p for p in sorted(root.glob("sources.list*")) if p.is_file()]
    files += [p for p in sorted((root / "sources.list.d").glob("*")) if p.is_file()]
    return tuple((str(p.relative_to(root)), p.read_text()) for p in files)


def guest_files(recipe: Recipe) -> dict[str, str]:
    """Files written into the guest's root (path -> content): network, apt, pip, fstab, hostname.

    - eth0 gets :data:`GUEST_ADDRESS` from systemd-networkd, and no route beyond the host-only network;
    - apt reads the host's repository at ``http://<host>:<port>/debs`` (unsigned, served only on
      the host-only network: ``trusted=yes``) through :data:`GUEST_APT_DIR`; ``/etc/apt`` gets
      byte copies of the host's sources (see the module doc);
    - pip finds the wheelhouse at ``/wheels/`` and no index;
    - the root file system is ``/dev/vda``.
    """
    url = f"http://{HOST_ADDRESS}:{HTTP_PORT}"
    files = {
        "etc/hostname": "labkit-guest\n",
        "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 labkit-guest\n",
        "etc/fstab": "/dev/vda / ext4 defaults,noatime 0 1\n",
        "etc/systemd/network/10-lab.network": (
            f"[Match]\nName=eth0\n\n[Network]\nAddress={GUEST_ADDRESS}/{PREFIX_LEN}\n"),
        "etc/apt/apt.conf.d/00labkit-guest": (
            "// the guest has no route to a mirror: the host serves the packages the kit installs\n"
            f"Dir::Etc::SourceList \"{GUEST_APT_DIR}/sources.list\";\n"
            f"Dir::Etc::SourceParts \"{GUEST_APT_DIR}/sources.list.d\";\n"),
        f"{GUEST_APT_DIR.lstrip('/')}/sources.list": f"deb [trusted=yes] {url}/debs ./\n",
        f"{GUEST_APT_DIR.lstrip('/')}/sources.list.d/.keep": "",
        "etc/pip.conf": f"[global]\nno-index = true\nfind-links = {url}/wheels/\ntrusted-host = {HOST_ADDRESS}\n",
    }
    for name, text in recipe.sources:
        files[f"etc/apt/{name}"] = text
    return files


def kernel_cmdline() -> str:
    """Kernel command line of the guest: root on the virtio disk, serial console, eth0 naming.

    systemd mounts the unified cgroup v2 hierarchy by default on both Debian releases; it is
    asked for explicitly so that a changed default shows as a failed check, not a silent v1 run.
    """
    return ("root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.unified_cgroup_hierarchy=1 "
            "panic=-1 quiet")


def packages_index(debs: Iterable[Path], fields: Callable[[Path], str] | None = None) -> str:
    """A flat repository's ``Packages`` file for ``debs`` (their control fields, Filename, Size, SHA256)."""
    read = fields or _control_fields
    stanzas = []
    for deb in sorted(debs):
        control = read(deb).strip()
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest}\n")
    return "\n".join(stanzas)


def release_file(packages: str, date: str) -> str:
    """An (unsigned) ``Release`` for a flat repository holding the ``Packages`` text ``packages``.

    apt accepts an unsigned Release from a source marked ``trusted=yes``; without any Release it
    refuses the repository.
    """
    digest = hashlib.sha256(packages.encode()).hexdigest()
    return (f"Origin: labkit-guest\nLabel: labkit-guest\nDate: {date}\n"
            f"SHA256:\n {digest} {len(packages.encode())} Packages\n")


def _control_fields(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout


# --- building -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """A built guest image in the cache.

    Attributes
    ----------
    dir
        ``~/.cache/labkit/guest/<key>/``.
    """

    dir: Path

    @property
    def disk(self) -> Path:
        """The root file system (raw ext4; boots use a copy-on-write overlay over it)."""
        return self.dir / "disk.raw"

    @property
    def kernel(self) -> Path:
        """Debian's kernel, taken out of the image."""
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        """Debian's initramfs for that kernel."""
        return self.dir / "initrd.img"

    @property
    def repo(self) -> Path:
        """The flat apt repository (``Packages`` + ``.deb`` files)."""
        return self.dir / "repo"

    @property
    def python_version(self) -> str:
        """The version of the distribution's ``python3`` in the image (``3.11.2``)."""
        return (self.dir / "python-version").read_text().strip()

    @property
    def ssh_key(self) -> Path:
        """Private key whose public half is root's ``authorized_keys`` in the guest."""
        return self.dir / "id_ed25519"

    def ready(self) -> bool:
        """Whether the build completed (its marker is written last)."""
        return (self.dir / "ready").exists()


def guest_root() -> Path:
    """``~/.cache/labkit/guest``."""
    return paths.cache_dir() / "guest"


def mmdebstrap_version() -> str:
    """``mmdebstrap --version`` (``none`` without it)."""
    if not shutil.which("mmdebstrap"):
        return "none"
    return subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True).stdout.strip()


def image_for(recipe: Recipe) -> Image:
    """Where the image of ``recipe`` is (or will be) cached."""
    return Image(guest_root() / recipe.key(mmdebstrap_version()))


def build(recipe: Recipe, log: Log = print) -> Image:
    """Build the image of ``recipe`` unless it is cached; return it.

    Takes 4-8 min on 2 cores (download, kernel and initramfs, ``mkfs.ext4``); root is needed
    (``mmdebstrap --mode=root``, device files).

    Raises
    ------
    ImageError
        Naming the step that failed and its last output lines.
    """
    image = image_for(recipe)
    if image.ready():
        log(f"[guest] image {image.dir.name} cached")
        return image
    work = image.dir.with_name(image.dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    rootfs, overlay, repo = work / "rootfs", work / "overlay", work / "repo"
    for d in (overlay, repo):
        d.mkdir(parents=True)
    start = time.monotonic()
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit-guest", "-f", str(work / "id_ed25519")],
         "ssh-keygen")
    _write_tree(overlay, {**guest_files(recipe),
                          "root/.ssh/authorized_keys": (work / "id_ed25519.pub").read_text()})
    (overlay / "root" / ".ssh").chmod(0o700)
    log(f"[guest] mmdebstrap {recipe.suite} ({recipe.variant} + {len(recipe.packages)} packages; "
        f"{len(recipe.repo_packages)} more into the local repository); about 5 min")
    _run(recipe.mmdebstrap_argv(rootfs, overlay, repo), "mmdebstrap")
    _take_boot_files(rootfs, work)
    version = subprocess.run(["chroot", str(rootfs), "python3", "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (work / "python-version").write_text(version + "\n")
    index = packages_index(repo.glob("*.deb"))
    (repo / "Packages").write_text(index)
    (repo / "Release").write_text(release_file(index, time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())))
    log(f"[guest] mkfs.ext4 -d: {recipe.disk_gib} GiB sparse disk image")
    _run(["mkfs.ext4", "-q", "-F", "-L", "labkit-guest", "-E", "root_owner=0:0", "-d", str(rootfs),
          str(work / "disk.raw"), f"{recipe.disk_gib}G"], "mkfs.ext4")
    shutil.rmtree(rootfs)
    shutil.rmtree(overlay)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    shutil.rmtree(image.dir, ignore_errors=True)
    work.rename(image.dir)
    (image.dir / "ready").write_text(f"built in {time.monotonic() - start:.0f} s\n")
    log(f"[guest] image {image.dir.name} built in {time.monotonic() - start:.0f} s")
    for old in image.dir.parent.glob(f"{recipe.suite}-*"):  # images of older recipes of this suite
        if old != image.dir and not old.name.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    return image


def _write_tree(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _take_boot_files(rootfs: Path, into: Path) -> None:
    """Copy Debian's newest kernel and its initramfs out of ``rootfs/boot``."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageError(f"no kernel in {rootfs / 'boot'} (is linux-image-amd64 in the recipe?)")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.exists():
        raise ImageError(f"no initramfs {initrd} for kernel {version} (initramfs-tools)")
    shutil.copy2(kernels[-1], into / "vmlinuz")
    shutil.copy2(initrd, into / "initrd.img")
    (into / "kernel-version").write_text(version + "\n")


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImageError(f"{what} exited {proc.returncode}:\n{tail}")
