"""Testbeds: where the clusters run.

Everything above this package talks to a :class:`~labkit.testbed.base.Testbed` obtained
from :func:`create` or :func:`running`, and never imports a backend directly. Backends:
``embedded`` (network-namespace VMs on one Linux machine, real Kubernetes v1.24.17) and
``vms`` (Crownlabs-like VMs over SSH, k3s + Liqo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.config import Env
from labkit.testbed.base import CommandResult, Host, PingResult, Testbed, TestbedError, parse_ping, ping_with

__all__ = ["CommandResult", "Host", "PingResult", "Testbed", "TestbedError", "create", "parse_ping", "ping_with",
           "running"]


def create(env: Env, *, run_dir: Path | None = None, log: Callable[[str], None] = print) -> Testbed:
    """The driver for ``env.backend.kind`` (not yet up); the one place that imports a backend."""
    if env.backend.kind == "embedded":
        from labkit.testbed.embedded import EmbeddedTestbed

        return EmbeddedTestbed(log=log)
    from labkit.testbed.vms import VmsTestbed

    return VmsTestbed(run_dir=run_dir, log=log)


@contextmanager
def running(env: Env, *, run_dir: Path | None = None, log: Callable[[str], None] = print) -> Iterator[Testbed]:
    """Bring ``env`` up for the block and always tear it down, also when the block fails."""
    testbed = create(env, run_dir=run_dir, log=log)
    try:
        testbed.up(env)
        yield testbed
    finally:
        testbed.down()
