"""tasks.py: options are checked and the kit's errors become one clear message and an exit code."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit, MockContext, Result

import tasks

pytestmark = pytest.mark.unit


def test_lab_rejects_an_unknown_profile() -> None:
    with pytest.raises(Exit, match="--profile must be 'quick' or 'full'"):
        tasks.lab(MockContext(), env="embedded", profile="fast")


def test_lab_names_a_missing_env_file() -> None:
    with pytest.raises(Exit, match=r"lab: .*nowhere.yaml: 1 problem\n  - file not found"):
        tasks.lab(MockContext(), env="nowhere")


def test_validate_every_env(capsys: pytest.CaptureFixture[str]) -> None:
    tasks.validate(MockContext())
    out = capsys.readouterr().out
    assert "thesis: ok (embedded, 5 clusters, 5 nodes, 1 DB domain(s))" in out


def test_test_task_selects_tiers_and_fails_on_no_tests() -> None:
    ctx = MockContext(run={re.compile(r".*pytest -m \"unit or notebook\".*"): Result(exited=5)}, repeat=True)
    with pytest.raises(Exit, match="collected no test"):
        tasks.test(ctx, tier="unit,notebook")
    with pytest.raises(Exit, match="unknown tier"):
        tasks.test(MockContext(), tier="smoke")


def test_test_task_passes_pytest_failure_through() -> None:
    ctx = MockContext(run={re.compile(r".*pytest.*"): Result(exited=1)}, repeat=True)
    with pytest.raises(Exit) as info:
        tasks.test(ctx)
    assert info.value.code == 1


def test_figures_names_a_missing_run() -> None:
    with pytest.raises(Exit, match="no run 'r0'"):
        tasks.figures(MockContext(), run="r0")


def test_tasks_are_documented() -> None:
    for name in ("setup", "lab", "figures", "validate", "test"):
        assert getattr(tasks, name).__doc__, name


def test_up_dry_run_prints_the_plan_of_each_backend(capsys: pytest.CaptureFixture[str]) -> None:
    tasks.up(MockContext(), env="thesis", dry_run=True)
    out = capsys.readouterr().out
    assert "embedded test bed thesis: 5 clusters" in out and "VM leaf-2 (network namespace lkt-vm-leaf-2)" in out
    assert "peering root -> leaf-1" in out
    tasks.up(MockContext(), env="crownlabs", dry_run=True)
    out = capsys.readouterr().out
    assert "== stage 1/" in out and "liqoctl offload namespace test" in out


def test_up_names_a_bad_env() -> None:
    with pytest.raises(Exit, match=r"up: .*nowhere.yaml"):
        tasks.up(MockContext(), env="nowhere", dry_run=True)


_HOLD = """
import signal, sys, time
sys.path.insert(0, {root!r})
if {ignore_int}:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job
from labkit.config import load_env
from labkit.testbed import hold

class Bed:
    def up(self, env):
        print("up starts", flush=True)
        time.sleep({up_s})
    def clusters(self):
        return ["root"]
    def down(self):
        print("torn down", flush=True)

hold(Bed(), load_env("thesis"), log=lambda line: print(line, flush=True))
"""


def _hold(signum: int, ignore_int: bool, when: str, up_s: float = 0.0) -> tuple[str, int]:
    """Run :func:`labkit.testbed.hold` on a fake test bed in a process; send ``signum`` after the line ``when``."""
    root = str(Path(tasks.__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=root, ignore_int=ignore_int, up_s=up_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        while proc.stdout and when not in (line := proc.stdout.readline()):
            assert line, f"the process ended before printing {when!r}"
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return out, proc.returncode


@pytest.mark.parametrize(("signum", "ignore_int"), [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                                    (signal.SIGINT, True)])
def test_up_tears_the_test_bed_down_on_kill_hangup_and_interrupt(signum: int, ignore_int: bool) -> None:
    """`invoke up` holds the test bed until a signal; kill, a closed terminal or Ctrl-C all tear it down,
    also when the signal comes at once after the ready line."""
    out, code = _hold(signum, ignore_int, when="held by this process")
    assert "torn down" in out and code == 0


def test_a_signal_during_up_tears_down_and_says_interrupted() -> None:
    out, code = _hold(signal.SIGTERM, False, when="up starts", up_s=30.0)
    assert "torn down" in out and "held by" not in out and code != 0


@pytest.mark.parametrize("task", ["setup", "lab"])
def test_setup_and_lab_stop_before_anything_when_the_host_lacks_something(
        task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preflight runs first: no setup step, no pipeline run, one line naming what is missing."""
    from labkit import machine, runner, setup_steps

    lacking = machine.Offers(euid=1000, cap_eff=0, tun=False, cgroup="v2", cgroup_writable=False)
    monkeypatch.setattr(machine, "offers", lambda *a: lacking)
    started: list[str] = []
    monkeypatch.setattr(setup_steps, "run_steps", lambda *a, **k: started.append("setup"))
    monkeypatch.setattr(runner, "run_pipeline", lambda *a, **k: started.append("lab"))
    with pytest.raises(Exit) as err:
        getattr(tasks, task)(MockContext())
    message = str(err.value)
    assert started == [] and "\n" not in message
    assert message.startswith(f"{task}: invoke {task}") and "root (running as uid 1000" in message
    assert "/dev/net/tun" in message and "writable cgroups" in message
