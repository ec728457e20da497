"""Build images and import them into a throwaway containerd (root, containerd, runc, Go).

Each test module run starts its own containerd in a temporary directory, with its own
socket, root and state, and the CRI plugin disabled (containers are run with ``ctr run``,
not through the kubelet, so no ``restrict_oom_score_adj`` is needed); it is stopped and
its directory removed afterwards, also when a test fails.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import images
from labkit.images import oci
from labkit.images.build import build_layer
from labkit.images.containerd import private_containerd
from labkit.images.sources import GoBinary, LabkitWheel

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[2]


def _need(*commands: str) -> None:
    missing = [c for c in commands if not shutil.which(c)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (`apt-get install containerd runc`)")


@pytest.fixture(scope="module")
def containerd() -> Iterator[str]:
    """Address of a private containerd, stopped and removed afterwards."""
    _need("containerd", "ctr", "runc")
    workdir = Path(tempfile.mkdtemp(prefix="labkit-ctd-", dir="/tmp"))
    try:
        with (workdir / "containerd.log").open("w") as log, private_containerd(workdir, log) as socket:
            try:
                yield str(socket)
            finally:
                _remove_tasks(str(socket))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {seconds} s waiting for {what}")


def _ctr(address: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ctr", "--address", address, "--namespace", "k8s.io", *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _remove_tasks(address: str) -> None:
    """SIGKILL and delete every task and container (PID 1 of a container may ignore TERM)."""
    if not Path(address).exists():
        return
    for line in _ctr(address, "task", "ls", "-q", check=False).stdout.split():
        _ctr(address, "task", "kill", "-s", "SIGKILL", line, check=False)
        _ctr(address, "task", "rm", "-f", line, check=False)
    for line in _ctr(address, "container", "ls", "-q", check=False).stdout.split():
        _ctr(address, "container", "rm", line, check=False)


def _task_status(address: str, task: str) -> str:
    for line in _ctr(address, "task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == task:
            return fields[-1]
    return "MISSING"


def _run_once(address: str, ref: str, name: str, *argv: str, timeout: float = 300) -> str:
    """``ctr run --rm`` a command in image ``ref``; return its output."""
    proc = _ctr(address, "run", "--rm", ref, name, *argv, timeout=timeout)
    return proc.stdout


def test_import_pause_lists_expected_digest(containerd: str) -> None:
    archive = images.build_image("pause")
    ref = images.import_archive(archive.path, containerd)
    assert ref == images.image_ref("pause") == "labkit.local/pause:1"
    listed = {r.ref: r for r in images.list_images(containerd)}
    assert listed[ref].digest == archive.manifest_digest
    assert listed[ref].media_type == oci.MEDIA_MANIFEST
    images.import_archive(archive.path, containerd)  # importing again is harmless
    assert {r.ref: r.digest for r in images.list_images(containerd)}[ref] == archive.manifest_digest


def test_pause_container_stops_on_sigterm(containerd: str) -> None:
    ref = images.import_archive(images.build("pause"), containerd)
    _ctr(containerd, "run", "-d", ref, "pause-sigterm")
    _wait_for(lambda: _task_status(containerd, "pause-sigterm") == "RUNNING", 10, "pause RUNNING")
    time.sleep(0.5)
    assert _task_status(containerd, "pause-sigterm") == "RUNNING"
    _ctr(containerd, "task", "kill", "-s", "SIGTERM", "pause-sigterm")
    _wait_for(lambda: _task_status(containerd, "pause-sigterm") == "STOPPED", 5, "pause STOPPED after SIGTERM")
    _ctr(containerd, "task", "rm", "pause-sigterm")
    _ctr(containerd, "container", "rm", "pause-sigterm")


def test_pause_layer_is_reproducible(tmp_path: Path) -> None:
    source = GoBinary("pause-binary", ROOT / "go" / "pause", "pause")
    first = build_layer(source, tmp_path / "a", log=lambda _: None, force=True)
    second = build_layer(source, tmp_path / "b", log=lambda _: None, force=True)
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)


def test_labkit_wheel_layer_is_reproducible(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # a snapshot: the real tree may change during the test
    shutil.copytree(ROOT / "labkit", checkout / "labkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, checkout / name)
    source = LabkitWheel("labkit-wheel", checkout)
    first = build_layer(source, tmp_path / "a", log=lambda _: None, force=True)
    second = build_layer(source, tmp_path / "b", log=lambda _: None, force=True)
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)


def test_runtime_image_runs_labkit(containerd: str) -> None:
    _need("mmdebstrap")
    ref = images.import_archive(images.build("runtime"), containerd)
    out = _run_once(containerd, ref, "runtime-check", "python", "-c",
                    "import sys, importlib.util as u, labkit, labkit.grid.pdc, numpy, pandas, pandapower, pymysql; "
                    "print(labkit.__version__, sys.prefix, u.find_spec('kubernetes') is None, u.find_spec('pyarrow') is None)")
    assert out.split() == [labkit_version(), "/opt/labkit/venv", "True", "True"]  # host-only packages left out
    assert "ping" in _run_once(containerd, ref, "runtime-ping", "sh", "-c", "command -v ping && command -v ip")


def test_probe_image_pings_and_shares_the_runtime_rootfs(containerd: str) -> None:
    _need("mmdebstrap")
    probe, runtime = images.build_image("probe"), images.build_image("runtime")
    assert probe.layers[0].digest == runtime.layers[0].digest
    ref = images.import_archive(probe.path, containerd)
    assert "ping" in _run_once(containerd, ref, "probe-ping", "sh", "-c", "command -v ping && command -v ip")


def test_galera_image_has_mariadb_and_galera(containerd: str) -> None:
    _need("mmdebstrap")
    ref = images.import_archive(images.build("galera"), containerd)
    out = _run_once(containerd, ref, "galera-check", "sh", "-c",
                    "command -v mariadbd && command -v galera_new_cluster && ls /usr/lib/galera/libgalera_smm.so "
                    "&& mariadbd --version")
    assert "galera_new_cluster" in out and "libgalera_smm.so" in out and "MariaDB" in out
    datadir = _run_once(containerd, ref, "galera-datadir", "sh", "-c",
                        "stat -c %U /var/lib/mysql && ls -A /var/lib/mysql | wc -l")
    assert datadir.split() == ["mysql", "0"]  # left empty on purpose: initialised at start


def labkit_version() -> str:
    """The checkout's labkit version."""
    import labkit
    return labkit.__version__

