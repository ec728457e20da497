"""The executor of runbooks, on a fake transport: order, parallelism, captures, retries, checks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from labkit.testbed.base import CommandResult, TestbedError
from labkit.testbed.base import parse_ping
from labkit.testbed.vms import detached
from labkit.testbed.vms.commands import STAGING, Runbook, Put, Ref, Run, Stage
from labkit.testbed.vms.execute import Executor, PlanError

pytestmark = pytest.mark.unit


class FakeTransport:
    """Answers commands from a table (argv -> list of results, the last one repeating) and records calls."""

    def __init__(self, answers: dict[tuple[str, ...], list[CommandResult]] | None = None, delay: float = 0.0) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.active = 0
        self.max_active = 0
        self.delay = delay

    async def run(self, host: str, argv: list[str], timeout: float, secret: bool) -> CommandResult:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        await asyncio.sleep(self.delay)
        self.active -= 1
        self.calls.append((host, tuple(argv)))
        queue = self.answers.get(tuple(argv))
        if not queue:
            return CommandResult(tuple(argv), 0, "", "")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def put(self, host: str, command: Put) -> None:
        self.calls.append((host, ("put", command.remote)))

    def log_path(self, host: str) -> Path | None:
        return Path(f"/logs/{host}.log")


def ok(stdout: str = "") -> CommandResult:
    return CommandResult((), 0, stdout, "")


def fail(code: int = 1, stderr: str = "boom") -> CommandResult:
    return CommandResult((), code, "", stderr)


def run(plan: Runbook, transport: FakeTransport, **kw: object) -> dict[str, dict[str, str]]:
    return asyncio.run(Executor(transport, retry_delay=0, log=lambda _: None, **kw).run_runbook(plan))  # type: ignore[arg-type]


PEER_LINE = "liqoctl peer out-of-band b --auth-url https://b:1 --cluster-id id-b --auth-token tok\n"


def test_captured_values_reach_later_stages_and_hosts_run_in_parallel() -> None:
    info = Run("b", "liqo.peer-info", ("gen",), capture="peer-info:b", parser="peer-command", secret=True)
    peer = Run("a", "liqo.peer", ("peer", "--auth-token", Ref("peer-info:b", "token")))
    plan = Runbook((Stage("s1", (Run("a", "x", ("one",)), Run("b", "x", ("one",)), info)),
                        Stage("s2", (peer, Put("a", "p", f"{STAGING}/f", content="x")))))
    transport = FakeTransport({("gen",): [ok(PEER_LINE)]}, delay=0.05)
    captures = run(plan, transport)
    assert captures["peer-info:b"]["token"] == "tok"
    assert ("a", ("peer", "--auth-token", "tok")) in transport.calls
    assert transport.max_active == 2  # a and b at once inside stage 1
    order = [c for c in transport.calls if c[0] == "a"]
    assert order == [("a", ("one",)), ("a", ("peer", "--auth-token", "tok")), ("a", ("put", f"{STAGING}/f"))]


def test_a_failure_stops_the_plan_naming_stage_host_step_and_log() -> None:
    plan = Runbook((Stage("k3s.servers", (Run("a", "k3s.install", ("install",)), Run("b", "k3s.install", ("ok",)))),
                        Stage("later", (Run("a", "x", ("never",)),))))
    transport = FakeTransport({("install",): [fail(3, "no space left")]})
    with pytest.raises(PlanError) as err:
        run(plan, transport)
    text = str(err.value)
    assert "k3s.servers" in text and "a: k3s.install" in text and "exited 3: no space left" in text
    assert "/logs/a.log" in text and err.value.failures[0].startswith("a:")
    assert ("b", ("ok",)) in transport.calls and ("a", ("never",)) not in transport.calls


def test_retries_until_success_and_gives_up_after_the_last() -> None:
    flaky = Run("a", "k3s.ready", ("wait",), retries=2)
    transport = FakeTransport({("wait",): [fail(), fail(), ok()]})
    run(Runbook((Stage("s", (flaky,)),)), transport)
    assert transport.calls.count(("a", ("wait",))) == 3
    transport = FakeTransport({("wait",): [fail()]})
    with pytest.raises(PlanError, match="after 3 attempt"):
        run(Runbook((Stage("s", (flaky,)),)), transport)


def test_expectations_on_parsed_output_are_checked() -> None:
    node = json.dumps({"metadata": {"name": "liqo-b", "labels": {"liqo.io/type": "virtual-node", "x": "1"}}})
    good = Run("a", "liqo.virtual-node-labels", ("get",), parser="node-labels", expect={"liqo.io/type": "virtual-node"})
    bad = Run("a", "liqo.virtual-node-labels", ("get",), parser="node-labels", expect={"x": "2"})
    run(Runbook((Stage("s", (good,)),)), FakeTransport({("get",): [ok(node)]}))
    with pytest.raises(PlanError, match=r"x='1', expected '2'"):
        run(Runbook((Stage("s", (bad,)),)), FakeTransport({("get",): [ok(node)]}))
    version = Run("a", "liqoctl.version", ("v",), parser="text", expect={"contains": "v0.10.2"})
    with pytest.raises(PlanError, match="does not contain 'v0.10.2'"):
        run(Runbook((Stage("s", (version,)),)), FakeTransport({("v",): [ok("Client version: v0.9.4")]}))
    garbage = Run("a", "liqo.peer-info", ("gen",), capture="k", parser="peer-command")
    with pytest.raises(PlanError, match="output not understood"):
        run(Runbook((Stage("s", (garbage,)),)), FakeTransport({("gen",): [ok("Error: forbidden")]}))


def test_keep_going_runs_every_stage_and_unchecked_failures_pass() -> None:
    plan = Runbook((Stage("a", (Run("a", "x", ("bad",)),)), Stage("b", (Run("a", "y", ("good",)),)),
                        Stage("c", (Run("a", "z", ("bad2",), check=False),))))
    transport = FakeTransport({("bad",): [fail()], ("bad2",): [fail()]})
    with pytest.raises(PlanError, match="stage a"):
        run(plan, transport, keep_going=True)
    assert [c[1] for c in transport.calls] == [("bad",), ("good",), ("bad2",)]


def test_a_plan_using_an_uncaptured_value_is_refused_before_running() -> None:
    plan = Runbook((Stage("s", (Run("a", "x", ("peer", Ref("peer-info:b", "token"))),)),))
    transport = FakeTransport()
    with pytest.raises(TestbedError, match="before any stage captures 'peer-info:b'"):
        run(plan, transport)
    assert transport.calls == []


def test_parse_ping_and_detached_bring_up_line() -> None:
    out = ("PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.\n64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.045 ms\n"
           "64 bytes from 10.0.0.1: icmp_seq=2 ttl=64 time=1.50 ms\n\n--- 10.0.0.1 ping statistics ---\n"
           "3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms\n")
    result = parse_ping("10.0.0.1", out, 3)
    assert (result.sent, result.received, result.rtt_ms) == (3, 2, (0.045, 1.5))
    line = detached("sleep 60; ip link set dev ens3 up", echo_pid=True)
    assert line.startswith("nohup setsid sh -c 'sleep 60; ip link set dev ens3 up' </dev/null") and line.endswith("echo $!")


def test_the_backend_implements_the_testbed_and_host_protocols(tmp_path: Path) -> None:
    from labkit.testbed import base
    from labkit.testbed.vms import VmsHost, VmsTestbed
    from labkit.testbed.vms.ssh import HostLog, LoopThread, SshHost, SshTarget

    testbed = VmsTestbed(run_dir=tmp_path)
    assert isinstance(testbed, base.Testbed)
    with pytest.raises(TestbedError, match="call up"):
        testbed.host("root")
    with pytest.raises(TestbedError, match="no kubeconfig for cluster 'root'"):
        testbed.kube("root")
    testbed.down()  # nothing was brought up: a no-op
    loop = LoopThread()
    try:
        host = VmsHost(SshHost(SshTarget("root", "192.0.2.10", "ubuntu"), HostLog(tmp_path / "root.log")), loop,
                       "ubuntu", "ens3", 60)
        assert isinstance(host, base.Host) and (host.name, host.address) == ("root", "192.0.2.10")
    finally:
        loop.stop()
    assert not (tmp_path / "vms").exists()  # nothing connected, nothing written


def test_hosts_map_the_inventory_and_are_kept_across_calls(tmp_path: Path) -> None:
    from labkit.config import load_env
    from labkit.testbed.vms import VmsTestbed

    testbed = VmsTestbed(run_dir=tmp_path)
    testbed._connect(load_env("crownlabs"))  # opens no connection: asyncssh connects on first use
    try:
        leaf = testbed.host("leaf-3")
        assert (leaf.name, leaf.address, leaf.interface) == ("leaf-3", "192.0.2.13", "ens3")
        assert testbed.host("leaf-3") is leaf  # a link fault's timer survives between inject and recover
        with pytest.raises(TestbedError, match="no VM 'leaf-9'"):
            testbed.host("leaf-9")
    finally:
        testbed.down()  # up() never ran: nothing to tear down, only the (unused) pool to close
    with pytest.raises(TestbedError, match="call up"):
        testbed.host("leaf-3")


def test_unreachable_hosts_are_skipped_in_later_stages_of_a_teardown() -> None:
    from labkit.testbed.vms.ssh import SshError

    class Unreachable(FakeTransport):
        async def run(self, host: str, argv: list[str], timeout: float, secret: bool) -> CommandResult:
            if host == "b":
                raise SshError("b: cannot ssh to ubuntu@192.0.2.11:22 after 4 attempt(s): timeout (log: /logs/b.log)")
            return await super().run(host, argv, timeout, secret)

    plan = Runbook((Stage("one", (Run("a", "x", ("1",), check=False), Run("b", "x", ("1",), check=False))),
                        Stage("two", (Run("a", "y", ("2",), check=False), Run("b", "y", ("2",), check=False)))))
    transport = Unreachable()
    with pytest.raises(PlanError) as err:
        run(plan, transport, keep_going=True)
    assert err.value.failures == ["b: cannot ssh to ubuntu@192.0.2.11:22 after 4 attempt(s): timeout (log: /logs/b.log)"]
    assert transport.calls == [("a", ("1",)), ("a", ("2",))]


def test_a_missing_key_fails_at_once_naming_it(tmp_path: Path) -> None:
    from labkit.testbed.vms.ssh import HostLog, SshError, SshHost, SshTarget

    host = SshHost(SshTarget("root", "192.0.2.10", "ubuntu", tmp_path / "id_missing"), HostLog(tmp_path / "r.log"),
                   retries=3, retry_delay=30)
    with pytest.raises(SshError, match=r"SSH key .*id_missing does not exist \(backend.ssh_key"):
        asyncio.run(host.run(["true"]))


def test_stage_durations_give_the_embedded_phase_timings() -> None:
    from labkit.testbed.vms import phase_timings

    names = ["k3s.install", "k3s.ready", "images", "liqo.peer-info", "liqo.peer", "liqo.virtual-nodes", "liqo.offload"]
    plan = Runbook(tuple(Stage(n, (Run("a", "x", (n,)),)) for n in names))
    durations: dict[str, float] = {}
    run(plan, FakeTransport(delay=0.02), durations=durations)
    assert list(durations) == names and all(d >= 0.02 for d in durations.values())
    timings = phase_timings(durations)
    assert timings["ready_s"] == pytest.approx(durations["k3s.install"] + durations["k3s.ready"])
    assert timings["peering_s"] == pytest.approx(sum(durations[n] for n in names[3:6]))
    assert timings["offloading_s"] == durations["liqo.offload"]
