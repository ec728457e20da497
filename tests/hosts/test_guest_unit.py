"""labkit.guest's pure parts: the image recipe, the guest's files, qemu and ssh lines, the skip rule."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from labkit.guest import fits, image, machine, run, wheels

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_recipe_key_changes_with_what_goes_in() -> None:
    base = image.Recipe(repo_packages=("containerd",))
    assert base.key("1.3.5") == image.Recipe(repo_packages=("containerd",)).key("1.3.5")
    assert base.key("1.3.5").startswith("bookworm-")
    for other in (image.Recipe(repo_packages=("runc",)), image.Recipe(suite="trixie", repo_packages=("containerd",)),
                  image.Recipe(repo_packages=("containerd",), sources=(("sources.list", "deb x y z\n"),))):
        assert other.key("1.3.5") != base.key("1.3.5")
    assert base.key("1.4") != base.key("1.3.5")


def test_mmdebstrap_downloads_the_repository_before_replacing_the_sources() -> None:
    argv = image.Recipe(repo_packages=("runc", "containerd")).mmdebstrap_argv(Path("/t"), Path("/o"), Path("/r"))
    assert argv[:2] == ["mmdebstrap", "--quiet"] and argv[-2:] == ["bookworm", "/t"]
    hooks = [a.split("=", 1)[1] for a in argv if a.startswith("--customize-hook=")]
    assert "--download-only" in hooks[0] and hooks[0].endswith("containerd runc")
    assert hooks.index('cp -a /o/. "$1"/') > hooks.index('rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*')
    assert "--variant=important" in argv and any("systemd-sysv" in a for a in argv)


def test_guest_files_point_apt_and_pip_at_the_host_and_keep_the_hosts_sources() -> None:
    files = image.guest_files(image.Recipe(sources=(("sources.list.d/debian.sources", "Types: deb\n"),)))
    assert files["etc/apt/sources.list.d/debian.sources"] == "Types: deb\n"
    assert files["etc/labkit-guest/apt/sources.list"] == "deb [trusted=yes] http://10.251.0.1:8000/debs ./\n"
    assert 'Dir::Etc::SourceList "/etc/labkit-guest/apt/sources.list";' in files["etc/apt/apt.conf.d/00labkit-guest"]
    assert "no-index = true" in files["etc/pip.conf"] and "find-links = http://10.251.0.1:8000/wheels/" in files["etc/pip.conf"]
    assert "Address=10.251.0.2/24" in files["etc/systemd/network/10-lab.network"]
    assert "Gateway" not in files["etc/systemd/network/10-lab.network"]  # no route beyond the host-only network


def test_host_sources_reads_list_and_parts(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text("a\n")
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text("b\n")
    assert image.host_sources(tmp_path) == (("sources.list.d/debian.sources", "a\n"),
                                            ("sources.list.d/old.list.disabled", "b\n"))


def test_packages_index_and_release(tmp_path: Path) -> None:
    deb = tmp_path / "runc_1.1.5_amd64.deb"
    deb.write_bytes(b"not really a deb")
    text = image.packages_index([deb], fields=lambda p: "Package: runc\nVersion: 1.1.5\n")
    assert text.startswith("Package: runc\nVersion: 1.1.5\nFilename: ./runc_1.1.5_amd64.deb\nSize: 16\nSHA256: ")
    release = image.release_file(text, "Sat, 05 Dec 2026 10:00:00 UTC")
    assert release.endswith(f" {len(text.encode())} Packages\n") and "SHA256:\n " in release


def test_kernel_cmdline_asks_for_cgroup_v2() -> None:
    line = image.kernel_cmdline()
    assert "systemd.unified_cgroup_hierarchy=1" in line and "root=/dev/vda" in line


def test_qemu_line_uses_kvm_the_tap_and_the_overlay() -> None:
    img = image.Image(Path("/c/guest/k"))
    argv = machine.qemu_argv(img, Path("/run/o.qcow2"), Path("/run/console.log"), machine.Resources(2, 11264))
    line = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64" and "accel=kvm" in line and "-smp 2 -m 11264" in line
    assert "-kernel /c/guest/k/vmlinuz" in line and "-initrd /c/guest/k/initrd.img" in line
    assert "file=/run/o.qcow2,format=qcow2" in line and f"ifname={machine.TAP},script=no" in line
    assert "-serial file:/run/console.log" in line and "-no-reboot" in argv


def test_ssh_line_is_batch_root_with_the_key() -> None:
    argv = machine.ssh_argv(Path("/k/id"), "uname -r")
    assert argv[0] == "ssh" and argv[-2:] == ["root@10.251.0.2", "uname -r"]
    assert ["-i", "/k/id"] == argv[1:3] and "BatchMode=yes" in argv


def _room(**changes: object) -> fits.Room:
    base = dict(named=True, kvm=True, root=True, qemu=True, available_mib=20000, free_gib=70.0,
                guest_mib=11264)
    return fits.Room(**{**base, **changes})  # type: ignore[arg-type]


def test_the_tier_runs_only_when_named_and_where_it_fits() -> None:
    assert fits.reason(_room()) is None
    assert "runs by hand before a release" in fits.reason(_room(named=False))
    assert "/dev/kvm" in fits.reason(_room(kvm=False))
    assert "needs root" in fits.reason(_room(root=False))
    assert "qemu-system-x86_64" in fits.reason(_room(qemu=False))
    assert "would not fit" in fits.reason(_room(available_mib=12000))
    assert "free disk" in fits.reason(_room(free_gib=10))


def test_readme_commands_are_the_two_of_the_bash_block() -> None:
    install, test = run.readme_commands((ROOT / "README.md").read_text())
    assert install.startswith("./bootstrap.sh && ") and " lab " in install
    assert test.endswith("invoke test")
    in_guest = run.guest_commands((ROOT / "README.md").read_text())
    assert in_guest[0] == f"{install} --only {run.PIPELINE_ONLY}"
    assert shlex.split(in_guest[1])[:len(shlex.split(test))] == shlex.split(test)
    assert all((ROOT / f).exists() for f in (run.GUEST_TESTS + " " + run.GUEST_TESTS_TCG).split())
    tcg = run.guest_commands((ROOT / "README.md").read_text(), "tcg")
    assert tcg[0] == install[:install.index(" lab ")] and tcg[0].endswith("invoke setup")
    assert "test_cgroups.py" in tcg[1] and "test_thesis_peering" not in tcg[1]


def test_readme_without_the_block_is_named() -> None:
    with pytest.raises(run.ReadmeError, match="no '## Two commands'"):
        run.readme_commands("# labkit\n")
    with pytest.raises(run.ReadmeError, match="expected 2 commands"):
        run.readme_commands("## Two commands\n```bash\nmake\n```\n")


def test_wheelhouse_requirements_hold_every_pin_pip_and_the_backend() -> None:
    reqs = wheels.requirements(ROOT)
    assert "pyroute2==0.9.7" in reqs and "pytest==9.2.0" in reqs
    assert f"pip=={wheels.bootstrap_pip(ROOT / 'bootstrap.sh')}" in reqs
    assert any(r.startswith("setuptools==") for r in reqs) and not any(r.startswith("setuptools>") for r in reqs)


def test_download_for_the_guests_python_takes_wheels_only(tmp_path: Path) -> None:
    argv = wheels.download_argv(["numpy==2.4.6"], tmp_path, "3.11.2")
    assert "--only-binary=:all:" in argv and argv[argv.index("--python-version") + 1] == "3.11.2"
    assert "--python-version" not in wheels.download_argv(["numpy==2.4.6"], tmp_path)
    platforms = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_28_x86_64" in platforms  # numpy 2.4
    assert wheels.download_argv(["x==1"], tmp_path, no_deps=True)[-2:] == ["--no-deps", "x==1"]


@pytest.mark.parametrize(("name", "project"), [("soupsieve-2.5-py3-none-any.whl", "soupsieve"),
                                               ("synchrophasor-1.0.0-alpha.tar.gz", "synchrophasor"),
                                               ("PyYAML-6.0.3-cp311-cp311-manylinux.whl", "pyyaml"),
                                               ("typing_extensions-4.12.2-py3-none-any.whl", "typing-extensions")])
def test_project_names_of_files(name: str, project: str) -> None:
    assert wheels.project_name(name) == project


def test_the_hosts_tier_skips_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fits.NAMED, raising=False)
    assert "runs by hand" in (fits.skip_reason() or "")


def test_tcg_line_when_kvm_cannot_boot_the_distribution_kernel(tmp_path: Path) -> None:
    argv = machine.qemu_argv(image.Image(Path("/c")), Path("/o"), Path("/l"), machine.Resources(accel="tcg"))
    assert "accel=kvm" not in " ".join(argv) and "tcg,thread=multi,tb-size=512" in argv
    (tmp_path / "kvm_pvm").mkdir()
    assert not machine.kvm_boots_distribution_kernels(tmp_path)  # PVM only: Debian's kernel hangs
    (tmp_path / "kvm_intel").mkdir()
    assert machine.kvm_boots_distribution_kernels(tmp_path)
    assert machine.kvm_boots_distribution_kernels(tmp_path / "nothing")
