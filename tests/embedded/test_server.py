"""The test-bed server (labkit.testbed.embedded.server): a run's shared embedded test bed, a cache of size one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from embedded_helpers import require_embedded

from labkit import testbed
from labkit.config import load_env
from labkit.experiments import latency, stream
from labkit.testbed import own, running
from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, MachineLock, VmSpec, leftovers, server


@pytest.mark.unit
def test_fingerprint_covers_the_test_bed_not_the_placement() -> None:
    env = load_env("embedded")
    same = {server.fingerprint(e) for e in (env, stream.movable_low_env(env), stream.colocated_env(env))}
    assert len(same) == 1
    assert server.fingerprint(stream.kept(env, ["root", "leaf-1", "leaf-2"])) not in same
    assert server.fingerprint(latency.single_cluster(env, 3)) not in same


@pytest.mark.unit
def test_server_state_round_trip_and_log_forwarding(tmp_path: Path) -> None:
    assert server.ServerState.read(tmp_path) is None
    state = server.ServerState(pid=os.getpid(), fingerprint="abc", env="e", state="ready", timings={"ready_s": 1.5})
    state.write(tmp_path)
    assert server.ServerState.read(tmp_path) == state
    assert server._serving(tmp_path) == state  # this process is alive
    state.state = "stopped"
    state.write(tmp_path)
    assert server._serving(tmp_path) is None
    (tmp_path / server.LOG).write_text("one\ntwo\npart")
    lines: list[str] = []
    offset = server._forward(tmp_path, 0, lines.append)
    assert lines == ["  one", "  two"] and offset == len("one\ntwo\n")
    with open(tmp_path / server.LOG, "a") as f:
        f.write("ial\n")
    server._forward(tmp_path, offset, lines.append)
    assert lines[-1] == "  partial"


@pytest.mark.unit
def test_a_session_is_a_name_for_the_embedded_backend_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "SESSIONS_ROOT", tmp_path / "sessions")
    session = testbed.session(load_env("embedded"), "r1")
    assert Path(session.name).parent == tmp_path / "sessions" and Path(session.name).name.startswith("r1-")
    assert testbed.session(load_env("embedded"), "r1").name != session.name  # two runs of one id do not meet
    (Path(session.name) / server.LOG).write_text("brought up\n")
    session.close(keep_log=tmp_path / "run" / "shared.log", log=lambda _: None)
    assert (tmp_path / "run" / "shared.log").read_text() == "brought up\n" and not Path(session.name).exists()
    assert testbed.session(load_env("crownlabs"), "r2").name == ""  # the VMs are not shared


@pytest.mark.unit
def test_stop_all_skips_sessions_whose_server_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "SESSIONS_ROOT", tmp_path)
    assert server.stop_all() == 0  # no session at all
    (tmp_path / "old-run").mkdir()
    server.ServerState(pid=2**22 + 1, fingerprint="f", env="e", state="ready").write(tmp_path / "old-run")
    assert server.stop_all() == 0  # its pid does not run


@pytest.mark.unit
def test_a_session_is_owned_by_the_process_that_opened_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "SESSIONS_ROOT", tmp_path)
    mine = server.open_session("r1")
    assert server.owner_alive(mine)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = {"pid": int(child.stdout), "start": 1}
    (mine / server.OWNER).write_text(json.dumps(gone))
    assert not server.owner_alive(mine)                        # the process ended
    (mine / server.OWNER).write_text(json.dumps({"pid": os.getpid(), "start": 1}))
    assert not server.owner_alive(mine)                        # its pid, another process (a reused pid)
    (mine / server.OWNER).unlink()
    assert server.owner_alive(mine)                            # a session made by hand has no owner to lose


@pytest.mark.unit
def test_the_running_test_bed_is_visited_first_and_tables_keep_the_beds_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    import pandas as pd

    import labkit.experiments as experiments
    from labkit.experiments import reaction

    env = load_env("embedded")
    pair, bed = reaction.beds(env, reaction.Parameters())
    assert testbed.up_first([pair, bed], "") == [0, 1]                        # no session: the beds' order
    assert testbed.up_first([pair, bed], tmp_path) == [0, 1]                  # a session whose server is gone
    server.ServerState(pid=os.getpid(), fingerprint=server.fingerprint(bed), env=bed.name, state="ready").write(tmp_path)
    assert testbed.up_first([pair, bed], tmp_path) == [1, 0]                  # the bed runs: it goes first
    assert testbed.up_first([pair], tmp_path) == [0]

    visited: list[str] = []

    @contextmanager
    def fake_running(one, *, session, log):  # type: ignore[no-untyped-def]
        visited.append(one.name)
        yield one

    monkeypatch.setattr(experiments, "running", fake_running)
    monkeypatch.setattr(reaction, "measure", lambda tb, one, params: {"reaction": pd.DataFrame({"bed": [one.name]})})
    tables = experiments.measure("reaction", env, reaction.Parameters(), session=str(tmp_path))
    assert visited == [bed.name, pair.name]
    assert list(tables["reaction"]["bed"]) == [pair.name, bed.name]


def _server(session: Path) -> server.ServerState:
    state = server.ServerState.read(session)
    assert state is not None
    return state


@pytest.mark.embedded
def test_experiments_of_a_run_share_one_test_bed_and_yield_it(tmp_path: Path) -> None:
    require_embedded()
    session = tmp_path / "session"
    pair = stream.kept(load_env("embedded"), ["root", "leaf-1"])
    try:
        with running(pair, session=str(session)) as first:
            state = _server(session)
            assert state.state == "ready" and MachineLock().holder() is not None
            assert sorted(first.clusters()) == ["leaf-1", "root"]
            from kubernetes import client
            nodes = client.CoreV1Api(first.kube("root")).list_node().items
            assert {n.metadata.name for n in nodes} >= {"root", "liqo-leaf-1"}
        with running(stream.colocated_env(pair), session=str(session)) as second:  # attached, not rebuilt
            assert _server(session).pid == state.pid
            assert second.timings["ready_s"] == state.timings["ready_s"]
        with running(latency.single_cluster(pair, 1), session=str(session)):  # another test bed replaces it
            replaced = _server(session)
            assert replaced.pid != state.pid and not server._alive(state.pid)
        with own(pair, session=str(session)) as mine:  # an own test bed of the session makes the server yield
            assert _server(session).state == "stopped" and not server._alive(replaced.pid)
            mine.up(EmbeddedEnv(clusters=(ClusterSpec("own", (VmSpec("own-a"),)),), dns=False))
            assert mine.clusters() == ["own"] and mine.processes()
    finally:
        server.stop(session)
    assert leftovers().empty(), leftovers()
    assert "ready; serving until SIGTERM" in (session / server.LOG).read_text()
    assert json.loads((session / server.REQUEST).read_text())["env"]["name"] == "embedded-reduced-single"


@pytest.mark.embedded
def test_a_killed_run_does_not_leave_its_test_bed_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server tears its test bed down when the process that opened the session is gone."""
    require_embedded()
    monkeypatch.setattr(server, "SESSIONS_ROOT", tmp_path)
    owner = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                              "from labkit.testbed.embedded import server\n"
                              f"server.SESSIONS_ROOT = __import__('pathlib').Path({str(tmp_path)!r})\n"
                              "print(server.open_session('killed'), flush=True); time.sleep(600)"],
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    session = Path(owner.stdout.readline().strip())
    try:
        single = latency.single_cluster(stream.kept(load_env("embedded"), ["root", "leaf-1"]), 1)
        with running(single, session=str(session)):
            state = _server(session)
            assert state.state == "ready" and server._alive(state.pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server._alive(state.pid):
            time.sleep(0.5)
        assert not server._alive(state.pid), (session / server.LOG).read_text()[-2000:]
    finally:
        owner.kill()
        server.stop(session)
    assert "the run that opened this session is gone" in (session / server.LOG).read_text()
    assert MachineLock().holder() is None and leftovers().empty(), leftovers()
