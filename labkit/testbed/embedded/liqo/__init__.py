"""Peering of the embedded clusters: the thesis' Liqo v0.10.2, or the kit's look-alike as a fallback.

The thesis' Liqo (the default, ``backend.peering: liqo``):

- :mod:`.source`: its source (``$LABKIT_LIQO_SOURCE`` or a clone of the tag), checked to be
  v0.10.2, and its eight programs built by ``invoke setup``;
- :mod:`.driver`: :class:`LiqoCtl`, ``liqoctl install`` / ``peer out-of-band`` / ``offload
  namespace`` / ``unpeer`` / ``uninstall`` on the running clusters; its images come from
  :mod:`labkit.images.liqo`.

The kit's look-alike (``backend.peering: kit``, for a machine without Liqo's source): the
same objects, labels and timers, built on Liqo's virtual-kubelet library v1.11.0:

- :mod:`.wireguard`: userspace WireGuard tunnels between gateways (``wireguard-go`` + ``wg``);
- :mod:`.health`: the gateway's tunnel check with Liqo's rule (no pong for interval x
  threshold, checked every interval x threshold / 10) publishing to ``TunnelEndpoint`` objects;
- :mod:`.identity`: the provider identity (CSR signed by the provider's CA, limited RBAC);
- :mod:`.peering`: :class:`LookAlike` with ``peer(consumer, provider)``;
- :mod:`.offloading`: NamespaceOffloading with Liqo's strategies, mapping and selector;
- :mod:`.build`: the virtual kubelet binary (``go/vk``) and its image.

See ``docs/peering.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from labkit.testbed.embedded.liqo.driver import LiqoCtl, LiqoError
from labkit.testbed.embedded.liqo.offloading import OffloadingError, offload, pod_constraints
from labkit.testbed.embedded.liqo.peering import GatewayTimers, LookAlike, Peering, VkTimers

__all__ = ["GatewayTimers", "LiqoCtl", "LiqoError", "LookAlike", "OffloadingError", "Peering", "VkTimers",
           "liqo_images", "offload", "pod_constraints"]


def liqo_images(log: Callable[[str], None] = print) -> list[Path]:
    """The archives of Liqo's images (:mod:`labkit.images.liqo`), built when not cached."""
    from labkit import images
    from labkit.images import liqo
    return [images.build(name, log) for name in liqo.NAMES]
