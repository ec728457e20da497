"""Liqo's source: identified as the pinned version or refused in one error naming what it is."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from labkit import setup_steps
from labkit import gobuild
from labkit.images.liqo import source

pytestmark = pytest.mark.unit

GO_MOD = "module github.com/liqotech/liqo\n\ngo 1.22.0\n"


def _fake_source(root: Path, text: str = "v1") -> Path:
    """A tiny tree shaped like Liqo's source (go.mod of its module, an executable, a symlink, an empty dir)."""
    (root / "cmd" / "liqoctl").mkdir(parents=True)
    (root / "go.mod").write_text(GO_MOD)
    (root / "cmd" / "liqoctl" / "main.go").write_text(f"package main // {text}\n")
    (root / "hack").mkdir()
    (root / "hack" / "run.sh").write_text("#!/bin/sh\n")
    (root / "hack" / "run.sh").chmod(0o755)
    (root / "hack" / "link").symlink_to("run.sh")
    (root / "empty").mkdir()
    return root


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_tree_id_is_gits(tmp_path: Path) -> None:
    root = _fake_source(tmp_path / "src")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    assert source.git_tree_id(root) == _git(root, "write-tree")


def test_a_directory_of_another_version_is_refused_naming_it(tmp_path: Path) -> None:
    root = _fake_source(tmp_path / "liqo-v0.9.0")
    with pytest.raises(source.SourceError) as err:
        source.check_directory(root, "v0.10.2")
    text = str(err.value)
    assert str(root) in text and "not v0.10.2" in text and source.git_tree_id(root)[:12] in text


def test_a_directory_that_is_not_liqo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/other\n")
    with pytest.raises(source.SourceError, match="not Liqo's source"):
        source.check_directory(tmp_path, "v0.10.2")


def test_a_known_tree_is_named_by_its_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_source(tmp_path / "src")
    monkeypatch.setitem(source.RELEASES, "v9.9.9", source.Release(commit="0" * 40, tree=source.git_tree_id(root)))
    assert source.check_directory(root, "v9.9.9") == source.git_tree_id(root)
    with pytest.raises(source.SourceError, match="holds Liqo v9.9.9, not v0.10.2"):
        source.check_directory(root, "v0.10.2")


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_a_git_checkout_of_another_tag_is_named(tmp_path: Path) -> None:
    root = _fake_source(tmp_path / "clone")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "release")
    _git(root, "tag", "v0.9.0")
    with pytest.raises(source.SourceError, match=r"holds Liqo v0\.9\.0, not v0\.10\.2"):
        source.check_directory(root, "v0.10.2")


def _tarball(path: Path, root: Path, commit: str) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) as tar:
        tar.add(root, arcname=root.name)
    return path


def test_a_tarball_of_another_commit_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = _tarball(tmp_path / "liqo.tar.gz", _fake_source(tmp_path / "liqo-x"), "ab" * 20)
    monkeypatch.setenv(source.SOURCE_ENV, str(tarball))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(source.SourceError, match=r"commit abababababab, not v0\.10\.2"):
        source.fetch("v0.10.2", log=lambda _: None)
    assert not source.source_ready("v0.10.2")


def test_a_tarball_is_unpacked_and_kept_when_its_tree_is_the_release(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_source(tmp_path / "liqo-v9.9.9")
    commit = "cd" * 20
    monkeypatch.setitem(source.RELEASES, "v9.9.9", source.Release(commit=commit, tree=source.git_tree_id(root)))
    monkeypatch.setenv(source.SOURCE_ENV, str(_tarball(tmp_path / "liqo.tar.gz", root, commit)))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    kept = source.fetch("v9.9.9", log=lambda _: None)
    assert source.source_ready("v9.9.9") and (kept / "hack" / "link").is_symlink()
    assert (kept / source.CHECKED).read_text() == f"v9.9.9 tree {source.RELEASES['v9.9.9'].tree}\n"


def test_a_missing_source_path_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(source.SOURCE_ENV, str(tmp_path / "nowhere.tar.gz"))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(source.SourceError, match="nowhere.tar.gz: no such file"):
        source.fetch("v0.10.2", log=lambda _: None)


def test_missing_go_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gobuild, "go_binary", lambda: None)
    with pytest.raises(setup_steps.SetupError, match=r"Go is needed to build Liqo v0\.10\.2"):
        source.build("v0.10.2", log=lambda _: None)


def test_setup_without_any_source_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(source.SOURCE_ENV, raising=False)
    which = shutil.which
    monkeypatch.setattr(source.shutil, "which", lambda name, **kw: None if name == "git" else which(name, **kw))
    lines: list[str] = []
    source.setup_step().run(lines.append)
    assert len(lines) == 1 and "no Liqo source" in lines[0] and "peering: kit" in lines[0]


def test_liqoctl_version_is_set_by_the_linker() -> None:
    assert source.ldflags("v0.10.2") == \
        "-s -w -X 'github.com/liqotech/liqo/pkg/liqoctl/version.liqoctlVersion=v0.10.2'"


@pytest.mark.skipif(not Path(os.environ.get(source.SOURCE_ENV, "/nonexistent")).is_file(),
                    reason=f"{source.SOURCE_ENV} does not name the v0.10.2 tarball")
def test_the_vendored_tag_is_v0_10_2() -> None:
    tarball = Path(os.environ[source.SOURCE_ENV])
    assert source.archive_commit(tarball) == source.RELEASES["v0.10.2"].commit
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert any(n.endswith("deployments/liqo/Chart.yaml") for n in names)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_a_git_checkout_at_the_tag_is_kept_without_what_a_build_left(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_source(tmp_path / "clone")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "release")
    _git(root, "tag", "v9.9.9")
    monkeypatch.setitem(source.RELEASES, "v9.9.9", source.Release(commit=_git(root, "rev-parse", "HEAD"),
                                                                  tree=_git(root, "rev-parse", "HEAD^{tree}")))
    (root / "liqoctl").write_bytes(b"a binary built in the checkout")  # untracked
    monkeypatch.setenv(source.SOURCE_ENV, str(root))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    kept = source.fetch("v9.9.9", log=lambda _: None)
    assert (kept / "go.mod").is_file() and not (kept / "liqoctl").exists() and not (kept / ".git").exists()
