"""The node image store (labkit.images.store): seeding a containerd root, and a seeded containerd at work."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from labkit import images
from labkit.images import store
from labkit.images.containerd import private_containerd


def _fake_store(root: Path) -> Path:
    """A containerd root's shape: two databases, two snapshots, two blobs."""
    for rel in store.COPIED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"db " + rel.encode())
    for sid in ("1", "2"):
        (root / store.LINKED[0] / sid / "fs").mkdir(parents=True)
        (root / store.LINKED[0] / sid / "fs" / "file").write_text(sid)
    (root / store.LINKED[1]).mkdir(parents=True)
    for blob in ("aa", "bb"):
        (root / store.LINKED[1] / blob).write_text(blob)
    return root


@pytest.mark.unit
def test_seed_links_snapshots_and_blobs_and_copies_the_databases(tmp_path: Path) -> None:
    src, dest = _fake_store(tmp_path / "store"), tmp_path / "node"
    assert store.seed(src, dest)
    for rel in store.LINKED:
        entries = sorted((dest / rel).iterdir())
        assert [e.name for e in entries] == sorted(e.name for e in (src / rel).iterdir())
        assert all(e.is_symlink() and e.resolve() == (src / rel / e.name).resolve() for e in entries)
    for rel in store.COPIED:
        assert not (dest / rel).is_symlink() and (dest / rel).read_bytes() == (src / rel).read_bytes()
        (dest / rel).write_bytes(b"changed by the node")  # a node's writes stay in the node
        assert (src / rel).read_bytes() == b"db " + rel.encode()


@pytest.mark.unit
def test_seed_leaves_a_used_root_alone(tmp_path: Path) -> None:
    src, dest = _fake_store(tmp_path / "store"), tmp_path / "node"
    (dest / store.COPIED[0]).parent.mkdir(parents=True)
    (dest / store.COPIED[0]).write_bytes(b"a containerd's own")
    assert not store.seed(src, dest)
    assert (dest / store.COPIED[0]).read_bytes() == b"a containerd's own"
    assert not (dest / store.LINKED[0]).exists()


@pytest.mark.unit
def test_store_key_follows_archives_and_containerd_version() -> None:
    a, b = Path("/c/runtime-1.oci.tar"), Path("/c/runtime-2.oci.tar")
    assert store.store_key([a], "containerd 1.6.20") == store.store_key([Path("/x/runtime-1.oci.tar")], "containerd 1.6.20")
    assert store.store_key([a], "containerd 1.6.20") != store.store_key([b], "containerd 1.6.20")
    assert store.store_key([a], "containerd 1.6.20") != store.store_key([a], "containerd 1.7.0")


@pytest.mark.embedded
def test_seeded_containerd_runs_the_image_and_removing_it_spares_the_store() -> None:
    for command in ("containerd", "ctr", "runc", "mmdebstrap"):
        if not shutil.which(command):
            pytest.skip(f"needs {command} (`invoke setup`)")
    archive = images.build("probe")
    workdir = Path(tempfile.mkdtemp(prefix="labkit-store-", dir="/tmp"))
    try:
        built = workdir / "store"
        store.build_store(built, [archive], log=lambda _: None)
        node = workdir / "node"
        assert store.Store(built / "root", (archive,)).seed(node / "root")
        snapshots = sorted((built / "root" / store.LINKED[0]).iterdir())
        with (workdir / "containerd.log").open("w") as log, private_containerd(node, log) as socket:
            ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
            listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout
            assert images.image_ref("probe") in listed.split()
            out = subprocess.run([*ctr, "run", "--rm", images.image_ref("probe"), "seeded", "sh", "-c",
                                  "echo written > /etc/seeded && cat /etc/seeded && ip -V"],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr[-2000:]
            assert out.stdout.startswith("written") and "iproute2" in out.stdout
            subprocess.run([*ctr, "images", "rm", "--sync", images.image_ref("probe")], check=True,
                           capture_output=True, timeout=60)
        assert not list((node / "root" / store.LINKED[0]).iterdir()), "the node's garbage collection kept its links"
        assert not (built / "root" / store.LINKED[0] / "1" / "fs" / "etc" / "seeded").exists()
        assert all((s / "fs" / "etc").is_dir() for s in snapshots), "the node's removal reached the store"
    finally:
        subprocess.run(["umount", "-R", "-l", str(workdir / "node" / "root")], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
