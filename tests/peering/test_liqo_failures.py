"""A liqoctl step that fails: one error naming the step and the cluster, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from peering_helpers import require_liqo

pytestmark = pytest.mark.embedded


def test_a_failing_liqoctl_install_names_itself_and_leaves_nothing(tmp_path: Path) -> None:
    require_liqo()
    from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec, leftovers
    from labkit.images.liqo import source
    from labkit.testbed.embedded.liqo import LiqoError
    real = source.find()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    liqoctl = fake_bin / "liqoctl"  # liqoctl refusing every command, as a broken install would
    liqoctl.write_text("#!/bin/sh\necho 'Error: INSTALLATION FAILED: the chart was refused' >&2\nexit 1\n")
    liqoctl.chmod(0o755)
    broken = source.LiqoPrograms(real.version, fake_bin, real.chart)
    env = EmbeddedEnv(clusters=(ClusterSpec("c1", (VmSpec("c1"),)),
                                ClusterSpec("c2", (VmSpec("c2"),), pod_cidr="10.44.0.0/16", service_cidr="10.45.0.0/16")),
                      dns=False, peerings=(("c1", "c2"),), peering="liqo")
    tb = EmbeddedTestbed(liqo=broken)
    with pytest.raises(LiqoError) as err:
        tb.up(env)
    text = str(err.value)
    print(text)
    assert "liqoctl install k3s" in text and "on cluster c" in text and "INSTALLATION FAILED" in text
    assert leftovers().empty(), leftovers()


def test_a_missing_liqo_is_named_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    require_liqo()
    from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec, leftovers
    from labkit.testbed.embedded.binaries import BinariesMissing
    env = EmbeddedEnv(clusters=(ClusterSpec("c1", (VmSpec("c1"),)), ClusterSpec("c2", (VmSpec("c2"),))),
                      dns=False, peerings=(("c1", "c2"),), peering="liqo", liqo_version="v0.9.9")
    with pytest.raises(BinariesMissing, match=r"Liqo v0\.9\.9 is not built.*peering: kit"):
        EmbeddedTestbed().up(env)
    assert leftovers().empty()
