"""The kit on a cgroup v2 + systemd host: a Debian guest under qemu + KVM runs the README's commands.

One guest per Debian release the host's mirror serves (bookworm; trixie where available). The
boot and the run happen once per module (the fixture); each test checks one promise of issue #23
on what the run recorded. Runs by hand: ``invoke test --tier hosts`` (labkit.guest.fits).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labkit import guest, paths
from labkit.guest import machine, wheels
from labkit.guest.run import Report, cache_disk, run
from labkit.testbed.embedded.binaries import go_binary

pytestmark = pytest.mark.hosts

ROOT = Path(__file__).resolve().parents[2]
LOGS = Path(os.environ.get("LABKIT_HOSTS_LOGS", "/var/tmp/lkt-guest-runs"))


@pytest.fixture(scope="module", params=["bookworm", "trixie"])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Build (or reuse) the guest image, boot it, run the README's commands in it, power it off."""
    suite = request.param
    start = time.monotonic()
    image = guest.build(guest.recipe(suite))
    house = wheels.wheelhouse(ROOT, image.python_version)
    go = go_binary()
    disk = cache_disk(tmp_path_factory.mktemp("cache") / "cache.raw", paths.cache_dir(),
                      go.resolve().parent.parent if go else None)
    built = time.monotonic() - start
    logs = LOGS / f"{suite}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    accel = "kvm" if machine.kvm_boots_distribution_kernels() else "tcg"  # a PVM host: qemu's emulator
    with machine.Guest(image, {"debs": image.repo, "wheels": house}, machine.Resources(accel=accel),
                       drives=[disk]) as box:
        result = run(box, ROOT, logs)
        result.seconds["boot"] = box.timings["boot"]
        result.facts["accel"] = accel
    result.seconds["image_wheels_disk"] = built
    disk.unlink()
    print(f"[guest] {suite}: {result.seconds}; logs in {logs}")
    return result


def test_the_guest_is_a_cgroup_v2_systemd_host_with_an_externally_managed_python(report: Report) -> None:
    assert report.facts["cgroup_fs"] == "cgroup2fs"
    assert report.facts["init"] == "systemd"
    assert report.facts["externally_managed"].endswith("EXTERNALLY-MANAGED")
    assert "No module named" in report.facts["venv_module"]  # the bootstrap must install python3-venv


def test_the_readmes_first_command_installs_and_runs_the_pipeline(report: Report) -> None:
    assert report.exit_codes["install_and_lab"] == 0, report.tails["install_and_lab"]


def test_the_readmes_test_command_passes(report: Report) -> None:
    assert report.exit_codes["test"] == 0, report.tails["test"]
    assert " passed" in report.tails["test"] and " failed" not in report.tails["test"]


def test_the_thesis_env_came_up(report: Report) -> None:
    if report.facts["accel"] == "tcg":
        pytest.skip("the guest ran under TCG (this host's KVM boots no distribution kernel): no cluster was "
                    "brought up, Kubernetes' timers assume a real CPU")
    assert report.thesis_ready_s, "no bring-up time of the thesis env in the guest's logs"


def test_down_leaves_nothing_and_systemd_keeps_every_unit(report: Report) -> None:
    assert report.exit_codes["down"] == 0, report.tails["down"]
    assert "pids=[]" in report.leftovers and "cgroups=[]" in report.leftovers, report.leftovers
    assert report.scope_after != "active"
    assert report.units_before <= report.units_after, report.units_before - report.units_after
    assert not report.failed_units


def test_the_kits_packages_left_no_service_of_theirs_running_or_enabled(report: Report) -> None:
    """containerd, etcd, MariaDB (and what they bring) stay off: the kit runs its own inside its VMs."""
    assert report.units_after <= report.units_before, report.units_after - report.units_before
    assert report.enabled_after <= report.enabled_before, report.enabled_after - report.enabled_before


def test_no_systemd_owned_cgroup_changed(report: Report) -> None:
    assert report.cgroup_after == report.cgroup_before
