"""labkit.deploy.database: a DB domain's full-crash recovery (which member bootstraps, when)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from labkit.deploy import database as db

pytestmark = pytest.mark.unit

UUID = "6f2a1e52-0000-11ef-8000-000000000001"


@pytest.mark.parametrize(("states", "expected"), [
    ({"g-0": "waiting-unsafe", "g-1": "waiting-unsafe", "g-2": "waiting-fresh"}, True),
    ({"g-0": "waiting-unsafe", "g-1": "started", "g-2": "waiting-unsafe"}, False),   # a member runs: join it
    ({"g-0": "waiting-unsafe", "g-1": "waiting-safe", "g-2": "waiting-unsafe"}, False),  # g-1 bootstraps itself
    ({"g-0": "waiting-fresh", "g-1": "waiting-unsafe", "g-2": "waiting-unsafe"}, False),  # member 0 bootstraps
    ({"g-0": "waiting-fresh", "g-1": "waiting-fresh"}, False),                       # a domain forming
    ({"g-0": "waiting-unsafe", "g-1": db.UNANSWERED}, False),                        # exec refused
    ({}, False),
])
def test_needs_recovery_only_when_every_member_waits_and_none_bootstraps_by_itself(
        states: dict[str, str], expected: bool) -> None:
    assert db.needs_recovery(states) is expected


def test_the_member_with_the_highest_recovered_seqno_bootstraps_ties_to_the_lowest_ordinal() -> None:
    assert db.bootstrap_choice({"g-0": f"waiting-unsafe {UUID}:7", "g-1": f"waiting-unsafe {UUID}:9",
                                "g-2": f"waiting-unsafe {UUID}:9"}) == "g-1"
    assert db.bootstrap_choice({"g-0": f"waiting-unsafe {UUID}:4", "g-1": "waiting-fresh",
                                "g-2": f"waiting-unsafe {UUID}:-1"}) == "g-0"
    assert db.bootstrap_choice({"g-0": f"waiting-unsafe {UUID}:4", "g-1": "started"}) is None


def test_different_cluster_histories_or_a_missing_position_are_refused() -> None:
    other = "0bad0000-0000-11ef-8000-000000000002"
    with pytest.raises(db.DatabaseError, match="different cluster histories"):
        db.bootstrap_choice({"g-0": f"waiting-unsafe {UUID}:4", "g-1": f"waiting-unsafe {other}:5"})
    with pytest.raises(db.DatabaseError, match="g-1: no recovered position"):
        db.bootstrap_choice({"g-0": f"waiting-unsafe {UUID}:4", "g-1": "waiting-unsafe"})


def _fake_domain(monkeypatch: pytest.MonkeyPatch, printed: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """Members g-0.. whose entrypoint prints ``printed[command][member]``; returns the commands run, in order."""
    calls: list[tuple[str, str]] = []
    found = [db.Member(pod, "c", "ns", pod, "10.0.0.1") for pod in printed["--state"]]

    def entrypoint(testbed: Any, member: db.Member, command: str, log: Any, timeout: float = 30.0) -> str:
        calls.append((member.pod, command))
        return printed[command].get(member.pod, db.UNANSWERED)

    monkeypatch.setattr(db, "domain_of", lambda plan, domain: SimpleNamespace(name="d", replicas=len(found)))
    monkeypatch.setattr(db, "members", lambda testbed, plan, domain: found)
    monkeypatch.setattr(db, "_entrypoint", entrypoint)
    return calls


def test_recover_looks_cheaply_then_recovers_positions_and_marks_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_domain(monkeypatch, {
        "--state": {"g-0": "waiting-unsafe", "g-1": "waiting-unsafe"},
        "--position": {"g-0": f"waiting-unsafe {UUID}:3", "g-1": f"waiting-unsafe {UUID}:5"},
        "--bootstrap": {"g-1": ""}})
    logged: list[str] = []
    assert db.recover(None, None, "d", log=logged.append) == "g-1"  # type: ignore[arg-type]
    assert calls == [("g-0", "--state"), ("g-1", "--state"), ("g-0", "--position"), ("g-1", "--position"),
                     ("g-1", "--bootstrap")]
    assert "bootstrapping from g-1" in logged[0] and f"{UUID}:5" in logged[0]


def test_recover_does_not_run_wsrep_recover_while_a_member_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_domain(monkeypatch, {"--state": {"g-0": "waiting-unsafe", "g-1": "started"}})
    monkeypatch.setattr(db, "status", lambda testbed, member: {"wsrep_cluster_status": "Primary"})
    assert db.recover(None, None, "d", log=print) is None  # type: ignore[arg-type]
    assert [command for _, command in calls] == ["--state", "--state"]


def _st(status: str, size: int, committed: int) -> dict[str, str]:
    return {"wsrep_cluster_status": status, "wsrep_cluster_size": str(size), "wsrep_last_committed": str(committed)}


@pytest.mark.parametrize(("statuses", "expected"), [
    ({"g-0": _st("non-Primary", 2, 7), "g-1": None}, "g-0"),                       # the crashed one rejoining
    ({"g-0": _st("non-Primary", 2, 7), "g-1": _st("non-Primary", 2, 9)}, "g-1"),   # the most advanced
    ({"g-0": _st("non-Primary", 2, 7), "g-1": _st("non-Primary", 2, 7)}, "g-0"),   # ties: lowest ordinal
    ({"g-0": _st("non-Primary", 1, 7), "g-1": None}, None),           # alone: the other may be Primary elsewhere
    ({"g-0": _st("non-Primary", 2, 7), "g-1": _st("Primary", 1, 8)}, None),        # a Primary exists
    ({"g-0": None, "g-1": None}, None),
])
def test_the_quorum_is_reset_only_when_one_non_primary_component_holds_every_member(
        statuses: dict[str, dict[str, str] | None], expected: str | None) -> None:
    assert db.quorum_choice(statuses, replicas=2) == expected


def test_recover_resets_the_quorum_of_a_component_holding_every_member(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_domain(monkeypatch, {"--state": {"g-0": "started", "g-1": "started"}})
    monkeypatch.setattr(db, "status", lambda testbed, member: (
        _st("non-Primary", 2, 12) if member.pod == "g-0" else (_ for _ in ()).throw(db.DatabaseError("no socket"))))
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(db, "sql", lambda testbed, member, statements, **kw: sent.append((member.pod, statements)))
    logged: list[str] = []
    assert db.recover(None, None, "d", log=logged.append) == "g-0"  # type: ignore[arg-type]
    assert sent == [("g-0", "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")]
    assert "quorum reset on g-0 (last committed 12)" in logged[0]


def test_wait_complete_looks_for_a_full_crash_while_it_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([None, None, None, ["done"]])
    looked: list[str] = []
    monkeypatch.setattr(db, "domain_of", lambda plan, domain: SimpleNamespace(name="d", replicas=2))
    monkeypatch.setattr(db, "complete", lambda testbed, plan, dom, replicas=None: next(answers))
    monkeypatch.setattr(db, "recover", lambda testbed, plan, dom, log: looked.append(dom.name))
    monkeypatch.setattr(db, "RECOVER_AFTER", 0.0)
    assert db.wait_complete(None, None, "d", timeout=60, interval=0.0) == ["done"]  # type: ignore[arg-type]
    assert looked == ["d", "d", "d"]


def test_a_member_that_does_not_answer_is_logged_and_nothing_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [db.Member(pod, "c", "ns", pod, "10.0.0.1") for pod in ("g-0", "g-1")]
    monkeypatch.setattr(db, "domain_of", lambda plan, domain: SimpleNamespace(name="d", replicas=2))
    monkeypatch.setattr(db, "members", lambda testbed, plan, domain: found)
    ran: list[list[str]] = []

    class Host:
        def __init__(self, pod: str) -> None:
            self.pod = pod

        def run(self, argv: list[str], timeout: float = 60.0) -> Any:
            ran.append([self.pod, *argv])
            if self.pod == "g-1":
                raise RuntimeError("container not running")
            return SimpleNamespace(returncode=0, stdout="waiting-unsafe\n", stderr="")

    monkeypatch.setattr(db, "host", lambda testbed, member: Host(member.pod))
    monkeypatch.setattr(db, "status", lambda testbed, member: {"wsrep_cluster_status": "Primary"})
    logged: list[str] = []
    assert db.recover(None, None, "d", log=logged.append) is None  # type: ignore[arg-type]
    assert ran == [["g-0", "labkit-galera", "--state"], ["g-1", "labkit-galera", "--state"]]
    assert logged == ["[database] g-1: labkit-galera --state failed (container not running)"]
