"""The preflight for real: ``invoke lab`` and the check itself without privileges stop at once.

Root is needed to drop privileges (``setpriv``); nothing of the test bed is started.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labkit import paths
from labkit.testbed.embedded import leftovers

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[2]


def test_invoke_lab_without_net_admin_names_it_and_starts_nothing() -> None:
    """Root without CAP_NET_ADMIN and CAP_SYS_ADMIN (bounding set dropped by setpriv)."""
    runs_before = set(paths.data_dir().iterdir()) if paths.data_dir().is_dir() else set()
    before = leftovers()
    proc = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-net_admin,-sys_admin", "--",
         sys.executable, "-m", "invoke", "--search-root", str(ROOT), "lab", "--env", "embedded",
         "--only", "00"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and "CAP_NET_ADMIN and CAP_SYS_ADMIN" in lines[0], proc.stderr
    assert (set(paths.data_dir().iterdir()) if paths.data_dir().is_dir() else set()) == runs_before
    assert leftovers() == before


def test_the_check_as_an_unprivileged_user_under_the_system_python() -> None:
    """uid 65534 with no capabilities, the distribution's python3 (labkit.machine is stdlib only)."""
    python = "/usr/bin/python3"
    if not Path(python).exists():
        pytest.skip("no /usr/bin/python3")
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from labkit import machine; "
            "machine.require_embedded('invoke setup')")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                           python, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("labkit.machine.PrivilegeError: invoke setup: the embedded test bed cannot run")
    for part in ("root (running as uid 65534", "CAP_NET_ADMIN and CAP_SYS_ADMIN", "writable cgroups"):
        assert part in last
