"""A VM's private directories for real: covered inside the VM, the host's paths never created or changed.

On the development machine the kit's own paths (``/var/lib/kubelet``, ``/var/lib/etcd``, ...)
exist already, so the test adds private directories the host lacks (one two levels deep) to
show the other case, the one of a fresh Debian or Ubuntu host: the nearest directory the host
has is shadowed inside the VM (``vm.shadow``) and the new mount point is made there only.
Holds the machine lock (it makes ``lkt-vm-*``); no Kubernetes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from embedded_helpers import host_private_dirs

from labkit.testbed.embedded import MachineLock, leftovers, sweep, wait_seconds
from labkit.testbed.embedded import vm as vmlib

pytestmark = pytest.mark.embedded

TAG = f"lkt-absent-{os.getpid()}"
#: Private directories the host lacks: under /etc two levels deep, under /var/lib and /run.
ABSENT = {f"/etc/{TAG}/conf": "absent-etc", f"/var/lib/{TAG}": "absent-var-lib", f"/run/{TAG}": "absent-run"}


def _in_vm(name: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=30,
                          preexec_fn=lambda: vmlib.enter(name))


def test_private_dirs_are_made_inside_the_vm_only(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for inside, sub in ABSENT.items():
        monkeypatch.setitem(vmlib.PRIVATE_DIRS, inside, sub)
    probe = Path(f"/var/lib/{TAG}-probe")  # a directory the host has (the kit's own name), changed while the VM runs
    lock = MachineLock()
    lock.acquire(wait_seconds(), print)
    try:
        sweep()
        before = host_private_dirs()
        etc_before = sorted(os.listdir("/etc"))
        probe.mkdir()
        vm = vmlib.Vm("pdtest", 0)
        vmlib.create(vm)
        (probe / "later").write_text("written by the host after the VM was made\n")
        out = _in_vm(vm.name, f"""
            for d in /etc/{TAG}/conf /var/lib/{TAG} /run/{TAG} /var/lib/kubelet /var/lib/etcd; do
                test -d $d; touch $d/made-inside
            done
            cat {probe}/later
            ls -A /etc
            echo ---; ls /var/lib/lkt
            echo ---; cat /etc/hostname""")
        assert out.returncode == 0, out.stderr
        later, rest = out.stdout.split("\n", 1)
        listing, state, hostname = rest.split("---\n")
        assert later == "written by the host after the VM was made"   # the host's entries are bound, live
        assert sorted(listing.split()) == sorted([*etc_before, TAG])   # /etc as the host has it, plus the VM's own
        assert vm.name in state.split()                                # the VMs' state (their own file system) too
        assert hostname == Path("/etc/hostname").read_text()
        for inside in (*ABSENT, "/var/lib/kubelet", "/var/lib/etcd"):  # what the VM made is in its state directory
            assert (vm.host_path(inside) / "made-inside").is_file(), inside
        for inside in ABSENT:
            assert not os.path.lexists(inside), f"{inside} appeared on the host"
        assert not os.path.lexists(f"/etc/{TAG}")
        # the kubelet's root is shared, as on a systemd host (else the kubelet re-binds it at start); the
        # kubelet reads the last mount on the path (the top one: this machine has one below, the host's)
        mounts = _in_vm(vm.name, f"grep ' {vmlib.KUBELET_ROOT} ' /proc/self/mountinfo").stdout.splitlines()
        assert mounts and " shared:" in mounts[-1], mounts
    finally:
        sweep()
        lock.release()
        probe.joinpath("later").unlink(missing_ok=True)
        probe.rmdir() if probe.is_dir() else None
    for inside in ABSENT:
        assert not os.path.lexists(inside)
    assert host_private_dirs() == before
    rest = leftovers()
    assert rest.empty(), rest
