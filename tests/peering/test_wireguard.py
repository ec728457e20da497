"""A real userspace WireGuard tunnel between two kit network namespaces, and its health check."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import NetNS

from labkit.testbed.embedded import linux, netpair
from labkit.testbed.embedded.liqo import health, wireguard

pytestmark = pytest.mark.embedded

NS_A, NS_B = "lkt-wgt-a", "lkt-wgt-b"
VETH_A, VETH_B = "lkt-wgta", "lkt-wgtb"
ADDR_A, ADDR_B = "10.251.0.1", "10.251.0.2"
PAIR = netpair.NetPair((NS_A, NS_B), (ADDR_A, ADDR_B), links=(VETH_A, VETH_B))
#: A pretend pod CIDR behind side b (its loopback holds one address of it).
POD_B = "10.99.2.0/24"


def _require() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for prog in ("wireguard-go", "wg"):
        if not shutil.which(prog):
            pytest.skip(f"{prog} not installed (Debian wireguard-go / wireguard-tools)")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[wireguard.Tunnel, Path]]:
    """Two namespaces joined by a veth, with a tunnel between them (removed afterwards)."""
    _require()
    tunnel = None
    with netpair.joined(PAIR):
        try:
            with NetNS(NS_B) as ns:  # no dummy module here: the "pod" address sits on lo
                ns.addr("add", index=ns.link_lookup(ifname="lo")[0], address="10.99.2.1", prefixlen=32)
            tunnel = wireguard.Tunnel(7, wireguard.Side(NS_A, ADDR_A, routes=(POD_B,)),
                                      wireguard.Side(NS_B, ADDR_B, routes=()), tmp_path)
            yield tunnel, tmp_path
        finally:
            if tunnel is not None:
                tunnel.down()
        assert not wireguard.leftover_sockets()


def _ping_in(ns: str, target: str, count: int = 2) -> bool:
    proc = subprocess.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", target], capture_output=True,
                          preexec_fn=lambda: linux.setns(f"/run/netns/{ns}", linux.CLONE_NEWNET), timeout=20)
    return proc.returncode == 0


def test_tunnel_carries_traffic_and_keys_stay_in_memory(pair) -> None:  # noqa: ANN001
    tunnel, logs = pair
    start = time.monotonic()
    tunnel.up()
    took = time.monotonic() - start
    peer_of_a, peer_of_b = tunnel.peer_ips
    assert _ping_in(NS_A, peer_of_a) and _ping_in(NS_B, peer_of_b)
    assert _ping_in(NS_A, "10.99.2.1"), "the pod CIDR behind b is routed through the tunnel"
    rx, tx = tunnel.transfer()[tunnel.ifnames[0]]
    assert rx > 0 and tx > 0
    private = subprocess.run(["wg", "show", tunnel.ifnames[0], "private-key"], capture_output=True, text=True).stdout.strip()
    assert private
    for path in logs.rglob("*"):
        if path.is_file():
            assert private not in path.read_text(errors="replace")
    assert took < 5, f"tunnel setup took {took:.1f} s"


def _set_link(ns: str, link: str, state: str) -> None:
    subprocess.run(["ip", "-n", ns, "link", "set", link, state], check=True, timeout=10)


def _check_in_netns(ns: str, target: str, stop: threading.Event, changes: list[tuple[float, str]],
                    interval: float) -> None:
    linux.setns(f"/run/netns/{ns}", linux.CLONE_NEWNET)  # this thread only
    health.run_check(target, lambda s: changes.append((time.monotonic(), s.status)), stop, interval=interval)


def test_health_check_reports_loss_after_threshold(pair) -> None:  # noqa: ANN001
    tunnel, _ = pair
    tunnel.up()
    stop, changes = threading.Event(), []
    thread = threading.Thread(target=_check_in_netns, args=(NS_A, tunnel.peer_ips[0], stop, changes,
                                                             health.PING_INTERVAL_S), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s == health.CONNECTED for _, s in changes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert changes[-1][1] == health.CONNECTED
        down_at = time.monotonic()
        _set_link(NS_B, VETH_B, "down")  # the provider's interface goes down
        deadline = time.monotonic() + 20
        while changes[-1][1] != health.ERROR and time.monotonic() < deadline:
            time.sleep(0.1)
        assert changes[-1][1] == health.ERROR
        delay = changes[-1][0] - down_at
        # 5 losses 2 s apart: between 4 and 5 periods after the cut (+ one ping timeout)
        assert 4 * health.PING_INTERVAL_S - 0.5 <= delay <= 6 * health.PING_INTERVAL_S, delay
        print(f"tunnel down detected after {delay:.2f} s")
        _set_link(NS_B, VETH_B, "up")
        deadline = time.monotonic() + 15
        while changes[-1][1] != health.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert changes[-1][1] == health.CONNECTED
    finally:
        stop.set()
        thread.join(timeout=5)
