"""Two network namespaces of the kit joined by one veth pair: the smallest network to try a data path on.

The tests and benchmarks of a tunnel (WireGuard) or an encapsulation (flannel's VXLAN) need two
"hosts" that reach each other and nothing else, without a whole test bed. Both ends are made
inside the namespaces (the veth never appears in the host's), and removing the namespaces
removes the veth with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import NetNS, netns


@dataclass(frozen=True)
class NetPair:
    """Two namespaces ``names``, joined by a veth whose ends are ``links``, addressed ``addresses``/``prefixlen``."""

    names: tuple[str, str]
    addresses: tuple[str, str]
    links: tuple[str, str] = ("eth0", "eth0")
    prefixlen: int = 24


def remove(pair: NetPair) -> None:
    """Remove both namespaces (and so the veth) if they exist; idempotent."""
    for name in pair.names:
        if name in netns.listnetns():
            netns.remove(name)


def create(pair: NetPair) -> None:
    """Create both namespaces, the veth between them, its addresses; every link up (``lo`` too)."""
    for name in pair.names:
        netns.create(name)
    with NetNS(pair.names[0]) as ns:
        ns.link("add", ifname=pair.links[0], kind="veth", peer={"ifname": pair.links[1], "net_ns_fd": pair.names[1]})
    for name, link, address in zip(pair.names, pair.links, pair.addresses):
        with NetNS(name) as ns:
            index = ns.link_lookup(ifname=link)[0]
            ns.addr("add", index=index, address=address, prefixlen=pair.prefixlen)
            ns.link("set", index=index, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


@contextmanager
def joined(pair: NetPair) -> Iterator[NetPair]:
    """``pair`` made afresh (a previous run's leftovers removed first) for the block, removed after it."""
    remove(pair)
    try:
        create(pair)
        yield pair
    finally:
        remove(pair)
