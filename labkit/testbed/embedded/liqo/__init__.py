"""Liqo-compatible peering for the embedded testbed (Liqo itself is not obtainable here).

Same objects, labels, timers and observable behaviour as Liqo v0.10.2, built on the same
foundation as Liqo's virtual kubelet (``github.com/virtual-kubelet/virtual-kubelet`` v1.11.0):

- :mod:`.wireguard`: userspace WireGuard tunnels between gateways (``wireguard-go`` + ``wg``);
- :mod:`.health`: the gateway's tunnel check (ping every 2 s, 5 losses = down) publishing to
  ``TunnelEndpoint`` objects;
- :mod:`.identity`: the provider identity (CSR signed by the provider's CA, limited RBAC);
- :mod:`.peering`: :class:`Liqo` with ``peer(consumer, provider)``;
- :mod:`.offloading`: NamespaceOffloading with Liqo's strategies, mapping and selector;
- :mod:`.build`: the virtual kubelet binary (``go/vk``) and its image.

See ``docs/peering.md``.
"""

from labkit.testbed.embedded.liqo.offloading import OffloadingError, offload, pod_constraints
from labkit.testbed.embedded.liqo.peering import GatewayTimers, Liqo, Peering, VkTimers

__all__ = ["GatewayTimers", "Liqo", "OffloadingError", "Peering", "VkTimers", "offload", "pod_constraints"]
