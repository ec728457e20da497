"""The run's shared embedded test bed (labkit.testbed.embedded.shared): a cache of size one across processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from embedded_helpers import require_embedded

from labkit.config import load_env
from labkit.experiments import latency, stream
from labkit.runner import _sharing
from labkit.testbed import running
from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, MachineLock, VmSpec, leftovers
from labkit.testbed.embedded import shared


@pytest.mark.unit
def test_fingerprint_covers_the_test_bed_not_the_placement() -> None:
    env = load_env("embedded")
    same = {shared.fingerprint(e) for e in (env, stream.movable_low_env(env), stream.colocated_env(env))}
    assert len(same) == 1
    assert shared.fingerprint(stream.kept(env, "root,leaf-1,leaf-2")) not in same
    assert shared.fingerprint(latency.single_cluster(env, 3)) not in same


@pytest.mark.unit
def test_server_state_round_trip_and_log_forwarding(tmp_path: Path) -> None:
    assert shared.ServerState.read(tmp_path) is None
    state = shared.ServerState(pid=os.getpid(), fingerprint="abc", env="e", state="ready", timings={"ready_s": 1.5})
    state.write(tmp_path)
    assert shared.ServerState.read(tmp_path) == state
    assert shared._serving(tmp_path) == state  # this process is alive
    state.state = "stopped"
    state.write(tmp_path)
    assert shared._serving(tmp_path) is None
    (tmp_path / shared.LOG).write_text("one\ntwo\npart")
    lines: list[str] = []
    offset = shared._forward(tmp_path, 0, lines.append)
    assert lines == ["  one", "  two"] and offset == len("one\ntwo\n")
    with open(tmp_path / shared.LOG, "a") as f:
        f.write("ial\n")
    shared._forward(tmp_path, offset, lines.append)
    assert lines[-1] == "  partial"


@pytest.mark.unit
def test_the_runner_shares_only_inside_its_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(shared.SESSION_ENV, raising=False)
    monkeypatch.setattr(shared, "SESSIONS_ROOT", tmp_path)
    with _sharing(True, "r1", tmp_path / "run", print):
        assert shared.session_dir() == tmp_path / "r1"
    assert shared.session_dir() is None
    with _sharing(False, "r2", tmp_path / "run", print):
        assert shared.session_dir() is None


@pytest.mark.unit
def test_stop_all_skips_sessions_whose_server_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "SESSIONS_ROOT", tmp_path)
    assert shared.stop_all() == 0  # no session at all
    (tmp_path / "old-run").mkdir()
    shared.ServerState(pid=2**22 + 1, fingerprint="f", env="e", state="ready").write(tmp_path / "old-run")
    assert shared.stop_all() == 0  # its pid does not run


def _server(session: Path) -> shared.ServerState:
    state = shared.ServerState.read(session)
    assert state is not None
    return state


@pytest.mark.embedded
def test_experiments_of_a_run_share_one_test_bed_and_yield_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_embedded()
    session = tmp_path / "session"
    monkeypatch.setenv(shared.SESSION_ENV, str(session))
    pair = stream.kept("embedded", "root,leaf-1")
    try:
        with running(pair) as first:
            server = _server(session)
            assert server.state == "ready" and MachineLock().holder() is not None
            assert sorted(first.clusters()) == ["leaf-1", "root"]
            from kubernetes import client
            nodes = client.CoreV1Api(first.kube("root")).list_node().items
            assert {n.metadata.name for n in nodes} >= {"root", "liqo-leaf-1"}
        with running(stream.colocated_env(pair)) as second:  # same test bed: attached, not rebuilt
            assert _server(session).pid == server.pid
            assert second.timings["ready_s"] == server.timings["ready_s"]
        with running(latency.single_cluster(pair, 1)):  # another test bed replaces it
            replaced = _server(session)
            assert replaced.pid != server.pid and not shared._alive(server.pid)
        own = EmbeddedTestbed()  # an own test bed of a sharing process makes the server yield
        try:
            own.up(EmbeddedEnv(clusters=(ClusterSpec("own", (VmSpec("own-a"),)),), dns=False))
            assert _server(session).state == "stopped" and not shared._alive(replaced.pid)
        finally:
            own.down()
    finally:
        shared.stop(session)
    assert leftovers().empty(), leftovers()
    assert "ready; serving until SIGTERM" in (session / shared.LOG).read_text()
    assert json.loads((session / shared.REQUEST).read_text())["env"]["name"] == "embedded-reduced-single"
