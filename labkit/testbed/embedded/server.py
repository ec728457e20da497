"""The test-bed server: one embedded test bed shared by the notebooks of a pipeline run, a cache of size one.

Bringing the thesis' five clusters up, peering them, forming the DB domain and importing the
images costs minutes, and five notebooks of a run measure on the same clusters. The runner
opens a session (a directory, :func:`labkit.testbed.sharing`) and gives it to every notebook as
the recorded parameter ``session``; :func:`labkit.testbed.running` given a session asks this
module for a test bed instead of bringing up its own:

- the server already runs this test bed (same :func:`fingerprint`): **attach**, a view that owns
  no process (:meth:`EmbeddedTestbed.attach`);
- it runs another one: stop the server, start one for this env;
- none runs: start one.

The server is a process of its own (``python -m labkit.testbed.embedded.server <session>``),
started in its own session so that it outlives the notebook kernel that asked for it. It
holds the machine lock and the test bed, writes its state to ``<session>/server.json`` and its
progress to ``<session>/server.log``, and tears the test bed down on SIGTERM, or when the
process that opened the session (:func:`open_session`, written to ``<session>/owner.json``: the
runner) is gone, so a run killed by a timeout does not leave the machine lock held. An own test bed in
a session (:func:`labkit.testbed.own`, the scalability sweep) stops the server first
(:func:`stop`); the runner stops it when the run ends, also when it fails.

What an experiment leaves in a shared test bed is the next one's problem, so experiments remove
their workloads when they end (the DB domain stays: reusing it is the point).

Two things make the run faster than a test bed per notebook would be, and change nothing it
measures: the server builds the node image store first when a code change made it stale
(:func:`refresh_image_store`; else every node of every bed unpacks every image), and it deletes
its test beds without liqoctl's teardown (``EmbeddedTestbed(liqo_teardown=False)``: Liqo lives
only in the clusters being deleted). An experiment with several beds measures the one running
first (:func:`labkit.testbed.up_first`).

The fingerprint covers what ``up()`` builds from an env (:func:`~.spec.from_env`: clusters, VMs,
CIDRs, labels, peerings, offloads, timers), not the grid's placement: the stream experiments'
env variants (``stream.movable_low_env``, ``stream.colocated_env``) share one test bed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import timescale
from labkit.config import Env, validate_env
from labkit.testbed.base import TestbedError
from labkit.testbed.embedded import linux
from labkit.testbed.signals import ignore_terminate, unwind_on_terminate
from labkit.waiting import poll, wait_until

if TYPE_CHECKING:
    from labkit.testbed.embedded import EmbeddedTestbed

#: Where the runner's sessions live (``<root>/<run_id>``).
SESSIONS_ROOT = Path("/run/labkit-shared")
#: Files of a session directory.
REQUEST, STATE, LOG, OWNER = "request.json", "server.json", "server.log", "owner.json"
#: How often a serving server looks whether the session's owner still runs.
OWNER_CHECK_S = 2.0

Log = Callable[[str], None]


@dataclass
class ServerState:
    """What the server writes to ``server.json``."""

    pid: int
    fingerprint: str
    env: str
    state: str                      # "starting", "ready", "failed", "stopped"
    error: str = ""
    timings: dict[str, float] | None = None

    def write(self, session: Path) -> None:
        """Write atomically (readers poll the file)."""
        tmp = session / f".{STATE}.tmp"
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(session / STATE)

    @classmethod
    def read(cls, session: Path) -> ServerState | None:
        """The last state written, or ``None`` when no server ever wrote one."""
        try:
            return cls(**json.loads((session / STATE).read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None


def fingerprint(env: Env) -> str:
    """Digest of the test bed ``up(env)`` builds (:func:`~.spec.from_env`), placement excluded."""
    from labkit.testbed.embedded.spec import from_env

    return hashlib.sha256(repr(from_env(env)).encode()).hexdigest()[:16]


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or ``None``: no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (``None``: no such process)."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def open_session(run_id: str) -> Path:
    """A new session directory for run ``run_id``, owned by this process (see :func:`owner_alive`)."""
    SESSIONS_ROOT.mkdir(parents=True, exist_ok=True)
    session = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=SESSIONS_ROOT))
    (session / OWNER).write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}))
    return session


def owner_alive(session: Path) -> bool:
    """Whether the process that opened ``session`` still runs (the same process: pid and start time).

    A session without an owner file (made by hand) counts as owned.
    """
    try:
        owner = json.loads((session / OWNER).read_text())
    except FileNotFoundError:
        return True
    return _alive(owner["pid"]) and _start_time(owner["pid"]) == owner["start"]


def _serving(session: Path) -> ServerState | None:
    """The state of a live server of ``session`` (``None``: no server runs)."""
    state = ServerState.read(session)
    return state if state is not None and state.state in ("starting", "ready") and _alive(state.pid) else None


# --------------------------------------------------------------------------- client side


def serves(env: Env, session: Path) -> bool:
    """Whether the session's server runs ``env``'s test bed now (a block asking for it would attach)."""
    state = _serving(session)
    return state is not None and state.fingerprint == fingerprint(env)


def acquire(env: Env, session: Path, log: Log = print, timeout: float | None = None) -> EmbeddedTestbed:
    """A view of the session's test bed running ``env``, starting (or replacing) the server as needed.

    ``timeout`` bounds the wait for a new server to be ready (default: the wait for the machine
    lock, ``$LABKIT_EMBEDDED_WAIT``, plus ``up()``'s node timeout for the env plus 4 min for the
    peering: a server that waits for another process's test bed is not late).

    Raises
    ------
    TestbedError
        When the server fails or is not ready in time (the message quotes its log).
    """
    from labkit.testbed.embedded import EmbeddedTestbed

    session.mkdir(parents=True, exist_ok=True)
    wanted = fingerprint(env)
    state = _serving(session)
    if state is None or state.fingerprint != wanted:
        if state is not None:
            log(f"[shared] the session's test bed runs {state.env}; replacing it with {env.name}")
        stop(session, log)
        state = _start(env, wanted, session, log, timeout)
    else:
        log(f"[shared] attaching to the running test bed of {env.name} (server pid {state.pid})")
    return EmbeddedTestbed.attach(env, timings=state.timings, log=log)


def _start(env: Env, wanted: str, session: Path, log: Log, timeout: float | None) -> ServerState:
    """Start a server for ``env`` and wait until it is ready."""
    from labkit.testbed.embedded import wait_seconds

    vms = sum(len(c.nodes) for c in env.clusters)
    timeout = timeout if timeout is not None else wait_seconds() + 120.0 + 12.0 * vms + 240.0
    (session / REQUEST).write_text(json.dumps({"fingerprint": wanted,
                                               "env": env.model_dump(mode="json", exclude_none=True)}))
    (session / STATE).unlink(missing_ok=True)
    with open(session / LOG, "ab") as out:
        proc = linux.spawn_detached([sys.executable, "-m", "labkit.testbed.embedded.server", str(session)], out)
    log(f"[shared] server pid {proc.pid} brings up {env.name}; its log: {session / LOG}")
    timeout = timescale.scaled(timeout)
    shown = _log_size(session)

    def ready() -> ServerState | None:
        nonlocal shown
        shown = _forward(session, shown, log)
        state = ServerState.read(session)
        if (state is not None and state.state == "failed") or proc.returncode is not None:
            raise TestbedError(f"the shared test bed of {env.name} failed: "
                               f"{state.error if state else 'the server exited'}; see {session / LOG}")
        return state if state is not None and state.pid == proc.pid and state.state == "ready" else None

    found = poll(ready, timeout=timeout)
    if found is None:
        stop(session, log)
        raise TestbedError(f"the shared test bed of {env.name} was not ready after {timeout:.0f} s; "
                           f"see {session / LOG}")
    return found


def _log_size(session: Path) -> int:
    try:
        return (session / LOG).stat().st_size
    except FileNotFoundError:
        return 0


def _forward(session: Path, offset: int, log: Log) -> int:
    """Pass the server's new complete log lines from ``offset`` on to ``log``; return the new offset."""
    try:
        with open(session / LOG, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    complete = chunk[: chunk.rfind(b"\n") + 1]
    for line in complete.decode(errors="replace").splitlines():
        log(f"  {line}")
    return offset + len(complete)


def stop(session: Path, log: Log = print, timeout: float = 180.0) -> None:
    """Stop the session's server (it tears its test bed down) and wait until it is gone; idempotent."""
    state = _serving(session)
    if state is None:
        return
    log(f"[shared] stopping the test bed of {state.env} (server pid {state.pid})")
    offset = _log_size(session)
    os.kill(state.pid, signal.SIGTERM)
    wait_until(lambda: not _alive(state.pid), timeout=timeout, interval=0.3, error=TestbedError,
               message=f"the shared test bed's server (pid {state.pid}) did not stop within {timeout:.0f} s; "
                       f"see {session / LOG}, then `invoke down --force`")
    _forward(session, offset, log)


def stop_all(log: Log = print) -> int:
    """Stop the server of every session under :data:`SESSIONS_ROOT` (a killed run's); return how many ran."""
    stopped = 0
    for session in sorted(SESSIONS_ROOT.iterdir()) if SESSIONS_ROOT.is_dir() else ():
        if _serving(session) is not None:
            stop(session, log)
            stopped += 1
    return stopped


# --------------------------------------------------------------------------- server side


def refresh_image_store(log: Log) -> None:
    """Build the node image store when the images changed since ``invoke setup`` built it (a code change
    rebuilds the runtime image); without it every node of every test bed unpacks every image itself.

    A failure is logged, not raised: the test bed then comes up without the store, only slower.
    """
    from labkit.images import store
    from labkit.images.sources import ImageError

    if store.is_built():
        return
    log("[shared] the node image store is out of date (the images changed since `invoke setup`): building it")
    try:
        store.ensure(log=log)
    except (ImageError, OSError, subprocess.SubprocessError) as exc:
        log(f"[shared] node image store not built ({type(exc).__name__}: {exc}); every node unpacks its images")


def serve(session: Path) -> int:
    """Bring up the requested env, report ``ready``, hold it until SIGTERM or SIGINT, tear it down."""
    from labkit.testbed.embedded import EmbeddedTestbed

    request = json.loads((session / REQUEST).read_text())
    env = validate_env(request["env"], source=session / REQUEST)
    state = ServerState(pid=os.getpid(), fingerprint=request["fingerprint"], env=env.name, state="starting")
    state.write(session)
    unwind_on_terminate((signal.SIGTERM,))
    log = functools.partial(print, flush=True)
    # nothing of Liqo outlives the clusters: liqoctl's teardown would only cost the run a minute per bed
    testbed = EmbeddedTestbed(log=log, liqo_teardown=False)
    try:
        refresh_image_store(log)
        testbed.up(env)
        state.state, state.timings = "ready", dict(testbed.timings)
        state.write(session)
        log(f"[shared] {env.name} ready; serving until SIGTERM or the end of the run that opened the session")
        while owner_alive(session):
            time.sleep(OWNER_CHECK_S)
        log("[shared] the run that opened this session is gone: tearing the test bed down")
        return 0
    except KeyboardInterrupt:
        return 0
    except BaseException as err:
        state.state, state.error = "failed", f"{type(err).__name__}: {err}"
        state.write(session)
        log(f"[shared] failed:\n{''.join(traceback.format_exception(err))}")
        return 1
    finally:
        ignore_terminate((signal.SIGTERM, signal.SIGINT))
        testbed.down()
        if state.state != "failed":
            state.state = "stopped"
            state.write(session)
        log("[shared] stopped")


if __name__ == "__main__":
    raise SystemExit(serve(Path(sys.argv[1])))
