"""labkit.testbed.embedded.disk: the VMs' own file system, in a sparse image file."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from labkit.testbed.embedded import disk


@pytest.mark.unit
def test_a_bad_mode_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(disk.MODE_ENV, "ramdisk")
    with pytest.raises(disk.DiskError, match=f"{disk.MODE_ENV}='ramdisk': expected one of image, host"):
        disk.mode()


@pytest.mark.unit
def test_host_mode_keeps_the_state_on_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(disk.MODE_ENV, "host")
    monkeypatch.setattr(disk, "IMAGE", tmp_path / "lkt.disk")
    root = tmp_path / "lkt"
    assert disk.ensure(root, log=pytest.fail) == "host"
    assert root.is_dir() and not disk.mounted(root) and not disk.IMAGE.exists()


@pytest.mark.embedded
def test_the_image_is_mounted_once_and_released_with_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip("needs root and loop devices")
    monkeypatch.delenv(disk.MODE_ENV, raising=False)
    monkeypatch.setattr(disk, "IMAGE", tmp_path / "lkt.disk")
    monkeypatch.setattr(disk, "HOST_TRASH", tmp_path / "lkt-trash")
    root = tmp_path / "lkt"
    (root / ".trash").mkdir(parents=True)                                 # what a run on the host's file system left
    (root / "vm-a" / "logs").mkdir(parents=True)
    try:
        assert disk.ensure(root, log=lambda _: None) == "image"
        assert disk.mounted(root) and list(root.iterdir()) == []          # no lost+found among the VMs
        fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", str(root)], capture_output=True, text=True)
        assert fstype.stdout.strip() == "ext4"
        (root / "vm-a" / "containerd").mkdir(parents=True)
        (root / "vm-a" / "containerd" / "layer").write_bytes(b"x" * 4096)
        assert disk.ensure(root, log=pytest.fail) == "image"               # already there: nothing new
        used = disk.IMAGE.stat().st_blocks * 512
        assert used < disk.IMAGE.stat().st_size / 100                     # sparse
    finally:
        disk.release(root)
    assert not disk.mounted(root) and not disk.IMAGE.exists() and list(root.iterdir()) == []
    deadline = time.monotonic() + 10                                      # the leftovers were deleted aside
    while any(disk.HOST_TRASH.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(disk.HOST_TRASH.iterdir()) == []
