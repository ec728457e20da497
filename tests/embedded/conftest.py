"""Fixtures of the embedded tier: one 2-VM cluster shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from embedded_helpers import TARGET_LABEL, require_embedded

from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec


@pytest.fixture(scope="module")
def two_node() -> Iterator[EmbeddedTestbed]:
    """A running cluster ``c1`` with VMs ``c1-a`` (control plane + node) and ``c1-b`` (node)."""
    require_embedded()
    env = EmbeddedEnv(clusters=(ClusterSpec("c1", (VmSpec("c1-a"), VmSpec("c1-b", dict([TARGET_LABEL])))),))
    tb = EmbeddedTestbed()
    try:
        tb.up(env)
        yield tb
    finally:
        tb.down()
