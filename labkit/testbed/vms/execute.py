"""Runs a :class:`~labkit.testbed.vms.commands.Runbook` on the VMs.

Stages run one after another; inside a stage every host runs its commands in order and the
hosts run in parallel. A :class:`~labkit.testbed.vms.commands.Run` is retried ``retries``
times (after ``retry_delay``) when it fails; its stdout is parsed by :data:`PARSERS` when it
captures a value or expects one. A failing checked command fails the stage after the other
hosts have finished theirs, with an error naming stage, host, step, command and log.

The executor talks to a :class:`Transport` (``run``/``put`` per host), which is the SSH pool
in real runs and a fake in the unit tests.
"""

from __future__ import annotations

import time

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from labkit.testbed.base import CommandResult, TestbedError
from labkit.testbed.vms import liqo
from labkit.testbed.vms.commands import Runbook, Put, Run, Stage
from labkit.testbed.vms.ssh import SshError

Log = Callable[[str], None]


class Transport(Protocol):
    """What the executor needs of the hosts."""

    async def run(self, host: str, argv: list[str], timeout: float, secret: bool) -> CommandResult:
        """Run ``argv`` on ``host``."""
        ...

    async def put(self, host: str, command: Put) -> None:
        """Copy a file to ``host``."""
        ...

    def log_path(self, host: str) -> Path | None:
        """Where ``host``'s log is (for error messages)."""
        ...


class PlanError(TestbedError):
    """A command of the plan failed; ``failures`` lists one line per failed host."""

    def __init__(self, stage: str, failures: list[str]) -> None:
        self.stage = stage
        self.failures = failures
        super().__init__(f"stage {stage} failed on {len(failures)} host(s):\n  " + "\n  ".join(failures))


def parse_text(stdout: str) -> dict[str, str]:
    """The whole output, stripped, as ``value``."""
    return {"value": stdout.strip()}


def parse_node_labels(stdout: str) -> dict[str, str]:
    """``metadata.labels`` of a Node printed by ``kubectl get node -o json``."""
    try:
        labels = json.loads(stdout)["metadata"].get("labels") or {}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"not a Node in JSON: {err}") from None
    return {str(k): str(v) for k, v in labels.items()}


#: Output parsers by name (``Run.parser``).
PARSERS: dict[str, Callable[[str], dict[str, str]]] = {
    "text": parse_text,
    "node-labels": parse_node_labels,
    "peer-command": liqo.parse_peer_command,
}


def unmet(parsed: Mapping[str, str], expect: Mapping[str, object]) -> list[str]:
    """What of ``expect`` the parsed output lacks (``contains`` looks inside ``value``)."""
    out = []
    for key, wanted in expect.items():
        if key == "contains":
            if str(wanted) not in parsed.get("value", ""):
                out.append(f"output does not contain {wanted!r}")
        elif parsed.get(key) != wanted:
            out.append(f"{key}={parsed.get(key)!r}, expected {wanted!r}")
    return out


@dataclass
class Executor:
    """Runs plans on a :class:`Transport`; ``captures`` keeps parsed outputs across plans.

    Parameters
    ----------
    transport
        The hosts.
    retry_delay
        Seconds between attempts of a retried command.
    log
        Progress lines (one per stage and per failure).
    keep_going
        Run every stage even after failures (tear-down), raising the first failure at the end;
        a host that could not be reached (:class:`~.ssh.SshError`) is skipped in later stages.
    """

    transport: Transport
    retry_delay: float = 5.0
    log: Log = print
    keep_going: bool = False
    captures: dict[str, dict[str, str]] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    #: Seconds each stage took, by stage name (filled by :meth:`run_runbook`).
    durations: dict[str, float] = field(default_factory=dict)

    async def run_runbook(self, plan: Runbook) -> dict[str, dict[str, str]]:
        """Run every stage in order; return the captures.

        Raises
        ------
        PlanError
            At the first stage where a checked command failed (after the last stage with
            ``keep_going``).
        """
        problems = plan.check_refs()
        if problems:
            raise TestbedError("invalid runbook:\n  " + "\n  ".join(problems))
        first: PlanError | None = None
        for number, stage in enumerate(plan.stages, start=1):
            self.log(f"[vms] stage {number}/{len(plan.stages)} {stage.name} on {', '.join(stage.hosts())}")
            started = time.monotonic()
            try:
                await self.run_stage(stage)
            except PlanError as err:
                if not self.keep_going:
                    raise
                first = first or err
            finally:
                self.durations[stage.name] = round(time.monotonic() - started, 3)
        if first is not None:
            raise first
        return self.captures

    async def run_stage(self, stage: Stage) -> None:
        """Every host's commands of ``stage`` in order, hosts in parallel."""
        hosts = [h for h in stage.hosts() if h not in self.unreachable]
        skipped = [h for h in stage.hosts() if h in self.unreachable]
        if skipped:
            self.log(f"[vms] {stage.name}: skipping unreachable {', '.join(skipped)}")
        results = await asyncio.gather(*(self._run_host(stage, h) for h in hosts), return_exceptions=True)
        failures = []
        for host, result in zip(hosts, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, SshError):
                    self.unreachable.add(host)
                failures.append(self._describe(host, result))
        if failures:
            for line in failures:
                self.log(f"[vms] FAILED {stage.name}: {line}")
            raise PlanError(stage.name, failures)

    def _describe(self, host: str, error: BaseException) -> str:
        """One line naming the host, the error and the host's log (once)."""
        text = str(error)
        line = text if text.startswith(f"{host}:") else f"{host}: {text}"
        where = self.transport.log_path(host)
        return line + (f" (log: {where})" if where and str(where) not in line else "")

    async def _run_host(self, stage: Stage, host: str) -> None:
        """One host's commands of a stage, in order (stops at the first checked failure)."""
        for command in stage.of(host):
            if isinstance(command, Put):
                await self.transport.put(host, command)
            else:
                await self.run_command(command)

    async def run_command(self, command: Run) -> CommandResult:
        """Run one command with its retries, parse and check its output, store its capture.

        Raises
        ------
        TestbedError
            When a checked command still fails after its retries (exit status, output
            expectation or parse error), naming the step and the command.
        """
        argv = command.resolve(self.captures)
        problem = ""
        result = CommandResult(tuple(argv), -1, "", "")
        for attempt in range(command.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay)
            result = await self.transport.run(command.host, argv, command.timeout, command.secret)
            problem = self._examine(command, result)
            if not problem:
                return result
        if command.check:
            raise TestbedError(f"{command.step}: `{command.render()}` {problem} "
                               f"(after {command.retries + 1} attempt(s))")
        return result

    def _examine(self, command: Run, result: CommandResult) -> str:
        """Why a result is not acceptable ('' when it is); stores the capture when it is."""
        if not result.ok:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
            return f"exited {result.returncode}" + (f": {tail}" if tail else "")
        if command.parser is None:
            return ""
        try:
            parsed = PARSERS[command.parser](result.stdout)
        except ValueError as err:
            return f"output not understood ({command.parser}): {err}"
        missing = unmet(parsed, command.expect)
        if missing:
            return "output check failed: " + "; ".join(missing)
        if command.capture:
            self.captures[command.capture] = parsed
        return ""
