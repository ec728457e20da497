"""up/down leave nothing behind: repeated cycles, a killed up(), and the thesis' 5 clusters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from embedded_helpers import host_private_dirs, require_embedded

from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec, disk, leftovers
from labkit.testbed.embedded import vm as vmlib

pytestmark = pytest.mark.embedded


def _one_node(name: str = "cyc") -> EmbeddedEnv:
    return EmbeddedEnv(clusters=(ClusterSpec(name, (VmSpec(f"{name}-a"),)),), dns=False)


def test_three_up_down_cycles_leave_nothing() -> None:
    require_embedded()
    before = host_private_dirs()  # the host's /var/lib/etcd, /etc/kubernetes, ...: covered only inside each VM
    for _ in range(3):
        tb = EmbeddedTestbed()
        try:
            tb.up(_one_node())
            assert not leftovers().empty()
            if Path("/dev/loop-control").exists():   # the VMs' state on their own file system
                assert tb.vm_disk == "image" and disk.mounted(vmlib.STATE_ROOT)
        finally:
            tb.down()
        rest = leftovers()
        assert rest.empty(), rest
        assert not disk.IMAGE.exists()
    assert host_private_dirs() == before


def test_down_after_killed_up_leaves_nothing(tmp_path: Path) -> None:
    require_embedded()
    script = textwrap.dedent("""
        from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec
        env = EmbeddedEnv(clusters=(ClusterSpec("kil", (VmSpec("kil-a"), VmSpec("kil-b"))),), dns=False)
        EmbeddedTestbed().up(env)
        print("UP", flush=True)
        import time; time.sleep(600)
    """)
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT)
    # kill it while kubelets run and pods may be starting
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("kubelet" in p for p in _kit_process_names()):
        time.sleep(0.5)
    time.sleep(3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not leftovers().empty()
    EmbeddedTestbed().down()
    rest = leftovers()
    assert rest.empty(), rest
    second = EmbeddedTestbed()
    second.down()  # a second down() finds nothing and still completes
    assert leftovers().empty()


def _kit_process_names() -> list[str]:
    names = []
    for pid in leftovers().pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    return names


def pss_mib(pids: list[int]) -> float:
    """Proportional set size of ``pids`` in MiB (from /proc/<pid>/smaps_rollup)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def test_thesis_env_five_single_node_clusters() -> None:
    """Thesis Sec. 7.1.4: 5 single-node clusters, every node Ready <= 90 s, idle PSS <= 4 GiB."""
    require_embedded()
    names = ["root", "leaf-1", "leaf-2", "leaf-3", "leaf-4"]
    env = EmbeddedEnv(clusters=tuple(
        ClusterSpec(n, (VmSpec(f"{n}-vm"),), pod_cidr=f"10.{100 + i}.0.0/16", service_cidr=f"10.{110 + i}.0.0/16")
        for i, n in enumerate(names)))
    tb = EmbeddedTestbed()
    try:
        tb.up(env)
        ready = tb.timings["ready_s"]
        time.sleep(20)  # idle
        pss = pss_mib(leftovers().pids)
        print(f"thesis env: Ready in {ready:.1f} s, idle PSS {pss:.0f} MiB")
        assert ready <= 90.0
        assert pss <= 4096
    finally:
        tb.down()
    assert leftovers().empty()
