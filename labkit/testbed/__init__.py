"""Testbeds: where the clusters run.

Everything above this package talks to a :class:`~labkit.testbed.base.Testbed` obtained
from :func:`create` or :func:`running`, and never imports a backend directly. Backends:
``embedded`` (network-namespace VMs on one Linux machine, real Kubernetes v1.24.17) and
``vms`` (Crownlabs-like VMs over SSH, k3s + Liqo).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from labkit.config import Env
from labkit.testbed.base import CommandResult, Host, PingResult, Testbed, TestbedError, parse_ping, ping_with

__all__ = ["CommandResult", "Host", "PingResult", "Testbed", "TestbedError", "create", "off_event_loop", "parse_ping",
           "ping_with", "running"]

P = ParamSpec("P")
R = TypeVar("R")


def off_event_loop(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` in a worker thread when the calling thread runs an asyncio loop (a Jupyter kernel).

    The drivers use blocking libraries that drive asyncio themselves (pyroute2's netlink,
    asyncssh); inside a notebook's running loop they fail with "This event loop is already
    running". Experiment entry points are wrapped with this, so notebooks call them plainly.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"labkit-{fn.__name__}") as pool:
            return pool.submit(fn, *args, **kwargs).result()

    return wrapper


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
