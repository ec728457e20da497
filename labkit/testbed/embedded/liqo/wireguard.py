"""Userspace WireGuard tunnels between network namespaces (Debian ``wireguard-go`` + ``wg``).

One :class:`Tunnel` is one peering's tunnel between two gateways (the root VMs of two
clusters). Each side runs ``wireguard-go -f <ifname>`` inside its network namespace; ``wg``
configures it through the UAPI socket ``/var/run/wireguard/<ifname>.sock``. Those sockets
share one directory on the host (the embedded VMs do not make ``/run/wireguard`` private),
so interface names are unique per host: ``lkt-wg<n>``. Addresses and routes are set with
pyroute2.

Keys are generated per tunnel with ``wg genkey``/``wg pubkey``, kept in memory and handed to
``wg set`` on its standard input (``/dev/stdin``): they are never written to a file, a log
or a result.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import NetNS

from labkit import timescale
from labkit.testbed.embedded import linux

#: Liqo's gateway port; the n-th tunnel of a gateway listens on ``LIQO_PORT + n``.
LIQO_PORT = 5871
#: Where wireguard-go puts its control sockets.
SOCKET_DIR = Path("/var/run/wireguard")
#: Network of the tunnels' inner addresses: tunnel n uses ``169.254.<100 + n // 64>.<4 (n % 64)>/30``.
TUNNEL_NETWORK = ipaddress.ip_network("169.254.100.0/22")
#: Prefix of the interfaces (the kit's sweeper finds ``lkt-*`` links).
IF_PREFIX = "lkt-wg"

Enter = Callable[[], None]


class WireGuardError(RuntimeError):
    """A tunnel could not be created or configured; the message says which side and why."""


@dataclass(frozen=True)
class Side:
    """One gateway of a tunnel.

    Attributes
    ----------
    netns
        Network namespace the interface lives in (``lkt-<vm>``).
    address
        Underlay address the peer sends UDP to (the VM's lab address).
    port
        UDP listen port.
    routes
        CIDRs routed into the tunnel from this side (the peer's pod and service CIDRs).
    enter
        Runs in the forked ``wireguard-go`` before exec: enters the namespace (and the VM's
        cgroup, so the testbed's teardown finds it). Default: join ``netns`` only.
    """

    netns: str
    address: str
    port: int = LIQO_PORT
    routes: tuple[str, ...] = ()
    enter: Enter | None = field(default=None, compare=False)


def inner_addresses(index: int) -> tuple[str, str]:
    """Inner addresses (with /30) of tunnel ``index``: ``(a side, b side)``."""
    if not 0 <= index < TUNNEL_NETWORK.num_addresses // 4:
        raise WireGuardError(f"tunnel index {index} out of range (at most {TUNNEL_NETWORK.num_addresses // 4})")
    base = TUNNEL_NETWORK.network_address + 4 * index
    return f"{base + 1}/30", f"{base + 2}/30"


def gen_keypair() -> tuple[str, str]:
    """A fresh (private, public) key pair from ``wg genkey | wg pubkey``; nothing touches disk."""
    private = _wg(["genkey"]).strip()
    public = _wg(["pubkey"], stdin=private + "\n").strip()
    return private, public


def _wg(args: Sequence[str], stdin: str | None = None) -> str:
    proc = subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        # never echo stdin: it may hold a private key
        raise WireGuardError(f"`wg {args[0]}` failed: {proc.stderr.strip()}")
    return proc.stdout


def _enter_netns(name: str) -> Enter:
    def enter() -> None:
        linux.setns(f"/run/netns/{name}", linux.CLONE_NEWNET)
    return enter


class Tunnel:
    """A WireGuard tunnel between two sides; :meth:`up` creates it, :meth:`down` removes it.

    Parameters
    ----------
    index
        Unique per host while it exists: names the interfaces ``lkt-wg<2 index>`` /
        ``lkt-wg<2 index + 1>`` and picks the inner /30.
    a, b
        The two gateways.
    log_dir
        Where wireguard-go's output goes (``LOG_LEVEL=error``: it never logs keys).
    keepalive
        WireGuard persistent keepalive in seconds (Liqo sets 10 s... the kit uses 5 s so a
        restored link recovers quickly).
    """

    def __init__(self, index: int, a: Side, b: Side, log_dir: Path, keepalive: int = 5) -> None:
        self.index = index
        self.a, self.b = a, b
        self.log_dir = log_dir
        self.keepalive = keepalive
        self.ifnames = (f"{IF_PREFIX}{2 * index}", f"{IF_PREFIX}{2 * index + 1}")
        self.inner = inner_addresses(index)
        self._procs: list[subprocess.Popen] = []

    @property
    def peer_ips(self) -> tuple[str, str]:
        """Inner address each side pings: ``(b's address, as seen from a; a's, from b)``."""
        return self.inner[1].split("/")[0], self.inner[0].split("/")[0]

    def up(self, timeout: float = 10.0) -> None:
        """Start both wireguard-go processes, configure keys, peers, addresses and routes.

        Raises
        ------
        WireGuardError
            When an interface does not appear within ``timeout`` or ``wg`` refuses a setting.
        """
        keys = (gen_keypair(), gen_keypair())
        sides = (self.a, self.b)
        for side, ifname in zip(sides, self.ifnames):
            self._start(side, ifname)
        for i, (side, ifname) in enumerate(zip(sides, self.ifnames)):
            self._wait_socket(ifname, timeout)
            peer, peer_key = sides[1 - i], keys[1 - i][1]
            allowed = ",".join([f"{self.inner[1 - i].split('/')[0]}/32", *side.routes])
            _wg(["set", ifname, "private-key", "/dev/stdin", "listen-port", str(side.port),
                 "peer", peer_key, "endpoint", f"{peer.address}:{peer.port}", "allowed-ips", allowed,
                 "persistent-keepalive", str(self.keepalive)], stdin=keys[i][0] + "\n")
            self._address(side, ifname, self.inner[i])
        del keys

    def _start(self, side: Side, ifname: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        enter = side.enter or _enter_netns(side.netns)

        def preexec() -> None:
            os.setsid()
            enter()

        with (self.log_dir / f"wireguard-go-{ifname}.log").open("ab") as out:
            self._procs.append(subprocess.Popen(
                ["wireguard-go", "-f", ifname], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_LEVEL": "error"},
                preexec_fn=preexec, close_fds=True))

    def _wait_socket(self, ifname: str, timeout: float) -> None:
        sock = SOCKET_DIR / f"{ifname}.sock"
        deadline = timescale.deadline(timeout)
        while not sock.exists():
            dead = [p for p in self._procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                log = self.log_dir / f"wireguard-go-{ifname}.log"
                tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
                raise WireGuardError(f"wireguard-go did not create {sock} ({'exited' if dead else 'timeout'}); "
                                     f"{log}: {tail}")
            time.sleep(0.05)

    @staticmethod
    def _address(side: Side, ifname: str, inner: str) -> None:
        address, prefix = inner.split("/")
        with NetNS(side.netns) as ns:
            idx = ns.link_lookup(ifname=ifname)
            if not idx:
                raise WireGuardError(f"interface {ifname} missing in {side.netns}")
            if address not in {a.get("address") for a in ns.get_addr(index=idx[0])}:
                ns.addr("add", index=idx[0], address=address, prefixlen=int(prefix))
            ns.link("set", index=idx[0], state="up")
            for cidr in side.routes:
                ns.route("replace", dst=cidr, oif=idx[0])

    def down(self) -> None:
        """Stop both wireguard-go processes and remove the interfaces and sockets (idempotent)."""
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=3)
        self._procs.clear()
        for side, ifname in zip((self.a, self.b), self.ifnames):
            _delete_link(side.netns, ifname)
            (SOCKET_DIR / f"{ifname}.sock").unlink(missing_ok=True)

    def transfer(self) -> dict[str, tuple[int, int]]:
        """Bytes (received, sent) per interface, from ``wg show <if> transfer``."""
        out: dict[str, tuple[int, int]] = {}
        for ifname in self.ifnames:
            try:
                line = _wg(["show", ifname, "transfer"]).split()
                out[ifname] = (int(line[1]), int(line[2])) if len(line) >= 3 else (0, 0)
            except WireGuardError:
                out[ifname] = (0, 0)
        return out


def _delete_link(netns_name: str, ifname: str) -> None:
    try:
        with NetNS(netns_name) as ns:
            idx = ns.link_lookup(ifname=ifname)
            if idx:
                ns.link("del", index=idx[0])
    except Exception:  # the namespace is gone, and the interface with it
        pass


def leftover_sockets() -> list[Path]:
    """Control sockets of the kit's interfaces still in :data:`SOCKET_DIR`."""
    return sorted(SOCKET_DIR.glob(f"{IF_PREFIX}*.sock")) if SOCKET_DIR.is_dir() else []
