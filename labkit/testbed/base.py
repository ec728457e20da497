"""The backend-neutral face of a testbed: :class:`Testbed` and :class:`Host`.

Both backends implement these protocols (structurally: no inheritance needed), so faults,
measurements and notebooks run unchanged on the embedded testbed and on real VMs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from labkit.config import Env


class TestbedError(RuntimeError):
    """A testbed could not be brought up, reached or torn down; the message says which part."""

    __test__ = False  # not a pytest test class


class MachineBusy(TestbedError):
    """Another process holds this machine's test bed (the embedded backend runs one per machine)."""


@dataclass(frozen=True)
class CommandResult:
    """Outcome of a command run on a host."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.returncode == 0


@dataclass(frozen=True)
class PingResult:
    """Outcome of ``ping``: packets sent/received and round-trip times in milliseconds."""

    target: str
    sent: int
    received: int
    rtt_ms: tuple[float, ...]

    @property
    def loss(self) -> float:
        """Fraction of packets lost (1.0 when nothing was sent)."""
        return 1.0 - self.received / self.sent if self.sent else 1.0


def parse_ping(target: str, stdout: str, count: int) -> PingResult:
    """A :class:`PingResult` from iputils ``ping`` output (``count`` sent when no summary line)."""
    rtts = tuple(float(m) for m in re.findall(r"time=([\d.]+) ms", stdout))
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", stdout)
    return PingResult(target, int(sent.group(1)) if sent else count, int(sent.group(2)) if sent else 0, rtts)


def ping_with(run: Callable[..., CommandResult], target: str, count: int, interval: float,
              timeout: float) -> PingResult:
    """Ping ``target`` through a host's ``run`` (a VM, an SSH host, a pod): ``ping -n`` + :func:`parse_ping`."""
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(max(1, int(timeout))), target]
    res = run(argv, timeout=timeout + count * interval + 10)
    return parse_ping(target, res.stdout, count)


@runtime_checkable
class Host(Protocol):
    """One machine of the lab (a Crownlabs VM, or a network-namespace VM).

    Attributes
    ----------
    name
        The VM's name in the topology (also its Kubernetes node name).
    address
        Its address on the lab network.
    """

    name: str
    address: str

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> CommandResult:
        """Run a command on the host and wait for it (no shell; ``argv`` as given)."""
        ...

    def ping(self, target: str, count: int = 1, interval: float = 0.2, timeout: float = 5.0) -> PingResult:
        """Ping ``target`` from the host."""
        ...

    def iface_down(self) -> None:
        """Take the host's lab-network interface down (a link fault)."""
        ...

    def iface_up(self) -> None:
        """Bring the lab-network interface back, with the routes it carries."""
        ...


@runtime_checkable
class Testbed(Protocol):
    """A set of Kubernetes clusters on lab hosts, brought up and torn down as one.

    ``down()`` must always complete and leave nothing behind, also after a failed or killed
    ``up()``; a driver brought down may be brought up again (for another env).
    """

    #: Seconds per phase of the last ``up()``: ``ready_s``, ``peering_s``, ``offloading_s`` (and more per backend).
    timings: dict[str, float]
    #: Whether the test bed outlives the process that brought it up (VMs do; the embedded one ends with it).
    outlives_process: bool

    def up(self, env: Env) -> None:
        """Bring up every cluster of ``env``, wait until each node is Ready, then peer the
        clusters and offload the namespaces that ``labkit.topology.plan(env)`` plans."""
        ...

    def down(self) -> None:
        """Tear everything down; safe to call twice and after a crash."""
        ...

    def kube(self, cluster: str) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``cluster``'s apiserver."""
        ...

    def host(self, vm: str) -> Host:
        """The :class:`Host` named ``vm``."""
        ...

    def clusters(self) -> list[str]:
        """Names of the clusters that are up."""
        ...

    def load_image(self, cluster: str, name: str) -> str:
        """Make the kit's image ``name`` (``labkit.images``) available on every node of ``cluster``.

        Returns the image reference pods use (with ``imagePullPolicy: Never``).
        """
        ...

    def describe(self, env: Env) -> str:
        """What ``up(env)`` would create or run, touching nothing (``invoke up --dry-run``)."""
        ...

    def sweep(self, env: Env | None = None, force: bool = False) -> str:
        """Remove what a test bed of this backend left (also after a crash); say what was removed.

        Refuses (:class:`TestbedError`) while another process holds the test bed, unless ``force``.
        """
        ...

    def processes(self) -> set[int]:
        """The pids of the test bed's processes on this machine (:class:`TestbedError` where they run elsewhere)."""
        ...
