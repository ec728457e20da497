"""k3s' default pod network between the nodes of one cluster: flannel's data path, programmed by the kit.

A k3s node runs flannel with the ``vxlan`` backend. flannel itself cannot be built here (the Go
module proxy refuses one of its dependencies: docs/embedded.md, "Pod network between the VMs"),
so the kit programs through netlink (pyroute2) what flannel's vxlan backend
(``pkg/backend/vxlan`` of flannel v0.28) programs on each node, taking the nodes from the
cluster spec instead of flannel's subnet leases:

- the device ``flannel.1``: a VXLAN device with VNI 1, UDP port 8472 (the kernel's default, which
  flannel keeps), the node's lab address as local address, the lab interface as underlay,
  learning off, MTU = the lab interface's MTU - 50 (flannel's rule), a locally administered MAC;
  its address is the node's pod subnet's network address as a /32 (the source of the node's own
  traffic to other nodes' pods); it is up;
- for every other node of the cluster, in flannel's order (``handleSubnetEvents``, lease added):
  a permanent neighbour entry (the other node's ``flannel.1`` address -> its MAC), a permanent FDB
  entry (that MAC -> the other node's lab address) and a route to the other node's pod subnet via
  its ``flannel.1`` address, on-link, out of ``flannel.1``.

The ``host-gw`` backend (a route to each other node's pod subnet via its lab address, no
encapsulation) is kept for comparisons (``benchmarks/bench_pod_network.py``); it is what the kit
programmed before and what flannel's host-gw backend programs.

Everything lives in the VMs' network namespaces and goes with them. The cluster's nodes are fixed
for its lifetime, so entries are only ever added or replaced (flannel also deletes the entries of
a node whose lease expires).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import NetNS
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_PERMANENT
from pyroute2.netlink.rtnl.rtmsg import RTNH_F_ONLINK

from labkit.testbed.base import TestbedError
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.spec import FLANNEL_BACKENDS as BACKENDS

#: k3s' default (the thesis' clusters).
DEFAULT_BACKEND = "vxlan"

VNI = 1
#: flannel leaves the port to the kernel, whose default is 8472 (not IANA's 4789).
PORT = 8472
DEVICE = f"flannel.{VNI}"
#: The VMs' lab interface (flannel's ``--iface``).
LAB_IFNAME = "eth0"
#: A veth's MTU, which the VMs' lab interfaces keep.
LAB_MTU = 1500
#: Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers: flannel's ``encapOverhead``.
ENCAP_OVERHEAD = 50
_MAIN_TABLE = 254
_AF_INET = 2


class FlannelError(TestbedError):
    """The pod network of a node could not be programmed; the message names the node and what failed."""


@dataclass(frozen=True)
class Member:
    """A node as flannel sees it through its subnet lease: its name, public (lab) address and pod subnet."""

    name: str
    lab_address: str
    pod_subnet: str


@dataclass(frozen=True)
class Device:
    """The ``flannel.1`` VXLAN device of one node."""

    name: str
    vni: int
    port: int
    local: str
    learning: bool
    mtu: int
    mac: str
    address: str  # "<pod subnet's network address>/32"


@dataclass(frozen=True)
class Peer:
    """What a node programs for another node of its cluster.

    ``vxlan``: neighbour ``gateway`` -> ``mac`` and FDB ``mac`` -> ``lab_address`` on ``flannel.1``,
    route ``subnet`` via ``gateway`` on-link. ``host-gw``: route ``subnet`` via ``lab_address``
    (``gateway`` and ``mac`` unused).
    """

    name: str
    subnet: str
    gateway: str
    mac: str
    lab_address: str


@dataclass(frozen=True)
class NodeNetwork:
    """Everything one node's pod network needs: the backend, its device (``vxlan``) and its peers."""

    node: str
    backend: str
    pod_mtu: int
    device: Device | None
    peers: tuple[Peer, ...]


# --- the pure part: what each node gets ---------------------------------------------------------

def vtep_mac(lab_address: str) -> str:
    """The MAC of a node's ``flannel.1``: ``0a:58`` followed by the node's lab IPv4 address.

    flannel draws a random locally administered unicast MAC once and keeps it in the Node's
    ``flannel.alpha.coreos.com/backend-data`` annotation, so it is stable for the node's life.
    Derived from the lab address (unique on the lab network), the kit's is stable too, with no
    annotation to read back; ``0x0a`` is unicast and locally administered, as flannel's are.
    """
    octets = ipaddress.IPv4Address(lab_address).packed
    return ":".join(f"{b:02x}" for b in (0x0A, 0x58, *octets))


def vtep_address(pod_subnet: str) -> str:
    """The address of a node's ``flannel.1``: its pod subnet's network address (``10.42.1.0``)."""
    return str(ipaddress.ip_network(pod_subnet).network_address)


def pod_mtu(backend: str, lab_mtu: int = LAB_MTU) -> int:
    """The MTU flannel gives pods (``FLANNEL_MTU`` in ``subnet.env``, the CNI bridge's ``mtu``)."""
    return lab_mtu - ENCAP_OVERHEAD if backend == "vxlan" else lab_mtu


def plan(members: Sequence[Member], backend: str = DEFAULT_BACKEND,
         lab_mtu: int = LAB_MTU) -> dict[str, NodeNetwork]:
    """What every node of one cluster programs, by node name.

    Raises
    ------
    FlannelError
        On an unknown backend, or two members sharing a name, lab address or pod subnet.
    """
    if backend not in BACKENDS:
        raise FlannelError(f"flannel backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    for field in ("name", "lab_address", "pod_subnet"):
        values = [getattr(m, field) for m in members]
        if len(set(values)) != len(values):
            raise FlannelError(f"two nodes share a {field.replace('_', ' ')}: {values}")
    mtu = pod_mtu(backend, lab_mtu)
    out = {}
    for me in members:
        device = (Device(DEVICE, VNI, PORT, me.lab_address, False, mtu, vtep_mac(me.lab_address),
                         f"{vtep_address(me.pod_subnet)}/32") if backend == "vxlan" else None)
        peers = tuple(Peer(o.name, o.pod_subnet, vtep_address(o.pod_subnet), vtep_mac(o.lab_address), o.lab_address)
                      for o in members if o is not me)
        out[me.name] = NodeNetwork(me.name, backend, mtu, device, peers)
    return out


# --- programming a node (netlink, inside its network namespace) ---------------------------------

def apply(netns: str, net: NodeNetwork) -> None:
    """Program ``net`` in network namespace ``netns`` (idempotent: adds what is missing, replaces what differs).

    Called when a cluster starts and again after a link fault (``EmbeddedHost.iface_up``).

    Raises
    ------
    FlannelError
        When the lab interface is missing or its MTU is not the one planned, or netlink refuses an entry.
    """
    try:
        with NetNS(netns) as ns:
            lab = _lab_index(ns, netns, net)
            if net.device is None:  # host-gw
                for peer in net.peers:
                    ns.route("replace", dst=peer.subnet, gateway=peer.lab_address, oif=lab)
                return
            dev = _ensure_device(ns, net.device, lab)
            for peer in net.peers:  # flannel's order: neighbour, FDB, then the route that needs them
                ns.neigh("replace", ifindex=dev, dst=peer.gateway, lladdr=peer.mac, state=NUD_PERMANENT)
                ns.fdb("replace", ifindex=dev, lladdr=peer.mac, dst=peer.lab_address, state=NUD_PERMANENT,
                       flags=NTF_SELF)
                ns.route("replace", dst=peer.subnet, gateway=peer.gateway, oif=dev, flags=RTNH_F_ONLINK)
    except NetlinkError as exc:
        raise FlannelError(f"node {net.node} ({netns}): programming flannel's {net.backend} data path: "
                           f"{exc}") from exc
    if net.device is not None:
        _no_router_advertisements(netns, net.device.name)


def _lab_index(ns: NetNS, netns: str, net: NodeNetwork) -> int:
    found = ns.link_lookup(ifname=LAB_IFNAME)
    if not found:
        raise FlannelError(f"node {net.node} ({netns}) has no lab interface {LAB_IFNAME}")
    mtu = ns.get_links(found[0])[0].get("mtu")
    expected = net.pod_mtu + (ENCAP_OVERHEAD if net.backend == "vxlan" else 0)
    if mtu != expected:
        raise FlannelError(f"node {net.node} ({netns}): {LAB_IFNAME} has MTU {mtu}, the plan assumed {expected}")
    return found[0]


def _ensure_device(ns: NetNS, device: Device, lab: int) -> int:
    """Create ``flannel.1`` unless a compatible one exists (flannel's ``ensureLink``); set MAC, MTU, address, up."""
    found = ns.link_lookup(ifname=device.name)
    if found and _incompatible(ns.get_links(found[0])[0], device, lab):
        ns.link("del", index=found[0])
        found = []
    if not found:
        ns.link("add", ifname=device.name, kind="vxlan", vxlan_id=device.vni, vxlan_link=lab,
                vxlan_local=device.local, vxlan_port=device.port, vxlan_learning=int(device.learning),
                address=device.mac, mtu=device.mtu)
        found = ns.link_lookup(ifname=device.name)
    index = found[0]
    link = ns.get_links(index)[0]
    if (link.get("address"), link.get("mtu")) != (device.mac, device.mtu):
        ns.link("set", index=index, address=device.mac, mtu=device.mtu)
    address, prefixlen = device.address.split("/")
    for old in ns.get_addr(index=index, family=_AF_INET):
        if (old.get("address"), old["prefixlen"]) != (address, int(prefixlen)):
            ns.addr("del", index=index, address=old.get("address"), prefixlen=old["prefixlen"])
    try:
        ns.addr("add", index=index, address=address, prefixlen=int(prefixlen))
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
    ns.link("set", index=index, state="up")
    return index


def _incompatible(link: object, device: Device, lab: int) -> bool:
    info = link.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
        return True
    data = info.get_attr("IFLA_INFO_DATA")
    return (data.get_attr("IFLA_VXLAN_ID"), data.get_attr("IFLA_VXLAN_LOCAL"), data.get_attr("IFLA_VXLAN_PORT"),
            data.get_attr("IFLA_VXLAN_LINK"), bool(data.get_attr("IFLA_VXLAN_LEARNING"))) != (
        device.vni, device.local, device.port, lab, device.learning)


def _no_router_advertisements(netns: str, ifname: str) -> None:
    """``accept_ra = 0`` on the device, as flannel sets it (skipped when the VM has no IPv6)."""
    key = f"net/ipv6/conf/{ifname}/accept_ra"

    def write() -> None:
        path = Path("/proc/sys", key)
        if path.parent.is_dir():
            path.write_text("0")

    vmlib.run_in_netns(netns, write)


# --- reading a node back (tests, diagnostics) -------------------------------------------------

def observe(netns: str, expected: NodeNetwork) -> NodeNetwork:
    """What the kernel of ``netns`` holds of the ``vxlan`` data path, in :class:`NodeNetwork`'s terms.

    Equal to ``expected`` (:func:`plan`'s) when the node is programmed as planned. Peers are the
    on-link routes out of ``flannel.1``, each with the neighbour entry of its gateway and the FDB
    entry of that MAC (empty fields where one is missing), named after the expected peer of the
    same subnet (else by the subnet) and in ``expected``'s order (others after them).

    Raises
    ------
    FlannelError
        When ``expected`` is not a ``vxlan`` node (host-gw's routes are not told apart from others).
    """
    if expected.device is None:
        raise FlannelError(f"node {expected.node}: only the vxlan data path can be observed")
    with NetNS(netns) as ns:
        found = ns.link_lookup(ifname=expected.device.name)
        if not found:
            return NodeNetwork(expected.node, expected.backend, 0, None, ())
        index = found[0]
        link = ns.get_links(index)[0]
        data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        addrs = [f"{a.get('address')}/{a['prefixlen']}" for a in ns.get_addr(index=index, family=_AF_INET)]
        device = Device(link.get("ifname"), data.get_attr("IFLA_VXLAN_ID"), data.get_attr("IFLA_VXLAN_PORT"),
                        data.get_attr("IFLA_VXLAN_LOCAL"), bool(data.get_attr("IFLA_VXLAN_LEARNING")),
                        link.get("mtu"), link.get("address"), ",".join(addrs))
        neigh = {n.get("dst"): n.get("lladdr") for n in ns.get_neighbours(ifindex=index, family=_AF_INET)
                 if n["state"] == NUD_PERMANENT}
        fdb = {n.get("lladdr"): n.get("dst") for n in ns.fdb("dump", ifindex=index)
               if n["state"] == NUD_PERMANENT and n["flags"] & NTF_SELF and n.get("dst")}
        routes = {f"{r.get('dst')}/{r['dst_len']}": r.get("gateway")
                  for r in ns.get_routes(family=_AF_INET, table=_MAIN_TABLE, oif=index)
                  if r.get("gateway") and r["flags"] & RTNH_F_ONLINK}
    names = {p.subnet: p.name for p in expected.peers}
    order = {p.subnet: i for i, p in enumerate(expected.peers)}
    peers = [Peer(names.get(subnet, subnet), subnet, gateway, neigh.get(gateway, ""),
                  fdb.get(neigh.get(gateway, ""), "")) for subnet, gateway in routes.items()]
    peers.sort(key=lambda p: (order.get(p.subnet, len(order)), p.subnet))
    return NodeNetwork(expected.node, expected.backend, device.mtu, device, tuple(peers))


def counters(netns: str) -> tuple[int, int] | None:
    """``flannel.1``'s (TX, RX) packet counters in ``netns`` (``None``: it has no ``flannel.1``)."""
    with NetNS(netns) as ns:
        found = ns.link_lookup(ifname=DEVICE)
        if not found:
            return None
        stats = ns.get_links(found[0])[0].get_attr("IFLA_STATS64")
    return stats["tx_packets"], stats["rx_packets"]
