"""Process supervisor of the embedded testbed, run as a child subreaper.

Started by :class:`Supervisor` as ``python -m labkit.testbed.embedded.supervisor``. It
adopts every orphan of the VMs (container processes whose shim died) and reaps it, so
nothing stays a zombie holding a cgroup. It talks JSON lines over stdin/stdout:

``{"op": "spawn", "name": ..., "vm": ..., "argv": [...], "log": ..., "env": {...}, "restart_s": 5}``
    start ``argv`` inside VM ``vm`` (its netns, mount namespace and cgroup), output to ``log``;
    with ``restart_s``, start it again that many seconds after every exit, as systemd's
    ``Restart=always`` + ``RestartSec=`` does for a node's daemons (:data:`RESTART_S`);
``{"op": "status"}``
    ``{"procs": {name: {"pid": int, "exit": int | null, "restarts": int}}}``;
``{"op": "signal", "name": ..., "signal": 9, "restart": true}``
    send a signal (default SIGKILL) to one process; ``"restart": false`` first drops its
    restart policy (a process killed for good);
``{"op": "stop", "name": ...}``
    drop its restart policy, SIGTERM, then SIGKILL after 5 s;
``{"op": "exit"}`` or end of input
    stop every process it started and exit.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from labkit.testbed.embedded import cgroups, linux, vm

SUPERVISOR_CGROUP = cgroups.SUPERVISOR
#: Delay before a node daemon that exited is started again: k3s' own systemd units
#: (``k3s.service``, ``k3s-agent.service``: ``Restart=always``, ``RestartSec=5s``; kubeadm's
#: ``kubelet.service`` waits 10 s). A kubelet that exits at start (for example on a transient
#: error binding its pod-resources socket) comes back as it would on a node.
RESTART_S = 5.0


class SupervisorError(RuntimeError):
    """The supervisor refused a request or died; the message says which."""


# --- the supervisor process -----------------------------------------------------------------

def _preexec(vm_name: str | None):  # noqa: ANN202
    def enter() -> None:
        os.setsid()
        if vm_name:
            vm.enter(vm_name)
    return enter


def _spawn(req: dict[str, Any]) -> int:
    log = Path(req["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(req["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **req.get("env", {})}, preexec_fn=_preexec(req.get("vm")),
                                close_fds=True)
    # Popen's handle is dropped: this process reaps every child itself.
    proc.returncode = 0
    return proc.pid


def _restart_due(procs: dict[str, dict[str, Any]], now: float) -> list[str]:
    """Names of the processes to start again now; arm the delay of those that just exited.

    A process restarts when it has a restart delay (``restart_s``), has exited, and its delay,
    counted from the moment this loop first saw the exit, has passed.
    """
    due = []
    for name, proc in procs.items():
        if proc["exit"] is None or proc.get("restart_s") is None:
            continue
        if proc.get("due") is None:
            proc["due"] = now + proc["restart_s"]
        elif now >= proc["due"]:
            due.append(name)
    return due


def _restart(procs: dict[str, dict[str, Any]], name: str) -> None:
    """Start process ``name`` again from its original request and note it in its log."""
    proc = procs[name]
    with Path(proc["req"]["log"]).open("a") as log:
        try:
            pid = _spawn(proc["req"])
        except Exception as exc:  # its VM is gone (a teardown under way): it stays down
            proc["restart_s"] = None
            log.write(f"[supervisor] {name} exited with {proc['exit']}; not started again: {exc}\n")
            return
        log.write(f"[supervisor] {name} exited with {proc['exit']}; started again after {proc['restart_s']:g} s "
                  f"(restart {proc['restarts'] + 1})\n")
    proc.update(pid=pid, exit=None, due=None, restarts=proc["restarts"] + 1)


def _public(procs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What ``status`` answers: pid, exit code (``None`` while running) and restarts of each process."""
    return {name: {"pid": p["pid"], "exit": p["exit"], "restarts": p["restarts"]} for name, p in procs.items()}


def _reap(procs: dict[str, dict[str, Any]]) -> None:
    by_pid = {p["pid"]: p for p in procs.values()}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in by_pid and by_pid[pid]["exit"] is None:
            by_pid[pid]["exit"] = os.waitstatus_to_exitcode(status)


def _stop(procs: dict[str, dict[str, Any]], names: list[str], grace: float = 5.0) -> None:
    for n in names:
        if n in procs:
            procs[n]["restart_s"] = None
    live = [procs[n] for n in names if n in procs and procs[n]["exit"] is None]
    for p in live:
        _signal(p["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p["exit"] is None for p in live):
        _reap(procs)
        time.sleep(0.05)
    for p in live:
        if p["exit"] is None:
            _signal(p["pid"], signal.SIGKILL)
    while any(p["exit"] is None for p in live):
        _reap(procs)
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def serve() -> None:
    """Run the supervisor loop on stdin/stdout until ``exit`` or end of input."""
    cgroups.adopt_scope(cgroups.current())  # a systemd host: move into the delegated scope's leaf first
    linux.set_child_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procs: dict[str, dict[str, Any]] = {}
    out = sys.stdout
    buffer = b""
    while True:
        _reap(procs)
        for name in _restart_due(procs, time.monotonic()):
            _restart(procs, name)
        ready, _, _ = select.select([sys.stdin.buffer], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            req = json.loads(line)
            op = req.get("op")
            try:
                if op == "spawn":
                    reply: dict[str, Any] = {"ok": True, "pid": _spawn(req)}
                    procs[req["name"]] = {"pid": reply["pid"], "exit": None, "restarts": 0, "req": req,
                                          "restart_s": req.get("restart_s"), "due": None}
                elif op == "status":
                    reply = {"ok": True, "procs": _public(procs)}
                elif op == "signal":
                    proc = procs.get(req["name"])
                    if proc and not req.get("restart", True):
                        proc["restart_s"] = None
                    if proc and proc["exit"] is None:
                        _signal(proc["pid"], int(req.get("signal", signal.SIGKILL)))
                    reply = {"ok": True}
                elif op == "stop":
                    _stop(procs, [req["name"]])
                    reply = {"ok": True}
                elif op == "exit":
                    _stop(procs, list(procs), grace=2.0)
                    out.write(json.dumps({"ok": True}) + "\n")
                    out.flush()
                    return
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
            except Exception as exc:  # reported to the caller, the supervisor keeps running
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    _stop(procs, list(procs), grace=2.0)


# --- the client side --------------------------------------------------------------------------

class Supervisor:
    """Handle on a running supervisor child process (thread-safe).

    Parameters
    ----------
    log
        Where the supervisor's own stderr goes.
    """

    def __init__(self, log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        layout = cgroups.current()
        if layout.scope is None:  # else systemd makes the scope and the supervisor its leaf (cgroups.adopt_scope)
            cgroups.create(layout, SUPERVISOR_CGROUP)
        self._lock = threading.Lock()
        argv = layout.supervisor_argv([sys.executable, "-m", "labkit.testbed.embedded.supervisor"])
        with log.open("ab") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                preexec_fn=None if layout.scope else lambda: cgroups.join(layout, SUPERVISOR_CGROUP))
        try:
            self.status()  # answered once the supervisor sits in its cgroup: the VMs' cgroups may follow
        except SupervisorError as err:
            self.close()
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise SupervisorError(f"the supervisor did not start ({err}); {log}:\n{tail}") from None

    @property
    def pid(self) -> int:
        """Process id of the supervisor."""
        return self._proc.pid

    def request(self, **req: Any) -> dict[str, Any]:
        """Send one request and return the reply.

        Raises
        ------
        SupervisorError
            When the supervisor is gone or refuses the request.
        """
        with self._lock:
            if self._proc.poll() is not None:
                raise SupervisorError(f"supervisor exited with {self._proc.returncode}")
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise SupervisorError("supervisor closed its output")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise SupervisorError(f"{req.get('op')} {req.get('name', '')}: {reply.get('error')}")
        return reply

    def spawn(self, name: str, vm_name: str | None, argv: list[str], log: Path,
              env: dict[str, str] | None = None, restart_s: float | None = None) -> int:
        """Start ``argv`` in VM ``vm_name``; return its pid.

        With ``restart_s``, the supervisor starts it again that many seconds after each exit
        (until :meth:`stop`, a ``signal`` with ``restart=False`` or :meth:`close`).
        """
        return self.request(op="spawn", name=name, vm=vm_name, argv=[str(a) for a in argv], log=str(log),
                            env=env or {}, restart_s=restart_s)["pid"]

    def status(self) -> dict[str, dict[str, Any]]:
        """Pid, exit code (``None`` while running) and restart count of every process started."""
        return self.request(op="status")["procs"]

    def stop(self, name: str) -> None:
        """Stop one process (SIGTERM, SIGKILL after 5 s)."""
        self.request(op="stop", name=name)

    def close(self, timeout: float = 20.0) -> None:
        """Stop every process and the supervisor itself (SIGKILL if it does not exit)."""
        if self._proc.poll() is None:
            try:
                self.request(op="exit")
            except (SupervisorError, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


if __name__ == "__main__":
    serve()
