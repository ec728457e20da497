"""labkit.testbed.embedded.cgroups: where the kit's cgroups go on v1, v2 and systemd v2 hosts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.testbed.embedded import cgroups

pytestmark = pytest.mark.unit

SCOPED = "/system.slice/lkt-embedded.scope"


@pytest.mark.parametrize("mode", ["v1", "hybrid"])
def test_v1_and_hybrid_use_every_v1_controller_at_the_top(mode: str) -> None:
    for systemd in (False, True):
        layout = cgroups.plan(mode, systemd)
        assert layout.mode == "v1" and layout.scope is None and layout.base == ""
        assert layout.hierarchies == cgroups.V1_CONTROLLERS and "unified" in layout.teardown
        assert layout.path("/lkt-vm-a") == "/lkt-vm-a"


def test_v2_without_systemd_uses_the_top_of_the_unified_hierarchy() -> None:
    layout = cgroups.plan("v2", systemd=False)
    assert (layout.mode, layout.base, layout.hierarchies, layout.scope) == ("v2", "", ("",), None)
    assert layout.path("/lkt-vm-a") == "/lkt-vm-a"
    assert layout.supervisor_argv(["python"]) == ["python"]


def test_v2_with_systemd_delegates_a_scope_and_keeps_cgroupfs() -> None:
    layout = cgroups.plan("v2", systemd=True)
    assert layout.scope == cgroups.SCOPE and layout.path("/lkt-vm-a") == f"{SCOPED}/lkt-vm-a"
    assert layout.path("") == SCOPED and layout.driver == "cgroupfs"
    argv = layout.supervisor_argv(["python", "-m", "sup"])
    assert argv[:2] == ["systemd-run", "--scope"] and "--property=Delegate=yes" in argv
    assert f"--unit={cgroups.SCOPE}" in argv and argv[-4:] == ["--", "python", "-m", "sup"]


def test_only_systemd_v2_roots_a_cgroup_namespace_at_each_vm() -> None:
    scoped = cgroups.plan("v2", systemd=True)
    assert scoped.cgroupns and scoped.vm_root("/lkt-vm-a") == "/"  # the kubelet's cgroupRoot inside the VM
    for layout in (cgroups.plan("v2", systemd=False), cgroups.plan("v1", systemd=False)):
        assert not layout.cgroupns and layout.vm_root("/lkt-vm-a") == "/lkt-vm-a"


def test_no_cgroup_filesystem_is_an_error() -> None:
    with pytest.raises(cgroups.CgroupError, match="no cgroup file system"):
        cgroups.plan("none", systemd=False)


def _v2_tree(root: Path, base: str, controllers: str = "cpuset cpu io memory pids") -> Path:
    top = root / base if base else root
    top.mkdir(parents=True, exist_ok=True)
    for d in {root, top}:
        (d / "cgroup.controllers").write_text(controllers + "\n")
        (d / "cgroup.subtree_control").write_text("")
    return top


def test_create_on_systemd_v2_writes_only_below_the_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    layout = cgroups.plan("v2", systemd=True)
    scope = _v2_tree(tmp_path, layout.base)
    vm_dir = scope / "lkt-vm-a"
    # the kernel fills a new cgroup's files; the fake tree does it by hand before create() enables
    vm_dir.mkdir()
    (vm_dir / "cgroup.controllers").write_text("cpu memory pids\n")
    (vm_dir / "cgroup.subtree_control").write_text("")
    cgroups.create(layout, "/lkt-vm-a", leaves=("system",))
    assert (vm_dir / "system").is_dir()
    assert (vm_dir / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (tmp_path / "cgroup.subtree_control").read_text() == ""  # systemd's root: untouched
    assert layout.dirs("/lkt-vm-a") == [vm_dir]


def test_create_can_leave_the_controllers_for_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cgroup namespace's first process must sit in the VM's cgroup before it hands controllers down."""
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    layout = cgroups.plan("v2", systemd=True)
    vm_dir = _v2_tree(tmp_path, layout.base) / "lkt-vm-a"
    vm_dir.mkdir()
    (vm_dir / "cgroup.controllers").write_text("cpu memory\n")
    (vm_dir / "cgroup.subtree_control").write_text("")
    cgroups.create(layout, "/lkt-vm-a", leaves=("system",), enable=False)
    assert (vm_dir / "system").is_dir() and (vm_dir / "cgroup.subtree_control").read_text() == ""
    cgroups.enable(layout, "/lkt-vm-a")
    assert (vm_dir / "cgroup.subtree_control").read_text() == "+cpu +memory"


def test_create_on_v2_without_systemd_enables_the_roots_controllers(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    _v2_tree(tmp_path, "", "cpu memory")
    cgroups.create(cgroups.plan("v2", systemd=False), "/lkt-supervisor")
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (tmp_path / "lkt-supervisor").is_dir()


def test_enable_controllers_writes_only_the_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    assert cgroups.enable_controllers(tmp_path) == ["cpu", "memory", "pids"]
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +pids"


def test_create_on_v1_copies_the_cpuset_of_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    for c in ("cpuset", "memory"):
        (tmp_path / c).mkdir()
    (tmp_path / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (tmp_path / "cpuset" / "cpuset.mems").write_text("0\n")
    orig_mkdir = Path.mkdir

    def mkdir(self: Path, *a: object, **k: object) -> None:  # the kernel makes empty cpuset files
        orig_mkdir(self, *a, **k)  # type: ignore[arg-type]
        if self.parts[len(tmp_path.parts)] == "cpuset":
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (self / knob).touch()

    monkeypatch.setattr(Path, "mkdir", mkdir)
    layout = cgroups.plan("v1", systemd=False)
    cgroups.create(layout, "/lkt-vm-a", leaves=("system",))
    assert (tmp_path / "cpuset/lkt-vm-a/system/cpuset.cpus").read_text() == "0-1\n"
    assert (tmp_path / "memory/lkt-vm-a/system").is_dir()
    assert [p.parent.name for p in layout.dirs("/lkt-vm-a")] == ["cpuset", "memory"]


def test_adopt_scope_refuses_a_process_outside_the_scope() -> None:
    layout = cgroups.plan("v2", systemd=True)
    if SCOPED in Path(f"/proc/{os.getpid()}/cgroup").read_text():
        pytest.skip("this test runs inside the kit's scope")
    with pytest.raises(cgroups.CgroupError, match="not in the delegated scope"):
        cgroups.adopt_scope(layout)
    cgroups.adopt_scope(cgroups.plan("v1", systemd=False))  # nothing to adopt without a scope
