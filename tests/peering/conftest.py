"""Fixtures of the peering tests: two real clusters peered with the kit's Liqo look-alike (the fallback)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peering_helpers import LEAF_LABELS, require_liqo, require_peering  # noqa: E402

__all__ = ["LEAF_LABELS", "require_liqo", "require_peering"]


@pytest.fixture(scope="module")
def peered() -> Iterator[tuple[object, object]]:
    """Clusters ``root`` (consumer, 1 VM) and ``leaf1`` (provider, 2 VMs), ``root`` peered to ``leaf1`` by the look-alike."""
    require_peering()
    from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec
    env = EmbeddedEnv(clusters=(
        ClusterSpec("root", (VmSpec("root-a"),), pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16"),
        ClusterSpec("leaf1", (VmSpec("leaf1-a"), VmSpec("leaf1-b")), pod_cidr="10.44.0.0/16",
                    service_cidr="10.45.0.0/16"),
    ), peerings=(("root", "leaf1"),), cluster_labels={"leaf1": LEAF_LABELS}, peering="kit")
    tb = EmbeddedTestbed()
    try:
        tb.up(env)  # clusters, then the peering (up() peers env.peerings)
        assert tb.liqo is not None and set(tb.liqo.peerings) == {("root", "leaf1")}
        yield tb, tb.liqo
    finally:
        tb.down()
