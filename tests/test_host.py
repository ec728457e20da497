"""labkit.host: cgroup layout detection (v1, v2, hybrid) and the root check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import host

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
    assert host.cgroup_layout(_fake(tmp_path / "a", v1=False, v2_root=True)) == "v2"


def test_cgroup_v1_with_empty_unified(tmp_path: Path) -> None:
    assert host.cgroup_layout(_fake(tmp_path / "a", v1=True, unified="")) == "v1"


def test_cgroup_hybrid(tmp_path: Path) -> None:
    assert host.cgroup_layout(_fake(tmp_path / "a", v1=True, unified="hugetlb\n")) == "hybrid"


def test_cgroup_none(tmp_path: Path) -> None:
    assert host.cgroup_layout(tmp_path) == "none"


def test_facts_of_this_host() -> None:
    facts = host.facts()
    assert facts.cpus >= 1 and facts.memory_gib > 0
    assert facts.root == (os.geteuid() == 0)


def test_require_root_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(host.PrivilegeError, match="creating namespaces needs root"):
        host.require_root("creating namespaces")
