"""Boot the guest: a host-only network in the kit's namespace, an HTTP server, qemu + KVM, SSH.

Everything lives in the network namespace :data:`NETNS` that :class:`Guest` creates: the tap
device qemu attaches the guest's ``eth0`` to (the host's side has
:data:`~.image.HOST_ADDRESS`), the HTTP server that serves the apt repository and the
wheelhouse, and every ``ssh`` into the guest. The guest has no route beyond that network and
the namespace has no link to any other, so nothing the guest sends leaves it. Each boot writes
to a copy-on-write overlay over the cached image (``qemu-img create -b``), so the image stays
as built. :meth:`Guest.close` powers the guest off (then kills qemu), stops the server and
deletes the namespace and the overlay; it runs on any exit of the ``with`` block.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import NetNS, netns

from labkit.guest.image import GUEST_ADDRESS, HOST_ADDRESS, HTTP_PORT, PREFIX_LEN, Image, kernel_cmdline
from labkit.testbed.embedded import linux

Log = Callable[[str], None]

#: The kit's network namespace for the guest (the embedded sweeper removes only ``lkt-vm-*``).
NETNS = "lkt-guest"
#: The tap device of the guest's eth0, inside :data:`NETNS`.
TAP = "lkt-gtap0"
#: Where a boot keeps its overlay, console log, pid files and served directory.
RUN_DIR = Path("/var/tmp/lkt-guest")


class GuestError(RuntimeError):
    """The guest did not boot, answer or run a command; the message names the log to read."""


@dataclass(frozen=True)
class Resources:
    """What one guest gets: vCPUs, memory (MiB) and the accelerator (``kvm`` or ``tcg``)."""

    cpus: int = 2
    memory_mib: int = 11 * 1024
    accel: str = "kvm"


def kvm_boots_distribution_kernels(modules: Path = Path("/sys/module")) -> bool:
    """Whether this host's ``/dev/kvm`` runs an unmodified kernel such as Debian's.

    A host whose KVM is PVM (``kvm_pvm``: paravirtualised nested virtualisation, as on the
    development machine, itself a VM) without ``kvm_intel``/``kvm_amd`` creates VMs and vCPUs,
    but runs only kernels built as PVM guests: Debian's kernel stops in its first instructions
    (no output after the real-mode setup's "Probing EDD"). There the guest runs under qemu's
    own emulator (TCG), several times slower.
    """
    hardware = any((modules / m).is_dir() for m in ("kvm_intel", "kvm_amd"))
    return hardware or not (modules / "kvm_pvm").is_dir()


def qemu_argv(image: Image, overlay: Path, console: Path, res: Resources, drives: Sequence[Path] = (),
              mac: str = "52:54:00:4c:4b:01") -> list[str]:
    """The qemu command: KVM (or TCG, multi-threaded), Debian's kernel booted directly, virtio disk and net.

    ``drives``: more raw disks, ``/dev/vdb`` on (read-write: each is the run's own file).
    """
    accel = ["-machine", "q35,accel=kvm", "-cpu", "host"] if res.accel == "kvm" else \
        ["-machine", "q35", "-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"]
    return [
        "qemu-system-x86_64", "-name", "labkit-guest", *accel,
        "-smp", str(res.cpus), "-m", str(res.memory_mib),
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", kernel_cmdline(),
        "-drive", f"file={overlay},format=qcow2,if=virtio,cache=unsafe,discard=unmap",
        *(arg for d in drives for arg in ("-drive", f"file={d},format=raw,if=virtio,cache=unsafe")),
        "-netdev", f"tap,id=lab,ifname={TAP},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=lab,mac={mac}",
        "-device", "virtio-rng-pci",
        "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
        "-no-reboot",
    ]


def ssh_argv(key: Path, command: str | None = None, address: str = GUEST_ADDRESS) -> list[str]:
    """``ssh`` as root into the guest with the image's key (a fresh guest: no host key to check)."""
    argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8", f"root@{address}"]
    return argv + ([command] if command is not None else [])


def enter_netns() -> None:
    """``preexec_fn``: move the child into :data:`NETNS` (network only)."""
    linux.setns(f"/run/netns/{NETNS}", linux.CLONE_NEWNET)


def create_network() -> None:
    """Create :data:`NETNS` with the tap :data:`TAP` (host address on it, up) and loopback up."""
    if NETNS not in netns.listnetns():
        netns.create(NETNS)
    with NetNS(NETNS) as ns:
        if not ns.link_lookup(ifname=TAP):
            ns.link("add", ifname=TAP, kind="tuntap", mode="tap")
        idx = ns.link_lookup(ifname=TAP)[0]
        if HOST_ADDRESS not in {a.get("address") for a in ns.get_addr(index=idx)}:
            ns.addr("add", index=idx, address=HOST_ADDRESS, prefixlen=PREFIX_LEN)
        ns.link("set", index=idx, state="up")
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def sweep(log: Log = print) -> list[str]:
    """Remove what a killed boot left: its qemu and HTTP server (by pid file), the namespace, the run dir."""
    found = []
    for pidfile in sorted(RUN_DIR.glob("*/*.pid")) if RUN_DIR.is_dir() else []:
        pid = _read_pid(pidfile)
        if pid and _alive(pid, pidfile.stem):
            os.kill(pid, signal.SIGKILL)
            found.append(f"{pidfile.stem} {pid}")
    if NETNS in netns.listnetns():
        netns.remove(NETNS)
        found.append(f"netns {NETNS}")
    if RUN_DIR.is_dir():
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    if found:
        log(f"[guest] removed leftovers of a previous boot: {', '.join(found)}")
    return found


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, name: str) -> bool:
    """Whether ``pid`` runs and is the program a pid file of that ``name`` names (qemu, http)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return ("qemu-system" in cmdline) if name == "qemu" else ("http.server" in cmdline)


class Guest:
    """A booted guest, its network and server (a context manager; :meth:`close` always runs).

    Parameters
    ----------
    image
        The built image (:func:`labkit.guest.image.build`).
    served
        Directories the HTTP server serves, by URL path (``{"debs": repo, "wheels": wheelhouse}``).
    resources
        vCPUs, memory, accelerator.
    drives
        Raw disks attached after the root disk (``/dev/vdb``, ...).
    overlay
        Boot from this kept overlay of an earlier boot (moved in, not copied) instead of a fresh
        one: to go on from a failed run's state without repeating its first hour under TCG. A
        fresh qcow2 overlay backed by a kept one (``qemu-img create -b kept -F qcow2``) boots
        from that state and leaves it as it was.
    keep_overlay
        Where :meth:`close` moves this boot's overlay after the guest powered off (``None``:
        it is deleted).
    log
        Where progress goes.
    """

    def __init__(self, image: Image, served: dict[str, Path], resources: Resources = Resources(),
                 drives: Sequence[Path] = (), overlay: Path | None = None, log: Log = print,
                 keep_overlay: Path | None = None) -> None:
        self.image = image
        self.served = served
        self.resources = resources
        self.drives = tuple(drives)
        self.kept_overlay = overlay
        self.keep_overlay = keep_overlay
        self.log = log
        self.run_dir = RUN_DIR / f"boot-{os.getpid()}"
        self.console = self.run_dir / "console.log"
        self._qemu: subprocess.Popen[bytes] | None = None
        self._http: subprocess.Popen[bytes] | None = None
        #: Seconds: ``boot`` (qemu start until SSH answers).
        self.timings: dict[str, float] = {}

    def __enter__(self) -> Guest:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- bring-up ---------------------------------------------------------------------------

    def start(self, boot_timeout: float = 300.0) -> None:
        """Network, server, overlay, qemu; wait until SSH answers (``boot_timeout`` seconds)."""
        sweep(self.log)
        self.run_dir.mkdir(parents=True)
        create_network()
        www = self.run_dir / "www"
        www.mkdir()
        for name, directory in self.served.items():
            (www / name).symlink_to(directory)
        self._http = self._start([sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", HOST_ADDRESS,
                                  "--directory", str(www)], "http")
        overlay = self.run_dir / "overlay.qcow2"
        if self.kept_overlay is not None:
            shutil.move(self.kept_overlay, overlay)
        else:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image.disk),
                            str(overlay)], check=True, capture_output=True)
        start = time.monotonic()
        self._qemu = self._start(qemu_argv(self.image, overlay, self.console, self.resources, self.drives), "qemu")
        self.log(f"[guest] qemu pid {self._qemu.pid}: {self.resources.cpus} vCPUs, "
                 f"{self.resources.memory_mib} MiB; console {self.console}")
        while True:
            if self._qemu.poll() is not None:
                raise GuestError(f"qemu exited with {self._qemu.returncode}; see {self.run_dir / 'qemu.log'} "
                                 f"and {self.console}")
            try:
                if self.run("true", timeout=15, check=False).returncode == 0:
                    break
            except GuestError:  # sshd accepted but did not answer in time: still booting
                pass
            if time.monotonic() - start > boot_timeout:
                raise GuestError(f"no SSH answer from {GUEST_ADDRESS} after {boot_timeout:.0f} s; see {self.console}")
            time.sleep(2)
        self.timings["boot"] = time.monotonic() - start
        self.log(f"[guest] SSH answers {self.timings['boot']:.0f} s after qemu started")

    def _start(self, argv: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.run_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=enter_netns, start_new_session=True)
        log.close()
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        return proc

    # --- using it -----------------------------------------------------------------------------

    def run(self, command: str, timeout: float = 600.0, check: bool = True, log_to: Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run the shell ``command`` as root in the guest; output to ``log_to`` (streamed) or captured.

        Raises
        ------
        GuestError
            When ``check`` and it exits non-zero (with the output's last lines), or on timeout.
        """
        argv = ssh_argv(self.image.ssh_key, command)
        try:
            if log_to is None:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=enter_netns)
            else:
                with log_to.open("a") as out:
                    out.write(f"\n$ {command}\n")
                    out.flush()
                    proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                          preexec_fn=enter_netns)
                proc.stdout = "\n".join(log_to.read_text(errors="replace").splitlines()[-40:])
        except subprocess.TimeoutExpired:
            raise GuestError(f"`{command}` in the guest took longer than {timeout:.0f} s"
                             + (f"; see {log_to}" if log_to else "")) from None
        if check and proc.returncode != 0:
            tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-25:])
            raise GuestError(f"`{command}` in the guest exited {proc.returncode}:\n{tail}")
        return proc

    def copy_in(self, source: Path, dest: str, exclude: Sequence[str] = ()) -> float:
        """Copy the directory ``source`` to ``dest`` in the guest (``tar`` over SSH); return seconds."""
        start = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", str(source), *(f"--exclude={e}" for e in exclude), "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        assert tar.stdout is not None
        unpack = subprocess.run(ssh_argv(self.image.ssh_key, f"mkdir -p {shlex.quote(dest)} && "
                                                            f"tar -C {shlex.quote(dest)} -xf -"),
                                stdin=tar.stdout, capture_output=True, text=True, preexec_fn=enter_netns)
        tar.stdout.close()
        if tar.wait() != 0 or unpack.returncode != 0:
            raise GuestError(f"copying {source} to the guest's {dest} failed: {unpack.stderr.strip()[-500:]}")
        return time.monotonic() - start

    def copy_out(self, path: str, dest: Path) -> None:
        """Copy the guest's file or directory ``path`` into the host directory ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        parent, name = os.path.split(path.rstrip("/"))
        pack = subprocess.Popen(ssh_argv(self.image.ssh_key, f"tar -C {shlex.quote(parent)} -cf - {shlex.quote(name)}"),
                                stdout=subprocess.PIPE, preexec_fn=enter_netns)
        assert pack.stdout is not None
        unpack = subprocess.run(["tar", "-C", str(dest), "-xf", "-"], stdin=pack.stdout, capture_output=True)
        pack.stdout.close()
        if pack.wait() != 0 or unpack.returncode != 0:
            raise GuestError(f"copying the guest's {path} out failed")

    # --- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Power the guest off (SIGKILL to qemu after 60 s), stop the server, delete namespace and overlay."""
        if self._qemu is not None and self._qemu.poll() is None:
            try:
                # poweroff.target through PID 1 itself: `systemctl poweroff` asks logind over D-Bus first
                self.run("systemctl --no-block start poweroff.target", timeout=15, check=False)
            except GuestError:
                pass
            try:
                self._qemu.wait(60)
            except subprocess.TimeoutExpired:
                self._qemu.kill()
                self._qemu.wait()
        if self._http is not None and self._http.poll() is None:
            self._http.kill()
            self._http.wait()
        self._qemu = self._http = None
        if NETNS in netns.listnetns():
            netns.remove(NETNS)
        if self.keep_overlay is not None and (self.run_dir / "overlay.qcow2").exists():
            shutil.move(self.run_dir / "overlay.qcow2", self.keep_overlay)
            self.log(f"[guest] kept the overlay: {self.keep_overlay}")
        keep = RUN_DIR.parent / "lkt-guest-last"  # the console and logs of the last boot stay for a post-mortem
        if self.run_dir.is_dir():
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
            for log in self.run_dir.glob("*.log"):
                shutil.copy2(log, keep / log.name)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
