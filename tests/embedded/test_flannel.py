"""flannel's VXLAN data path between the VMs of one cluster (:mod:`labkit.testbed.embedded.flannel`).

First on two bare network namespaces (no test bed: what ``apply`` programs, idempotence, a lost
device restored), then on a real 3-VM cluster: every node programmed as planned, pods on
different nodes ping each other with the packets crossing the lab network as VXLAN (counters
and a capture of UDP 8472), the path back after a link fault, nothing left after ``down()``.
The cluster tests share one cluster and run in file order; teardown runs last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded_helpers import require_embedded
from pyroute2 import IPRoute, netns

from labkit import images
from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec, flannel, netpair
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.pods import PodHost, probe_pod, start_pods

pytestmark = pytest.mark.embedded

CLUSTER = "fl"
VMS = ("fl-a", "fl-b", "fl-c")
NAMESPACE = "labkit-flannel-test"

#: Counts, on a VM's lab interface, the VXLAN frames (UDP 8472) carrying ICMP between two pod addresses.
CAPTURE = r"""
import json, socket, struct, sys, time
a, b, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind(("eth0", 0))
sock.settimeout(0.2)
seen, outer, vnis = 0, set(), set()
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        frame = sock.recv(65535)
    except socket.timeout:
        continue
    if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
        continue
    udp = 14 + (frame[14] & 0x0F) * 4
    if struct.unpack("!H", frame[udp + 2:udp + 4])[0] != 8472:
        continue
    vxlan = udp + 8
    inner = vxlan + 8 + 14  # VXLAN header, inner Ethernet
    if frame[vxlan + 8 + 12:vxlan + 8 + 14] != b"\x08\x00" or frame[inner + 9] != 1:  # inner IPv4 ICMP
        continue
    pair = {socket.inet_ntoa(frame[inner + 12:inner + 16]), socket.inet_ntoa(frame[inner + 16:inner + 20])}
    if pair == {a, b}:
        seen += 1
        outer.add((socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])))
        vnis.add(int.from_bytes(frame[vxlan + 4:vxlan + 7], "big"))
print(json.dumps({"frames": seen, "outer": sorted(outer), "vnis": sorted(vnis)}))
"""


# --- bare network namespaces --------------------------------------------------------------------

@pytest.fixture()
def two_netns() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth (``eth0`` in each, 10.99.0.11/.12), removed afterwards."""
    with netpair.joined(netpair.NetPair(("lkt-flannel-test-a", "lkt-flannel-test-b"),
                                        ("10.99.0.11", "10.99.0.12"))) as pair:
        yield pair.names


def test_apply_programs_the_plan_idempotently_and_restores_a_lost_device(two_netns: tuple[str, str]) -> None:
    nets = flannel.plan([flannel.Member("a", "10.99.0.11", "10.42.0.0/24"),
                         flannel.Member("b", "10.99.0.12", "10.42.1.0/24")])
    for name, node in zip(two_netns, ("a", "b")):
        flannel.apply(name, nets[node])
        flannel.apply(name, nets[node])  # a second time changes nothing
        assert flannel.observe(name, nets[node]) == nets[node]
    a = two_netns[0]
    # host to remote pod subnet: out of flannel.1 from its /32 (the node's own traffic), answered by b's flannel.1
    ping = subprocess.run(["ip", "netns", "exec", a, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "10.42.1.0"],
                          capture_output=True, text=True, timeout=10)
    assert " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    assert (counters := flannel.counters(a)) is not None and min(counters) >= 2
    # a device set down loses its routes and neighbours: apply() puts them back
    subprocess.run(["ip", "-n", a, "link", "set", "flannel.1", "down"], check=True)
    assert flannel.observe(a, nets["a"]).peers == ()
    flannel.apply(a, nets["a"])
    assert flannel.observe(a, nets["a"]) == nets["a"]
    # a flannel.1 of another configuration is replaced (flannel's ensureLink)
    subprocess.run(["ip", "-n", a, "link", "del", "flannel.1"], check=True)
    subprocess.run(["ip", "-n", a, "link", "add", "flannel.1", "type", "vxlan", "id", "7", "dstport", "8472",
                    "local", "10.99.0.11", "dev", "eth0"], check=True)
    flannel.apply(a, nets["a"])
    assert flannel.observe(a, nets["a"]) == nets["a"]


def test_apply_names_a_missing_lab_interface(two_netns: tuple[str, str]) -> None:
    (net,) = flannel.plan([flannel.Member("a", "10.99.0.11", "10.42.0.0/24")]).values()
    subprocess.run(["ip", "-n", two_netns[0], "link", "set", "eth0", "name", "lab"], check=True)
    with pytest.raises(flannel.FlannelError, match="node a .* no lab interface eth0"):
        flannel.apply(two_netns[0], net)


# --- a real 3-VM cluster ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_node() -> Iterator[EmbeddedTestbed]:
    """A running cluster ``fl`` of three VMs (k3s' default pod network: flannel, vxlan), no DNS."""
    require_embedded()
    env = EmbeddedEnv(clusters=(ClusterSpec(CLUSTER, tuple(VmSpec(v) for v in VMS)),), dns=False)
    tb = EmbeddedTestbed()
    try:
        tb.up(env)
        yield tb
    finally:
        tb.down()


@pytest.fixture(scope="module")
def probes(three_node: EmbeddedTestbed) -> dict[str, PodHost]:
    """A probe pod (``ping``) on each VM, by VM name."""
    try:
        image = three_node.load_image(CLUSTER, "probe")
    except images.ImageError as exc:
        pytest.skip(f"probe image (ping) cannot be built here: {exc}")
    pods = start_pods(three_node.kube(CLUSTER), NAMESPACE, [probe_pod(f"probe-{vm}", image, node=vm) for vm in VMS])
    return dict(zip(VMS, pods))


def capture_while(tb: EmbeddedTestbed, vm: str, a: str, b: str, seconds: float, action) -> dict:  # noqa: ANN001
    """Run :data:`CAPTURE` on ``vm``'s lab interface for ``seconds`` while ``action()`` runs; its JSON result."""
    result: dict = {}

    def capture() -> None:
        res = tb.host(vm).run([sys.executable, "-c", CAPTURE, a, b, str(seconds)], timeout=seconds + 30)
        result.update(json.loads(res.stdout) if res.returncode == 0 else {"error": res.stderr})

    thread = threading.Thread(target=capture)
    thread.start()
    time.sleep(1.0)  # the capture's socket is open well before the first packet
    action()
    thread.join()
    return result


def vxlan_packets(vm: str) -> tuple[int, int]:
    """``flannel.1``'s (TX, RX) packets in VM ``vm`` (fails the test when it has none)."""
    found = flannel.counters(vmlib.netns_name(vm))
    assert found is not None, f"{vm} has no flannel.1"
    return found


def test_every_node_is_programmed_as_planned(three_node: EmbeddedTestbed) -> None:
    cluster = three_node.cluster(CLUSTER)
    for vm in VMS:
        planned = cluster.pod_network[vm]
        assert planned.device is not None and len(planned.peers) == 2
        assert flannel.observe(vmlib.netns_name(vm), planned) == planned


def test_pods_on_different_nodes_ping_each_other_over_vxlan(three_node: EmbeddedTestbed,
                                                            probes: dict[str, PodHost]) -> None:
    a, b, c = (probes[vm] for vm in VMS)
    for vm in VMS:  # the pods' interfaces got flannel's MTU from the CNI config
        mtu = probes[vm].run(["cat", "/sys/class/net/eth0/mtu"]).stdout.strip()
        assert mtu == "1450", f"pod on {vm}: MTU {mtu}"
    before = {vm: vxlan_packets(vm) for vm in VMS}
    pings: dict[str, object] = {}
    seen = capture_while(three_node, "fl-a", a.address, b.address, 6.0,
                         lambda: pings.update(ab=a.ping(b.address, count=10, interval=0.2)))
    pings.update(bc=b.ping(c.address, count=5, interval=0.2), ca=c.ping(a.address, count=5, interval=0.2))
    assert {k: p.received for k, p in pings.items()} == {"ab": 10, "bc": 5, "ca": 5}  # type: ignore[attr-defined]
    after = {vm: vxlan_packets(vm) for vm in VMS}
    for vm in VMS:  # each node sent and received at least its 10 encapsulated packets
        tx, rx = (after[vm][i] - before[vm][i] for i in (0, 1))
        assert tx >= 10 and rx >= 10, f"{vm}: flannel.1 sent {tx}, received {rx}"
    lab = {vm: three_node.host(vm).address for vm in VMS}
    # 10 requests out of fl-a, 10 replies in, each a VXLAN frame (VNI 1) between the two VMs' lab addresses
    assert seen.get("frames", 0) >= 20, seen
    assert seen["vnis"] == [1] and seen["outer"] == sorted([[lab["fl-a"], lab["fl-b"]], [lab["fl-b"], lab["fl-a"]]])


def test_the_vxlan_path_survives_a_link_fault(three_node: EmbeddedTestbed, probes: dict[str, PodHost]) -> None:
    a, b = probes["fl-a"], probes["fl-b"]
    host = three_node.host("fl-b")
    host.iface_down()
    try:
        assert a.ping(b.address, count=3, interval=0.2, timeout=1).received == 0  # the path is the lab link
    finally:
        host.iface_up()
    cluster = three_node.cluster(CLUSTER)
    for vm in VMS:
        assert flannel.observe(vmlib.netns_name(vm), cluster.pod_network[vm]) == cluster.pod_network[vm]
    before = vxlan_packets("fl-b")
    assert a.ping(b.address, count=5, interval=0.2).received == 5
    tx, rx = (n - o for n, o in zip(vxlan_packets("fl-b"), before))
    assert tx >= 5 and rx >= 5


def test_teardown_leaves_nothing_of_the_pod_network(three_node: EmbeddedTestbed) -> None:
    def host_side() -> tuple[list[str], list[str]]:
        """flannel devices and UDP 8472 sockets in the host's own network namespace."""
        with IPRoute() as ip:
            links = [lk.get("ifname") for lk in ip.get_links() if lk.get("ifname", "").startswith("flannel.")]
        sockets = [line for line in Path("/proc/net/udp").read_text().splitlines()[1:]
                   if line.split()[1].endswith(f":{flannel.PORT:04X}")]
        return links, sockets

    assert host_side() == ([], [])  # everything of it lives in the VMs
    three_node.down()
    assert not any(vmlib.netns_name(vm) in netns.listnetns() for vm in VMS)
    assert vmlib.leftovers().empty()
    assert host_side() == ([], [])
