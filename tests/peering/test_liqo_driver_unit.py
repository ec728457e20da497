"""LiqoCtl without clusters: liqoctl's arguments, its log with the token hidden, and its errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.config import LiqoTuning
from labkit.testbed import liqoctl
from labkit.testbed.embedded.liqo import LiqoCtl, LiqoError
from labkit.images.liqo.source import LiqoPrograms

pytestmark = pytest.mark.unit

TOKEN = "f00d" * 16
PEER_LINE = (f"liqoctl peer out-of-band leaf1 --auth-url https://10.250.0.11:31234 "
             f"--cluster-id 6a1c0c3e-0000-4000-8000-000000000001 --auth-token {TOKEN}\n")


def _fake(tmp_path: Path, script: str) -> LiqoCtl:
    """A LiqoCtl whose liqoctl is ``script`` and whose clusters are directories under ``tmp_path``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "liqoctl").write_text("#!/bin/sh\n" + script)
    (bin_dir / "liqoctl").chmod(0o755)

    def cluster(name: str) -> Any:
        logs = tmp_path / name / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(root=SimpleNamespace(state_dir=tmp_path / name))

    tb = SimpleNamespace(cluster=cluster, clusters=lambda: ["root", "leaf1"])
    liqo = LiqoCtl(tb, LiqoPrograms("v0.10.2", bin_dir, tmp_path / "chart"), tuning=LiqoTuning(), log=lambda _: None)
    liqo.kubeconfig = lambda cluster: tmp_path / f"{cluster}.kubeconfig"  # type: ignore[method-assign]
    liqo._env = lambda: {"PATH": "/usr/bin:/bin"}  # type: ignore[method-assign]
    return liqo


def test_peer_command_is_parsed_and_its_token_never_logged(tmp_path: Path) -> None:
    liqo = _fake(tmp_path, f'case "$1" in generate) printf "%s" "{PEER_LINE}";; *) echo "args: $*";; esac\n')
    info = liqo.peer_info("leaf1")
    assert info["token"] == TOKEN and info["auth_url"] == "https://10.250.0.11:31234"
    args = liqoctl.peer_args("leaf1", info["auth_url"], info["cluster_id"], info["token"], 60)
    out = liqo.run("root", args, 10, secrets=[TOKEN]).stdout
    assert TOKEN in out  # liqoctl got it ...
    logged = (tmp_path / "root" / "logs" / "liqoctl.log").read_text() + (tmp_path / "leaf1" / "logs" / "liqoctl.log").read_text()
    assert TOKEN not in logged and "<token>" in logged  # ... the logs did not


def test_a_failing_step_names_the_command_the_cluster_and_its_output(tmp_path: Path) -> None:
    liqo = _fake(tmp_path, f'echo "Error: auth {TOKEN} refused" >&2; exit 3\n')
    with pytest.raises(LiqoError) as err:
        liqo.run("root", ["peer", "out-of-band", "leaf1", "--auth-token", TOKEN], 10, secrets=[TOKEN])
    text = str(err.value)
    assert "`liqoctl peer out-of-band leaf1 --auth-token <token>` on cluster root exited 3" in text
    assert "Error: auth <token> refused" in text and TOKEN not in text and "liqoctl.log" in text


def test_a_step_that_overruns_is_named(tmp_path: Path) -> None:
    liqo = _fake(tmp_path, "sleep 5\n")
    with pytest.raises(LiqoError, match=r"`liqoctl install k3s` on cluster leaf1 timed out"):
        liqo.run("leaf1", ["install", "k3s"], 0.5)


def test_cluster_ids_are_uuids_from_the_names() -> None:
    liqo = LiqoCtl(SimpleNamespace(clusters=lambda: ["root", "leaf-1"]), LiqoPrograms("v0.10.2", Path("/x"), Path("/y")))
    assert liqo.cluster_id("leaf-1") == liqoctl.cluster_id("embedded", "leaf-1") != liqo.cluster_id("root")
    assert liqo.cluster_name(liqo.cluster_id("leaf-1")) == "leaf-1" and liqo.cluster_name("nope") is None


def test_install_arguments_carry_the_plan_and_the_stand_ins() -> None:
    args = liqoctl.install_args("leaf-1", "v0.10.2", {"topology.labkit.io/cluster": "leaf-1"}, "10.65.0.0/16",
                                "10.43.0.0/16", "https://10.250.0.11:6443", "/v.yaml", 600, chart="/src/deployments/liqo",
                                reserved_subnets=["10.250.0.0/24"], sets={"metricAgent.enable": "false"})
    text = " ".join(args)
    for part in ("install k3s --version v0.10.2 --cluster-name leaf-1", "--cluster-labels topology.labkit.io/cluster=leaf-1",
                 "--pod-cidr 10.65.0.0/16", "--local-chart-path /src/deployments/liqo", "--disable-telemetry",
                 "--reserved-subnets 10.250.0.0/24", "--set metricAgent.enable=false", "--timeout 600s"):
        assert part in text, part
    values = liqoctl.values(LiqoTuning(), "userspace", "id")
    assert values["gateway"]["config"]["wireguardImplementation"] == "userspace"
    assert "--gateway.ping-interval=2s" in values["gateway"]["pod"]["extraArgs"]
