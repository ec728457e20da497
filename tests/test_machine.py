"""labkit.machine (this machine's facts): cgroup layout detection (v1, v2, hybrid), the root check, the preflight."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import machine

pytestmark = pytest.mark.unit


def _fake(root: Path, v1: bool, unified: str | None = None, v2_root: bool = False) -> Path:
    if v1:
        (root / "memory").mkdir(parents=True)
    if unified is not None:
        (root / "unified").mkdir(parents=True)
        (root / "unified" / "cgroup.controllers").write_text(unified)
    if v2_root:
        root.mkdir(parents=True, exist_ok=True)
        (root / "cgroup.controllers").write_text("cpu memory pids\n")
    return root


def test_cgroup_v2(tmp_path: Path) -> None:
    assert machine.cgroup_layout(_fake(tmp_path / "a", v1=False, v2_root=True)) == "v2"


def test_cgroup_v1_with_empty_unified(tmp_path: Path) -> None:
    assert machine.cgroup_layout(_fake(tmp_path / "a", v1=True, unified="")) == "v1"


def test_cgroup_hybrid(tmp_path: Path) -> None:
    assert machine.cgroup_layout(_fake(tmp_path / "a", v1=True, unified="hugetlb\n")) == "hybrid"


def test_cgroup_none(tmp_path: Path) -> None:
    assert machine.cgroup_layout(tmp_path) == "none"


def test_facts_of_this_host() -> None:
    facts = machine.facts()
    assert facts.cpus >= 1 and facts.memory_gib > 0
    assert facts.root == (os.geteuid() == 0)


def test_require_root_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(machine.PrivilegeError, match="creating namespaces needs root"):
        machine.require_root("creating namespaces")


# --- preflight of the embedded test bed (inputs faked) ---------------------------------------

_ALL = frozenset(machine.KERNEL_MODULES)
_CONFIG = frozenset(machine.KERNEL_MODULES.values())


def _offers(**changes: object) -> machine.Offers:
    base = dict(euid=0, cap_eff=(1 << 41) - 1, tun=True, cgroup="v2", cgroup_writable=True, systemd=True,
                systemd_run=True, modules=_ALL, config=_CONFIG)
    return machine.Offers(**{**base, **changes})  # type: ignore[arg-type]


def test_a_capable_root_host_lacks_nothing() -> None:
    assert machine.embedded_missing(_offers()) == []
    assert machine.embedded_missing(_offers(cgroup="v1", systemd=False, systemd_run=False)) == []


def test_a_user_lacks_root_capabilities_and_cgroups_in_one_line() -> None:
    have = _offers(euid=1000, cap_eff=0, cgroup_writable=False)
    with pytest.raises(machine.PrivilegeError) as err:
        machine.require_embedded("invoke lab --env embedded", have)
    text = str(err.value)
    assert "\n" not in text and text.startswith("invoke lab --env embedded: ")
    for part in ("root (running as uid 1000", "CAP_NET_ADMIN and CAP_SYS_ADMIN", "writable cgroups",
                 "nothing was started"):
        assert part in text


def test_root_without_net_admin_names_only_that() -> None:
    missing = machine.embedded_missing(_offers(cap_eff=((1 << 41) - 1) & ~(1 << 12)))
    assert missing == ["CAP_NET_ADMIN"]


def test_missing_tun_and_cgroup_filesystem() -> None:
    missing = machine.embedded_missing(_offers(tun=False, cgroup="none"))
    assert missing[0].startswith("/dev/net/tun") and missing[1].startswith("a cgroup file system")


def test_systemd_v2_needs_systemd_run() -> None:
    assert machine.embedded_missing(_offers(systemd_run=False)) == [
        "systemd-run (the kit asks systemd for a delegated cgroup scope)"]


def test_kernel_modules_absent_only_on_evidence() -> None:
    # loaded or loadable: present; not in the module lists but built in per the config: present
    assert machine.embedded_missing(_offers(modules=frozenset({"bridge"}))) == []
    # the config says neither y nor m, and no module list has it: absent
    lacking = _offers(modules=frozenset({"bridge", "veth"}), config=frozenset({"CONFIG_BRIDGE", "CONFIG_VETH"}))
    assert machine.embedded_missing(lacking) == ["kernel modules vxlan, overlay"]
    # the host says nothing about its kernel: no false alarm
    assert machine.embedded_missing(_offers(modules=None, config=None)) == []
    # only module lists, without the module: absent
    assert machine.embedded_missing(_offers(modules=frozenset({"bridge", "veth", "overlay"}), config=None)) == [
        "kernel module vxlan"]


def test_module_names_from_modules_dep_and_builtin_lines() -> None:
    lines = ["kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz", "kernel/drivers/net/veth.ko",
             "kernel/fs/overlayfs/overlay.ko.zst:", ""]
    assert machine._module_names(lines) == {"bridge", "veth", "overlay"}


def test_read_only_mount_is_found_by_the_longest_mount_point(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text("1 0 0:1 / / rw,relatime - ext4 /dev/vda rw\n"
                    "2 1 0:2 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n")
    assert machine._read_only_mount(Path("/sys/fs/cgroup"), info)
    assert machine._read_only_mount(Path("/sys/fs/cgroup/system.slice"), info)
    assert not machine._read_only_mount(Path("/var/lib"), info)


def test_offers_of_this_process_match_its_uid() -> None:
    have = machine.offers()
    assert have.euid == os.geteuid() and have.cgroup == machine.cgroup_layout()
