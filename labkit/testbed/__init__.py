"""Testbeds: where the clusters run.

Everything above this package talks to a :class:`~labkit.testbed.base.Testbed` obtained from
:func:`create`, :func:`running` or :func:`own`, and never imports a backend: this module is the
one place that does. Backends: ``embedded`` (network-namespace VMs on one Linux machine, real
Kubernetes v1.24.17) and ``vms`` (Crownlabs-like VMs over SSH, k3s + Liqo).

A *session* is a pipeline run's shared test bed (:func:`session`): the runner opens one and
passes its name to every notebook as the recorded parameter ``session``; given it,
:func:`running` attaches to the test bed the session holds (or has it brought up) instead of
bringing up its own. Backends that do not share (vms) get no session (``""``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from labkit.config import Env
from labkit.setup_steps import Step
from labkit.testbed.base import (CommandResult, Host, MachineBusy, PingResult, Testbed, TestbedError, parse_ping,
                                 ping_with)
from labkit.testbed.signals import ignore_terminate, unwind_on_terminate

__all__ = ["CommandResult", "Host", "MachineBusy", "PingResult", "Session", "Testbed", "TestbedError", "apt_packages",
           "create", "hold", "load_image", "off_event_loop", "own", "parse_ping", "ping_with", "running", "session",
           "setup_steps", "sweep"]

P = ParamSpec("P")
R = TypeVar("R")
Log = Callable[[str], None]


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


def create(env: Env, *, run_dir: Path | None = None, log: Log = print) -> Testbed:
    """The driver for ``env.backend.kind`` (not yet up)."""
    if env.backend.kind == "embedded":
        from labkit.testbed.embedded import EmbeddedTestbed

        return EmbeddedTestbed(log=log)
    from labkit.testbed.vms import VmsTestbed

    return VmsTestbed(run_dir=run_dir, log=log)


@contextmanager
def running(env: Env, *, session: str | Path | None = None, run_dir: Path | None = None,
            log: Log = print) -> Iterator[Testbed]:
    """Bring ``env`` up for the block and always tear it down, also when the block fails.

    With a ``session`` (:func:`session`) the block gets a view of the session's test bed instead,
    brought up for ``env`` if the session holds another one, and left up for the next block.
    """
    if session and env.backend.kind == "embedded":
        from labkit.testbed.embedded import server

        view = server.acquire(env, Path(session), log)
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


def up_first(beds: Sequence[Env], session: str | Path | None) -> list[int]:
    """The order to visit ``beds`` in (indices): the one ``session``'s server runs now first, then the rest in order.

    Visiting the running test bed first saves bringing it up again after another (minutes on Liqo).
    """
    order = list(range(len(beds)))
    if not session or not beds or beds[0].backend.kind != "embedded":
        return order
    from labkit.testbed.embedded import server

    running = next((i for i in order if server.serves(beds[i], Path(session))), None)
    return order if running is None else [running, *(i for i in order if i != running)]


@contextmanager
def own(env: Env, *, session: str | Path | None = None, run_dir: Path | None = None,
        log: Log = print) -> Iterator[Testbed]:
    """A driver for ``env``'s backend that is *not* up, for a block that brings test beds up itself.

    The session's shared test bed (if any) stops first: the machine runs one embedded test bed.
    The driver is always torn down after the block.
    """
    if session and env.backend.kind == "embedded":
        from labkit.testbed.embedded import server

        server.stop(Path(session), log)
    testbed = create(env, run_dir=run_dir, log=log)
    try:
        yield testbed
    finally:
        testbed.down()


@dataclass(frozen=True)
class Session:
    """A pipeline run's shared test bed: its ``name`` is what :func:`running` and :func:`own` take.

    ``name`` is ``""`` for a backend that does not share (vms): every block then brings its own.
    """

    name: str

    def close(self, *, keep_log: Path | None = None, log: Log = print) -> None:
        """Stop the session's test bed (idempotent); keep the server's log (bring-ups, teardowns) as ``keep_log``."""
        if not self.name:
            return
        from labkit.testbed.embedded import server

        path = Path(self.name)
        try:
            server.stop(path, log)
        finally:
            if keep_log is not None and (path / server.LOG).exists():
                keep_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path / server.LOG, keep_log)
            shutil.rmtree(path, ignore_errors=True)


def session(env: Env, run_id: str) -> Session:
    """A session for run ``run_id`` on ``env``'s backend (nothing starts until a block asks for a test bed).

    Its directory is new, also when two runs share a run id (two checkouts' pipeline tests). This
    process owns it: its test bed goes down when this process ends, also when it is killed.
    """
    if env.backend.kind != "embedded":
        return Session("")
    from labkit.testbed.embedded import server

    return Session(str(server.open_session(run_id)))


def hold(testbed: Testbed, env: Env, log: Log = print) -> None:
    """Bring ``env`` up and hold it until Ctrl-C, kill or a closed terminal; then tear it down.

    For a test bed that lives in this process (``invoke up`` on the embedded backend). Every such
    signal from the start of ``up()`` on tears the test bed down; one during ``up()`` is re-raised
    (as ``KeyboardInterrupt``) after the teardown, one while holding ends the hold.
    """
    ready = False
    unwind_on_terminate()
    try:
        testbed.up(env)
        ready = True
        log(f"[up] {env.name}: clusters {', '.join(testbed.clusters())} are up and held by this process "
            f"(pid {os.getpid()}); Ctrl-C or kill tears them down")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        if not ready:
            raise
        log("[up] tearing down")
    finally:
        ignore_terminate()
        testbed.down()


def sweep(env: Env, *, force: bool = False, log: Log = print) -> str:
    """Remove what a test bed of ``env``'s backend left behind (also after a crash); say what was removed.

    ``force``: also while a process holds it, stopping every run's shared test bed first.
    """
    if force and env.backend.kind == "embedded":
        from labkit.testbed.embedded import server

        server.stop_all(log)  # a killed `invoke lab` leaves its server holding the test bed
    return create(env, log=log).sweep(env, force=force)


def apt_packages() -> dict[str, str]:
    """The Debian packages of every backend, with the reason for each."""
    from labkit.testbed import embedded, vms

    return {**embedded.APT_PACKAGES, **vms.APT_PACKAGES}


def setup_steps() -> list[Step]:
    """Every backend's setup steps except its Debian packages (:func:`apt_packages`), in order."""
    from labkit.testbed import embedded, vms

    return [*embedded.setup_steps(), *vms.setup_steps()]


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
