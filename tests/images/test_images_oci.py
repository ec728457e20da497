"""OCI writer: determinism and layout on tiny synthetic layers (no Docker, no containerd)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from labkit.images import oci
from labkit.images.build import build_layer
from labkit.images.containerd import archive_ref, import_archive
from labkit.images.sources import ImageError, drop_dirs, locked_closure, runtime_requirements

pytestmark = pytest.mark.unit

EPOCH = 1_700_000_000


def _entries() -> list[oci.Entry]:
    """A small tree: files, an executable, a symlink, a device node and a hard-link pair."""
    big = oci.file_entry("usr/bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755)
    big.info.mtime = EPOCH + 999  # newer than the epoch: must be clamped
    link_first = oci.file_entry("a/aa-link", b"shared", mode=0o644)
    link_first.group = "shared"
    link_second = oci.file_entry("z/zz-target", b"shared", mode=0o644)
    link_second.group = "shared"
    dev = tarfile.TarInfo("dev/null")
    dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.CHRTYPE, 1, 3, 0o666
    owned = oci.file_entry("var/lib/x/data", b"x" * 5000, uid=42, gid=42)
    owned.info.uname = "someone"
    return [big, oci.file_entry("etc/hostname", b"node\n"), oci.symlink_entry("bin", "usr/bin"),
            link_second, link_first, oci.Entry(dev), owned]


def _tar_members(layer: oci.Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(layer.path, "r:gz") as tar:
        return tar.getmembers()


def test_same_entries_any_order_same_digests(tmp_path: Path) -> None:
    first = oci.write_layer(_entries(), tmp_path / "a", epoch=EPOCH)
    second = oci.write_layer(list(reversed(_entries())), tmp_path / "b", epoch=EPOCH)
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id, second.size)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_digests_are_sha256_of_blob_and_of_uncompressed_tar(tmp_path: Path) -> None:
    layer = oci.write_layer(_entries(), tmp_path, epoch=EPOCH)
    blob = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest() == "sha256:" + layer.path.name
    assert layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert layer.size == len(blob)
    assert blob[4:8] == b"\0\0\0\0"  # gzip header mtime = 0


def test_different_content_different_digest(tmp_path: Path) -> None:
    base = oci.write_layer([oci.file_entry("f", b"one")], tmp_path, epoch=EPOCH)
    other = oci.write_layer([oci.file_entry("f", b"two")], tmp_path, epoch=EPOCH)
    assert base.digest != other.digest and base.diff_id != other.diff_id


def test_entries_are_sorted_normalised_and_parents_added(tmp_path: Path) -> None:
    members = _tar_members(oci.write_layer(_entries(), tmp_path, epoch=EPOCH))
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {"usr", "var", "var/lib", "var/lib/x", "a", "z", "dev"} <= set(names)
    assert all(m.mtime <= EPOCH and m.uname == "" and m.gname == "" for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["var/lib/x/data"].uid == 42  # numeric ownership kept
    assert by_name["usr/bin/tool"].mode == 0o755
    assert by_name["dev/null"].ischr() and by_name["dev/null"].devminor == 3
    assert by_name["bin"].issym() and by_name["bin"].linkname == "usr/bin"


def test_hard_links_point_at_the_first_name_in_sorted_order(tmp_path: Path) -> None:
    members = {m.name: m for m in _tar_members(oci.write_layer(_entries(), tmp_path, epoch=EPOCH))}
    assert members["a/aa-link"].isreg() and members["a/aa-link"].size == 6
    assert members["z/zz-target"].islnk() and members["z/zz-target"].linkname == "a/aa-link"


def test_entries_from_tar_reorders_hard_links_safely(tmp_path: Path) -> None:
    source = tmp_path / "rootfs.tar"
    with tarfile.open(source, "w") as tar:
        target = tarfile.TarInfo("./usr/bin/perl5")
        target.size, target.mode, target.mtime = 3, 0o755, EPOCH + 5
        target.pax_headers = {"SCHILY.xattr.security.capability": "cap", "atime": "123.4"}
        tar.addfile(target, io.BytesIO(b"pl!"))
        link = tarfile.TarInfo("./usr/bin/perl")
        link.type, link.linkname = tarfile.LNKTYPE, "./usr/bin/perl5"
        tar.addfile(link)
    with tarfile.open(source) as tar:
        layer = oci.write_layer(oci.entries_from_tar(tar), tmp_path / "store", epoch=EPOCH)
    out = tmp_path / "out"
    with tarfile.open(layer.path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        tar.extractall(out, filter="tar")
    assert members["usr/bin/perl"].isreg() and members["usr/bin/perl5"].islnk()
    assert members["usr/bin/perl5"].linkname == "usr/bin/perl"
    assert members["usr/bin/perl"].pax_headers == {"SCHILY.xattr.security.capability": "cap"}
    assert (out / "usr/bin/perl5").read_bytes() == b"pl!"


def test_entries_from_dir_ignores_mtimes_and_umask(tmp_path: Path) -> None:
    def tree(root: Path, mode: int, mtime: int) -> Path:
        (root / "pkg").mkdir(parents=True)
        (root / "pkg" / "mod.py").write_text("x = 1\n")
        (root / "pkg" / "run").write_text("#!/bin/sh\n")
        os.chmod(root / "pkg" / "mod.py", mode)
        os.chmod(root / "pkg" / "run", 0o700)
        os.link(root / "pkg" / "mod.py", root / "pkg" / "alias.py")
        for path in (root / "pkg" / "mod.py", root / "pkg" / "run", root / "pkg"):
            os.utime(path, (mtime, mtime))
        return root

    one = tree(tmp_path / "one", 0o600, EPOCH + 10)
    two = tree(tmp_path / "two", 0o664, EPOCH + 99999)
    a = oci.write_layer(oci.entries_from_dir(one, "opt/x"), tmp_path / "s", epoch=EPOCH)
    b = oci.write_layer(oci.entries_from_dir(two, "opt/x"), tmp_path / "s", epoch=EPOCH)
    assert a.digest == b.digest
    members = {m.name: m for m in _tar_members(a)}
    assert members["opt/x/pkg/mod.py"].mode == 0o644 and members["opt/x/pkg/run"].mode == 0o755
    assert members["opt/x/pkg/mod.py"].islnk() and members["opt/x/pkg/mod.py"].linkname == "opt/x/pkg/alias.py"


def test_uncompressed_layers(tmp_path: Path) -> None:
    layer = oci.write_layer([oci.file_entry("f", b"data")], tmp_path, compress=False, epoch=EPOCH)
    assert layer.media_type == oci.MEDIA_LAYER_TAR and layer.digest == layer.diff_id


def _archive(tmp_path: Path, name: str) -> oci.Archive:
    layers = [oci.write_layer(_entries(), tmp_path / "blobs", epoch=EPOCH),
              oci.write_layer([oci.file_entry("app/main.py", b"print(1)\n")], tmp_path / "blobs", epoch=EPOCH)]
    config = oci.ImageConfig(entrypoint=("/pause",), cmd=("-v",), env=("A=1",), workdir="/app")
    return oci.write_archive(tmp_path / name, "labkit.local/demo:1", layers, config, epoch=EPOCH)


def test_archive_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first, second = _archive(tmp_path, "one.tar"), _archive(tmp_path, "two.tar")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.manifest_digest == second.manifest_digest


def test_archive_is_a_standard_oci_layout(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "demo.tar")
    with tarfile.open(archive.path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"] == {oci.ANNOTATION_CONTAINERD_NAME: "labkit.local/demo:1",
                                    oci.ANNOTATION_REF_NAME: "1"}
    assert entry["digest"] == archive.manifest_digest and index["schemaVersion"] == 2
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].split(":")[1]])
    assert manifest["mediaType"] == oci.MEDIA_MANIFEST
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/pause"] and config["config"]["WorkingDir"] == "/app"
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    for descriptor, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        blob = files["blobs/sha256/" + descriptor["digest"].split(":")[1]]
        assert descriptor["size"] == len(blob)
        assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_id
    assert archive_ref(archive.path) == "labkit.local/demo:1"


class _CountingSource:
    """A fake layer source counting how often it is built."""

    def __init__(self, name: str, content: bytes) -> None:
        self.name, self.content, self.builds = name, content, 0

    def key(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def layer(self, work: Path, store: Path, log: object) -> oci.Layer:
        self.builds += 1
        return oci.write_layer([oci.file_entry("f", self.content)], store, epoch=EPOCH)


def test_cache_rebuilds_only_changed_layers(tmp_path: Path) -> None:
    base, app = _CountingSource("base", b"base"), _CountingSource("app", b"v1")
    for _ in range(2):
        build_layer(base, tmp_path, log=lambda _: None)
        build_layer(app, tmp_path, log=lambda _: None)
    assert (base.builds, app.builds) == (1, 1)
    app.content = b"v2"
    build_layer(base, tmp_path, log=lambda _: None)
    changed = build_layer(app, tmp_path, log=lambda _: None)
    assert (base.builds, app.builds) == (1, 2)
    assert changed.path.exists()


def test_runtime_requirements_leave_out_notebook_tooling() -> None:
    root = Path(__file__).resolve().parents[2]
    names = [r.split("==")[0] for r in runtime_requirements(root / "pyproject.toml")]
    assert "numpy" in names and "pandapower" in names
    assert not {"jupyterlab", "papermill", "ipykernel", "invoke", "nbconvert"} & set(names)
    assert not {"kubernetes", "matplotlib", "seaborn", "pyroute2", "asyncssh"} & set(names)  # host side only
    assert not {"kubernetes", "matplotlib"} & {p.split("==")[0] for p in locked_closure(names)}


def test_locked_closure_pins_transitive_dependencies() -> None:
    pins = locked_closure(["pyyaml==6.0.3", "requests"])
    names = {p.split("==")[0] for p in pins}
    assert {"pyyaml", "requests", "urllib3", "idna"} <= names
    assert all("==" in p for p in pins) and pins == sorted(pins)


def test_drop_dirs_removes_test_suites_inside_packages_only(tmp_path: Path) -> None:
    for rel, size in [("numpy/core/tests/test_a.py", 10), ("numpy/core/tests/data/x.npy", 5),
                      ("numpy/core/multiarray.py", 7), ("pandas/tests/t.py", 3), ("tests/keep.py", 1)]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * size)
    assert drop_dirs(tmp_path, {"tests"}) == 18
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["numpy/core/multiarray.py", "tests/keep.py"]


def test_import_archive_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such archive"):
        import_archive(tmp_path / "missing.tar", tmp_path / "sock")
    archive = _archive(tmp_path, "demo.tar")
    with pytest.raises(ImageError, match="does not exist"):
        import_archive(archive.path, tmp_path / "no.sock")


def test_binary_image_is_cached_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.images import binary_image_spec, build_spec

    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF fake static binary")
    image = binary_image_spec("tool", "7", binary, args=("--serve",))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache-a"))
    first = build_spec(image, log=lambda _: None)
    again = build_spec(image, log=lambda _: None)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache-b"))
    other = build_spec(image, log=lambda _: None)
    assert first == again and first.path.is_relative_to(tmp_path / "cache-a")
    assert first.manifest_digest == other.manifest_digest
    assert first.path.read_bytes() == other.path.read_bytes()
    assert archive_ref(first.path) == "labkit.local/tool:7"


def test_setup_steps_name_each_image_and_root_needs() -> None:
    from labkit.images import APT_PACKAGES, setup_steps

    steps = {s.name: s for s in setup_steps()}
    assert list(steps) == ["image-pause", "image-runtime", "image-probe", "image-galera", "image-liqo", "image-store"]
    assert not steps["image-pause"].needs_root
    assert all(steps[f"image-{name}"].needs_root for name in ("runtime", "probe", "galera", "liqo", "store"))
    assert {"mmdebstrap", "containerd"} <= set(APT_PACKAGES)


def test_probe_image_is_the_runtime_rootfs_layer_alone() -> None:
    from labkit.images import spec

    probe, runtime = spec("probe"), spec("runtime")
    assert len(probe.layers) == 1 and len(runtime.layers) > 1
    assert probe.layers[0].key() == runtime.layers[0].key()  # one cached blob, one snapshot on a node
    assert probe.config.cmd == ("sleep", "infinity")


def test_rootfs_build_without_root_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.images.sources import DebianRootfs

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match="needs root.*not root"):
        DebianRootfs("demo-rootfs", ("python3",)).layer(tmp_path, tmp_path / "store", lambda _: None)


def test_rebuild_keeps_an_archive_another_checkout_just_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.images import binary_image_spec, build_spec

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    binary = tmp_path / "tool"
    binary.write_bytes(b"v1")
    spec_v1 = binary_image_spec("tool", "1", binary)
    used = build_spec(spec_v1, log=lambda _: None)
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(used.path, (day_ago, day_ago))
    assert build_spec(spec_v1, log=lambda _: None) == used  # a pipeline run reuses it: that refreshes it
    binary.write_bytes(b"v2")
    build_spec(binary_image_spec("tool", "1", binary), log=lambda _: None)  # a worktree builds its own
    assert used.path.exists()  # still there for the run importing it


def test_rootfs_emptied_directories_keep_the_directory_only() -> None:
    from labkit.images.sources import DebianRootfs

    rootfs = DebianRootfs("galera-rootfs", ("mariadb-server",), emptied=("var/lib/mysql",))
    keep = {name: rootfs.keep(oci.file_entry(name, b"")) for name in
            ("./var/lib/mysql", "var/lib/mysql/ibdata1", "./var/lib/mysql/mysql/user.frm", "var/lib/mysql-files/x")}
    assert keep == {"./var/lib/mysql": True, "var/lib/mysql/ibdata1": False,
                    "./var/lib/mysql/mysql/user.frm": False, "var/lib/mysql-files/x": True}


def test_gc_keeps_what_archives_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.images import binary_image_spec, build_spec, gc, images_dir

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    binary = tmp_path / "tool"
    binary.write_bytes(b"v1")
    old = build_spec(binary_image_spec("tool", "1", binary), log=lambda _: None)
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old.path, (day_ago, day_ago))
    binary.write_bytes(b"v2")
    new = build_spec(binary_image_spec("tool", "1", binary), log=lambda _: None)
    assert not old.path.exists()  # older archive of the same image, unused for a day: pruned on rebuild
    assert gc(log=lambda _: None) > 0
    blobs = {p.name for p in (images_dir() / "blobs" / "sha256").iterdir()}
    assert blobs == {new.layers[0].digest.split(":")[1]}
    assert build_spec(binary_image_spec("tool", "1", binary), log=lambda _: None) == new
