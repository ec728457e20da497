"""The kit's cgroups for real, without Kubernetes: a VM's processes land where the host's layout says.

On this development machine (cgroup v1, no systemd) the VM's tree is under every v1 controller;
on a systemd cgroup v2 host (the hosts tier's guest) it is below the delegated scope, which
systemd removes once the kit's processes are gone. Holds the machine lock (it makes ``lkt-vm-*``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from labkit.testbed.embedded import MachineLock, cgroups, leftovers, sweep, wait_seconds
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.supervisor import Supervisor

pytestmark = pytest.mark.embedded


def _cgroup_of(pid: int) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as hierarchy (controllers, or "" for v2) -> path."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        out[controllers] = path
    return out


def test_a_vms_process_lands_in_the_vms_cgroup_and_down_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    layout = cgroups.current()
    lock = MachineLock()
    lock.acquire(wait_seconds(), print)
    sup = None
    try:
        sweep()
        sup = Supervisor(tmp_path / "supervisor.log")
        assert _cgroup_of(sup.pid).get("" if layout.mode == "v2" else "memory") == layout.path(cgroups.SUPERVISOR)
        vm = vmlib.Vm("cgtest", 0)
        vmlib.create(vm)
        pid = sup.spawn("cgtest/sleep", vm.name, ["sleep", "300"], tmp_path / "sleep.log")
        time.sleep(0.5)
        where = _cgroup_of(pid)
        expected = layout.path(f"{vm.cgroup}/system")
        if layout.mode == "v2":
            assert where[""] == expected
            controllers = (layout.dirs(vm.cgroup)[0] / "cgroup.subtree_control").read_text().split()
            assert {"memory", "pids"} <= set(controllers)  # handed down to system and kubepods
        else:
            assert where["memory"] == expected and where["cpu"] == expected
        if layout.scope is not None:
            assert cgroups.scope_active(layout)
        assert pid in leftovers().pids
    finally:
        if sup is not None:
            sup.close()
        sweep()
        lock.release()
    rest = leftovers()
    assert rest.empty(), rest
    if layout.scope is not None:
        assert not cgroups.scope_active(layout)
        out = subprocess.run(["systemctl", "list-units", "--all", "--no-legend", cgroups.SCOPE],
                             capture_output=True, text=True).stdout
        assert cgroups.SCOPE not in out or "inactive" in out


def test_the_supervisor_restarts_a_daemon_that_exits_until_it_is_stopped(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lock = MachineLock()
    lock.acquire(wait_seconds(), print)
    sup = None
    log = tmp_path / "flaky.log"
    try:
        sweep()
        sup = Supervisor(tmp_path / "supervisor.log")
        first = sup.spawn("flaky", None, ["sh", "-c", "echo started; exit 3"], log, restart_s=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sup.status()["flaky"]["restarts"] < 2:
            time.sleep(0.05)
        status = sup.status()["flaky"]
        assert status["restarts"] >= 2 and status["pid"] != first
        assert log.read_text().count("started") >= 3
        assert "flaky exited with 3; started again after 0.2 s (restart 1)" in log.read_text()
        sup.stop("flaky")
        restarts = sup.status()["flaky"]["restarts"]
        time.sleep(0.6)
        assert sup.status()["flaky"]["restarts"] == restarts and sup.status()["flaky"]["exit"] is not None
    finally:
        if sup is not None:
            sup.close()
        sweep()
        lock.release()
