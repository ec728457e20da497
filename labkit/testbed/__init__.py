"""Testbeds: where the clusters run.

Everything above this package talks to a :class:`~labkit.testbed.base.Testbed` obtained
from :func:`create` or :func:`running`, and never imports a backend directly. Backends:
``embedded`` (network-namespace VMs on one Linux machine, real Kubernetes v1.24.17) and
``vms`` (Crownlabs-like VMs over SSH, k3s + Liqo).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from labkit.config import Env
from labkit.testbed.base import (CommandResult, Host, MachineBusy, PingResult, Testbed, TestbedError, parse_ping,
                                 ping_with)

__all__ = ["CommandResult", "Host", "MachineBusy", "PingResult", "Testbed", "TestbedError", "create", "load_image",
           "off_event_loop", "parse_ping", "ping_with", "running"]

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
    """Bring ``env`` up for the block and always tear it down, also when the block fails.

    In a process that shares its embedded test bed (the notebooks of ``invoke lab``, see
    :mod:`labkit.testbed.embedded.shared`), the block gets a view of the run's shared test bed
    instead, brought up for ``env`` if it runs another one, and left up for the next block.
    """
    if env.backend.kind == "embedded":
        from labkit.testbed.embedded import shared

        session = shared.session_dir()
        if session is not None:
            view = shared.acquire(env, session, log)
            try:
                yield view
            finally:
                view.down()  # forgets the view; the server keeps the test bed
            return
    testbed = create(env, run_dir=run_dir, log=log)
    try:
        testbed.up(env)
        yield testbed
    finally:
        testbed.down()


def load_image(testbed: Testbed, clusters: Sequence[str], name: str) -> str:
    """Build (or reuse) image ``name`` and import it into every node of ``clusters``; return its reference.

    Four clusters at a time from the start: the first to take the image's build lock builds it
    (or finds it built); the others wait on that lock, then only import.
    """
    if not clusters:
        raise ValueError(f"load_image({name!r}): no cluster given")
    with ThreadPoolExecutor(max_workers=min(4, len(clusters)), thread_name_prefix=f"load-{name}") as pool:
        refs = list(pool.map(lambda cluster: testbed.load_image(cluster, name), clusters))
    return refs[0]
