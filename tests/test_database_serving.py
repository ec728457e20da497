"""labkit.deploy.database: a DB domain is ready once its client Service serves in every member's cluster."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import V1Endpoint, V1EndpointConditions, V1EndpointSlice

from labkit.deploy import database as db

pytestmark = pytest.mark.unit

MEMBERS = [db.Member(f"d-galera-{i}", f"leaf-{i + 1}", "test", f"d-galera-{i}", f"10.{i + 1}.0.5") for i in range(3)]


def _slice(*endpoints: tuple[str, bool | None]) -> V1EndpointSlice:
    return V1EndpointSlice(address_type="IPv4", endpoints=[
        V1Endpoint(addresses=[address], conditions=V1EndpointConditions(ready=ready)) for address, ready in endpoints])


def test_ready_endpoints_are_those_kube_proxy_balances_over() -> None:
    slices = [_slice(("10.1.0.5", True), ("10.2.0.5", False)), _slice(("10.3.0.5", None)),
              V1EndpointSlice(address_type="IPv4", endpoints=None)]
    assert db.ready_in(slices) == {"10.1.0.5", "10.3.0.5"}  # no ready condition: unknown, counted as ready
    assert db.ready_in([]) == set()


def _fake(monkeypatch: pytest.MonkeyPatch, ready: dict[str, int], answers: dict[str, str | None],
          default: int = 3) -> list[str]:
    """Clusters whose slices hold ``ready[cluster]`` (else ``default``) ready endpoints and whose ping says
    ``answers``; returns the pinged members, in order."""
    pinged: list[str] = []

    def addresses(testbed: Any, cluster: str, namespace: str, service: str) -> set[str]:
        assert (namespace, service) == ("test", "d-db")
        return {f"10.{i + 1}.0.5" for i in range(ready.get(cluster, default))}

    def ping(testbed: Any, member: db.Member, service: str) -> str | None:
        pinged.append(member.pod)
        return answers.get(member.cluster)

    monkeypatch.setattr(db, "ready_addresses", addresses)
    monkeypatch.setattr(db, "service_answers", ping)
    monkeypatch.setattr(db, "domain_of", lambda plan, domain: SimpleNamespace(name="d", replicas=3))
    return pinged


def test_the_service_serves_when_every_member_cluster_has_every_member_ready_and_answers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pinged = _fake(monkeypatch, {}, {})
    assert db.unserved(None, SimpleNamespace(name="d"), MEMBERS) == {}  # type: ignore[arg-type]
    assert pinged == ["d-galera-0", "d-galera-1", "d-galera-2"]  # one connect from each member's cluster


def test_a_cluster_missing_a_ready_endpoint_or_refusing_the_connect_does_not_serve(
        monkeypatch: pytest.MonkeyPatch) -> None:
    refused = "mariadb exited 1: Can't connect to server on 'd-db.test.svc' (115)"
    pinged = _fake(monkeypatch, {"leaf-2": 0, "leaf-1": 2}, {"leaf-3": refused})
    problems = db.unserved(None, SimpleNamespace(name="d"), MEMBERS)  # type: ignore[arg-type]
    assert problems == {"leaf-1": "2 ready endpoint(s) of 3 ['10.1.0.5', '10.2.0.5']",
                        "leaf-2": "0 ready endpoint(s) of 3 []", "leaf-3": refused}
    assert pinged == ["d-galera-2"]  # no connect where the endpoints are not all there yet


def test_one_connect_per_cluster_from_its_lowest_member(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [*MEMBERS, db.Member("d-galera-3", "leaf-1", "test", "d-galera-3", "10.1.0.6")]
    pinged = _fake(monkeypatch, {}, {}, default=4)
    assert db.unserved(None, SimpleNamespace(name="d"), found) == {}  # type: ignore[arg-type]
    assert pinged == ["d-galera-0", "d-galera-1", "d-galera-2"]


def test_wait_serving_waits_for_the_reflection_and_names_the_cluster_on_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    looks = iter([{"leaf-2": "0 ready endpoint(s) of 3 []"}, {}])
    monkeypatch.setattr(db, "domain_of", lambda plan, domain: SimpleNamespace(name="d", replicas=3))
    monkeypatch.setattr(db, "unserved", lambda testbed, domain, found: next(looks))
    logged: list[str] = []
    db.wait_serving(None, None, "d", MEMBERS, timeout=5, interval=0.0, log=logged.append)  # type: ignore[arg-type]
    assert logged == ["[database] d: waiting for client Service d-db: {'leaf-2': '0 ready endpoint(s) of 3 []'}"]

    monkeypatch.setattr(db, "unserved", lambda testbed, domain, found: {"leaf-2": "0 ready endpoint(s) of 3 []"})
    with pytest.raises(db.DatabaseError, match=r"client Service d-db not serving after 0 s in .*leaf-2.*0 ready"):
        db.wait_serving(None, None, "d", MEMBERS, timeout=0, interval=0.0, log=print)  # type: ignore[arg-type]


def test_wait_ready_is_synced_members_then_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(db, "wait_complete", lambda *a, **k: calls.append("complete") or MEMBERS)
    monkeypatch.setattr(db, "wait_serving",
                        lambda testbed, plan, domain, found, log: calls.append(f"serving {len(found)}"))
    assert db.wait_ready(None, None, "d") == MEMBERS  # type: ignore[arg-type]
    assert calls == ["complete", "serving 3"]
