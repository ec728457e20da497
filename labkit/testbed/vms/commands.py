"""The runbook: what the VMs backend runs on each host, as pure data.

A :class:`Runbook` is an ordered list of :class:`Stage` objects. Inside a stage, the
commands of one host run in order and different hosts run in parallel; a stage starts when
the previous one has finished on every host. Commands are :class:`Run` (an argv executed
over SSH) or :class:`Put` (a file copied to the host's staging directory).

Values known only at run time (the auth token a provider prints for its peers, a server's
node token) are :class:`Ref` objects inside an argv: a :class:`Run` with ``capture`` stores
the parsed output of its command under a key, and later arguments refer to it. Dry-run
renders a ``Ref`` as ``<key:field>``; the executor substitutes the captured value.

The same objects are rendered by :func:`render` for ``--dry-run`` and executed by
:mod:`labkit.testbed.vms.execute`, so the unit tests check exactly what would run.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labkit.testbed.liqoctl import go_duration  # noqa: F401 (re-exported: the plans' durations)

#: Directory on every VM where files are copied before ``install`` moves them into place.
STAGING = "/var/tmp/labkit"


@dataclass(frozen=True)
class Ref:
    """A value captured from an earlier command: ``captures[key][field]``.

    Attributes
    ----------
    key
        The ``capture`` key of the earlier :class:`Run` (``peer-info:leaf-1``).
    field
        Name of the parsed field (``auth_url``, ``token``, ...).
    prefix
        Literal text before the value in the same argument (``K3S_TOKEN=``).
    """

    key: str
    field: str
    prefix: str = ""

    def render(self) -> str:
        """How dry-run shows the value: ``prefix<key:field>``."""
        return f"{self.prefix}<{self.key}:{self.field}>"

    def value(self, captures: Mapping[str, Mapping[str, str]]) -> str:
        """The argument with the captured value (``KeyError`` when it was not captured)."""
        return self.prefix + captures[self.key][self.field]


Arg = str | Ref


@dataclass(frozen=True)
class Run:
    """A command run on a host over SSH.

    Attributes
    ----------
    host
        Node name of the VM (``root``, ``leaf-1``).
    step
        What the command is for, ``area.action`` (``k3s.install``, ``liqo.peer``).
    argv
        The command; joined with shell quoting for the remote shell.
    timeout
        Seconds before the command is abandoned (and the plan fails).
    retries
        Extra attempts after a failure (for commands that are safe to repeat).
    check
        Whether a non-zero exit fails the plan (``False`` in tear-down plans).
    capture
        Key under which the parsed output is stored for later :class:`Ref` arguments.
    parser
        Name of the parser of :data:`labkit.testbed.vms.execute.PARSERS` applied to stdout
        (with ``capture``) or used to check it (with ``expect``).
    expect
        Values the parsed output must contain (a check after the command ran).
    secret
        Whether stdout holds secrets (tokens): it is not written to the host log.
    """

    host: str
    step: str
    argv: tuple[Arg, ...]
    timeout: float = 120.0
    retries: int = 0
    check: bool = True
    capture: str | None = None
    parser: str | None = None
    expect: Mapping[str, object] = field(default_factory=dict)
    secret: bool = False

    def refs(self) -> list[Ref]:
        """The run-time values this command needs."""
        return [a for a in self.argv if isinstance(a, Ref)]

    def render(self) -> str:
        """The command line as dry-run prints it (``Ref`` values as placeholders)."""
        return shlex.join(a.render() if isinstance(a, Ref) else a for a in self.argv)

    def resolve(self, captures: Mapping[str, Mapping[str, str]]) -> list[str]:
        """The argv with every :class:`Ref` replaced by its captured value.

        Raises
        ------
        KeyError
            Naming the missing capture, when an earlier command did not provide it.
        """
        out = []
        for arg in self.argv:
            if isinstance(arg, Ref):
                if arg.key not in captures or arg.field not in captures[arg.key]:
                    raise KeyError(f"{self.step} on {self.host} needs {arg.render()}, "
                                   "which no earlier command captured")
                out.append(arg.value(captures))
            else:
                out.append(arg)
        return out


@dataclass(frozen=True)
class Put:
    """A file copied to a host (SFTP) under :data:`STAGING`.

    Exactly one of ``content`` (a rendered manifest or config) and ``local`` (a file of the
    control machine: a binary, an image archive) is given.
    """

    host: str
    step: str
    remote: str
    content: str | None = None
    local: Path | None = None
    mode: int = 0o644
    timeout: float = 600.0

    def __post_init__(self) -> None:
        if (self.content is None) == (self.local is None):
            raise ValueError(f"Put {self.remote} on {self.host}: give exactly one of content and local")
        if not self.remote.startswith(STAGING + "/"):
            raise ValueError(f"Put {self.remote} on {self.host}: files are copied under {STAGING}/")

    def render(self) -> str:
        """One line for dry-run: where the file comes from and where it goes."""
        source = f"{self.local}" if self.local is not None else f"<{len(self.content or '')} bytes rendered>"
        return f"put {source} -> {self.remote} (mode {self.mode:04o})"


Command = Run | Put


@dataclass(frozen=True)
class Stage:
    """Commands that run host-parallel; a stage waits for the previous one."""

    name: str
    commands: tuple[Command, ...]

    def hosts(self) -> list[str]:
        """Hosts with commands in this stage, in order of first appearance."""
        return list(dict.fromkeys(c.host for c in self.commands))

    def of(self, host: str) -> list[Command]:
        """The commands of ``host``, in order."""
        return [c for c in self.commands if c.host == host]


@dataclass(frozen=True)
class Runbook:
    """An ordered list of stages (see the module docstring)."""

    stages: tuple[Stage, ...]

    def commands(self) -> Iterator[Command]:
        """Every command, stage by stage, in order."""
        for stage in self.stages:
            yield from stage.commands

    def hosts(self) -> list[str]:
        """Every host of the plan, in order of first appearance."""
        return list(dict.fromkeys(c.host for c in self.commands()))

    def for_host(self, host: str) -> list[Command]:
        """What ``host`` runs, in order."""
        return [c for c in self.commands() if c.host == host]

    def runs(self, step: str | None = None) -> list[Run]:
        """Every :class:`Run` (of ``step``, or whose step starts with ``step + '.'``)."""
        return [c for c in self.commands() if isinstance(c, Run) and _step_matches(c.step, step)]

    def check_refs(self) -> list[str]:
        """Problems: arguments referring to captures that no earlier stage provides."""
        provided: set[str] = set()
        problems = []
        for stage in self.stages:
            for command in stage.commands:
                if isinstance(command, Run):
                    problems += [f"stage {stage.name}: {command.step} on {command.host} uses {r.render()} "
                                 f"before any stage captures {r.key!r}"
                                 for r in command.refs() if r.key not in provided]
            provided.update(c.capture for c in stage.commands if isinstance(c, Run) and c.capture)
        return problems


def _step_matches(step: str, wanted: str | None) -> bool:
    """Whether ``step`` is ``wanted`` or below it (``liqo`` matches ``liqo.peer``)."""
    return wanted is None or step == wanted or step.startswith(wanted + ".")


def render(plan: Runbook, addresses: Mapping[str, str] | None = None, contents: bool = True) -> str:
    """The plan as dry-run prints it: stage by stage, per host, every command in order.

    Parameters
    ----------
    plan
        The plan to print.
    addresses
        SSH address of each host, shown next to its name.
    contents
        Also print the rendered files (config.yaml, values, manifests) under their ``put``.
    """
    lines: list[str] = []
    addresses = addresses or {}
    for number, stage in enumerate(plan.stages, start=1):
        hosts = stage.hosts()
        lines.append(f"== stage {number}/{len(plan.stages)} {stage.name} "
                     f"({'parallel on ' + str(len(hosts)) + ' hosts' if len(hosts) > 1 else 'on ' + hosts[0]})")
        for host in hosts:
            where = f"{host} ({addresses[host]})" if host in addresses else host
            for command in stage.of(host):
                lines.append(f"  [{where}] {command.step}: {command.render()}")
                if contents and isinstance(command, Put) and command.content is not None:
                    lines += [f"      | {line}" for line in command.content.rstrip().splitlines()]
    return "\n".join(lines)


def as_root(user: str, *argv: Arg) -> tuple[Arg, ...]:
    """``argv`` run as root: unchanged for ``root``, else through ``sudo -n`` (no password prompt)."""
    return tuple(argv) if user == "root" else ("sudo", "-n", *argv)


