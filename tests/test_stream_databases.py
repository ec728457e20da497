"""labkit.deploy.chain.deploy_databases: reuse, one image import, domains formed side by side."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.deploy import database
from labkit.deploy import chain as chainmod

pytestmark = pytest.mark.unit

MEMBERS = {"high-1": ["acc", "p-1", "p-2"], "low-1": ["p-1", "s-1-1", "s-1-2"], "low-2": ["p-2", "s-2-1"]}


def _fake(monkeypatch: pytest.MonkeyPatch, domains: list[str], running: set[str]) -> list[tuple[str, Any]]:
    """Patch the DB calls deploy_databases makes; return the log of what it called, in order."""
    calls: list[tuple[str, Any]] = []
    barrier = threading.Barrier(len(set(domains) - running)) if set(domains) - running else None

    def deploy(testbed: Any, plan: Any, name: str, log: Any = print) -> None:
        calls.append(("deploy", name))
        barrier.wait(timeout=2.0)  # BrokenBarrierError unless every missing domain forms at once

    monkeypatch.setattr(chainmod, "chain_domains", lambda chain: domains)
    monkeypatch.setattr(chainmod, "_reuse_database", lambda testbed, chain, name: name in running)
    monkeypatch.setattr(database, "domain_of", lambda plan, name: SimpleNamespace(name=name, members=MEMBERS[name]))
    monkeypatch.setattr(database, "load_images", lambda testbed, clusters, log=print: calls.append(("images", clusters)))
    monkeypatch.setattr(database, "deploy_database", deploy)
    monkeypatch.setattr(database, "write_pdc_configs", lambda testbed, plan, name: calls.append(("configs", name)))
    return calls


def _chain() -> Any:
    return SimpleNamespace(plan=None, env=SimpleNamespace(name="multilevel"), low="pdc-low", high="pdc-high")


def test_missing_domains_form_at_once_after_one_import_into_their_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ["high-1", "low-1"], running=set())
    assert chainmod.deploy_databases(object(), _chain(), log=lambda _: None) == ["high-1", "low-1"]
    assert calls[0] == ("images", ["acc", "p-1", "p-2", "s-1-1", "s-1-2"])  # p-1 once, before any domain forms
    assert sorted(c for c in calls if c[0] == "deploy") == [("deploy", "high-1"), ("deploy", "low-1")]
    assert calls[-2:] == [("configs", "high-1"), ("configs", "low-1")]


def test_a_running_domain_is_reused_and_still_gets_the_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ["high-1", "low-2"], running={"high-1"})
    chainmod.deploy_databases(object(), _chain(), log=lambda _: None)
    assert calls == [("images", ["p-2", "s-2-1"]), ("deploy", "low-2"), ("configs", "high-1"), ("configs", "low-2")]


def test_every_domain_running_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ["high-1"], running={"high-1"})
    chainmod.deploy_databases(object(), _chain(), log=lambda _: None)
    assert calls == [("configs", "high-1")]


def test_no_domain_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, [], running=set())
    with pytest.raises(chainmod.DeployError, match="no DB domain holds the namespaces of pdc-low/pdc-high"):
        chainmod.deploy_databases(object(), _chain(), log=lambda _: None)


def test_the_galera_import_comes_before_images_loaded_and_the_domains_after(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ["high-1", "low-2"], running={"high-1"})
    chainmod.deploy_databases(object(), _chain(), log=lambda _: None, images_loaded=lambda: calls.append(("hook", 0)))
    assert [c[0] for c in calls] == ["images", "hook", "deploy", "configs", "configs"]


def test_images_loaded_is_called_when_every_domain_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ["high-1"], running={"high-1"})
    chainmod.deploy_databases(object(), _chain(), log=lambda _: None, images_loaded=lambda: calls.append(("hook", 0)))
    assert calls == [("hook", 0), ("configs", "high-1")]


@pytest.mark.parametrize("with_db", [True, False])
def test_prepare_imports_the_runtime_image_while_the_domains_form(monkeypatch: pytest.MonkeyPatch,
                                                                  with_db: bool) -> None:
    """The runtime import runs in the shadow of the DB domains forming, not after them."""
    events: list[str] = []
    formed = threading.Event()

    def deploy_databases(testbed: Any, chain: Any, log: Any = print, images_loaded: Any = None) -> list[str]:
        events.append("galera imported")
        images_loaded()
        assert formed.wait(timeout=2.0), "the runtime import did not start while the domains formed"
        events.append("domains formed")
        return ["high-1"]

    def load_runtime(testbed: Any, clusters: list[str]) -> str:
        events.append(f"runtime into {','.join(clusters)}")
        formed.set()
        return "labkit.local/runtime:0.1.0"

    for name, fake in [("remove_chain", lambda testbed, chain: events.append("removed")),
                       ("grid_clusters", lambda chain: ["p-1", "s-1-1"]),
                       ("deploy_databases", deploy_databases), ("load_runtime", load_runtime),
                       ("deploy_chain", lambda testbed, chain, image, db, timers: events.append(f"chain with {image}")),
                       ("wait_ready", lambda testbed, chain, names: events.append("ready"))]:
        monkeypatch.setattr(chainmod, name, fake)
    chain = SimpleNamespace(pmus=("pmu-1",), low="pdc-low", high="pdc-high", owner=lambda name: "acc")
    assert chainmod.prepare(object(), chain, with_db) == "labkit.local/runtime:0.1.0"
    expected = ["removed", "galera imported", "runtime into acc,p-1,s-1-1", "domains formed"] if with_db else [
        "removed", "runtime into acc,p-1,s-1-1"]
    assert events == [*expected, "chain with labkit.local/runtime:0.1.0", "ready"]
