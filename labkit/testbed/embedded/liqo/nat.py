"""NAT remapping of colliding pod CIDRs at a gateway (nftables), as Liqo does.

When two peered clusters use overlapping pod CIDRs, each side ``X`` is known to the other by
an *external* CIDR ``E_X`` of the same size. At ``X``'s gateway, for the tunnel interface:

- packets from the tunnel to ``E_X`` are DNATed to ``X``'s pod CIDR (prefix-preserving);
- packets from ``X``'s pods into the tunnel are SNATed to ``E_X``;

replies are translated back by conntrack. The peer routes ``E_X`` into the tunnel. A
clustered database that advertises its own pod IP breaks behind this NAT (thesis 4.2, Liqo
issue 2386), which is why ``labkit.topology`` gives DB-domain clusters distinct CIDRs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from labkit.testbed.embedded import vm as vmlib

#: Pool the external CIDRs are taken from.
EXTERNAL_POOL = ipaddress.ip_network("10.200.0.0/13")


class NatError(RuntimeError):
    """nft refused the rules; the message has its error."""


def overlaps(a: str, b: str) -> bool:
    """Whether CIDRs ``a`` and ``b`` overlap."""
    return ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))


def allocate(like: str, taken: Iterable[str]) -> str:
    """A CIDR of ``like``'s size from :data:`EXTERNAL_POOL` overlapping none of ``taken``."""
    size = ipaddress.ip_network(like).prefixlen
    used = [ipaddress.ip_network(t) for t in taken]
    for candidate in EXTERNAL_POOL.subnets(new_prefix=size):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise NatError(f"no /{size} left in {EXTERNAL_POOL} for NAT remapping")


def table_name(ifname: str) -> str:
    """nftables table of one tunnel interface."""
    return "lkt_liqo_" + ifname.replace("-", "_")


def ruleset(ifname: str, pod_cidr: str, external: str) -> str:
    """The nft script remapping ``pod_cidr`` <-> ``external`` on ``ifname``."""
    t = table_name(ifname)
    return (f"table ip {t} {{\n"
            f"  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n"
            f"    iifname \"{ifname}\" ip daddr {external} dnat ip prefix to {pod_cidr}\n  }}\n"
            f"  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    oifname \"{ifname}\" ip saddr {pod_cidr} snat ip prefix to {external}\n  }}\n}}\n")


def _nft(netns: str, script: str) -> None:
    try:
        vmlib.nft(netns, script)
    except vmlib.VmError as err:
        raise NatError(str(err)) from None


def apply(netns: str, ifname: str, pod_cidr: str, external: str) -> None:
    """Install (replace) the remapping of ``ifname`` in network namespace ``netns``."""
    t = table_name(ifname)
    _nft(netns, f"table ip {t}\ndelete table ip {t}\n" + ruleset(ifname, pod_cidr, external))
