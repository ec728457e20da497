"""Shared helpers of the peering tests (a module with its own name: ``conftest`` is ambiguous
when pytest collects several test folders in one session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "embedded"))

#: Cluster labels the provider advertises (as labkit.topology would).
LEAF_LABELS = {"topology.labkit.io/cluster": "leaf1", "topology.labkit.io/role": "leaf"}


def require_liqo() -> None:
    """Skip when the embedded testbed or the thesis' Liqo (built by ``invoke setup``) is not available."""
    from embedded_helpers import require_embedded
    require_embedded()
    from labkit.testbed.embedded.binaries import BinariesMissing
    from labkit.images.liqo import source
    try:
        source.find()
    except BinariesMissing as exc:
        pytest.skip(str(exc))


def require_env_peering() -> None:
    """Skip unless what an env file peers with here (``backend.peering``, ``$LABKIT_PEERING``) is available."""
    from labkit.testbed.liqoctl import PEERING_ENV
    if os.environ.get(PEERING_ENV) == "kit":
        require_peering()
    else:
        require_liqo()


def require_peering() -> None:
    """Skip when the embedded testbed or the look-alike's virtual kubelet is not available."""
    from embedded_helpers import require_embedded
    require_embedded()
    from labkit.testbed.embedded.liqo import build
    if not build.vk_cached():
        pytest.skip(f"virtual kubelet not built in {build.vk_dir()}: run build.build_vk()")
    if os.system("command -v wireguard-go >/dev/null") != 0:
        pytest.skip("wireguard-go not installed")
