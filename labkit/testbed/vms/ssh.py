"""SSH to the VMs with asyncssh: connections with timeouts and retries, commands, file copies, logs.

:class:`SshHost` keeps one connection to one VM and reconnects when it is lost;
:class:`SshPool` holds the hosts of an inventory and runs coroutines on them in parallel
(bounded). Every command and copy is appended to a log per host (``<log_dir>/<host>.log``):
UTC time, the command, exit status, duration, and stdout/stderr unless the command is secret.

Host keys: with ``known_hosts=None`` the server's key is not checked (lab VMs are usually
fresh and unknown); pass a known_hosts file to check it.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import asyncssh

from labkit.testbed.base import CommandResult, TestbedError

T = TypeVar("T")

#: Exit status reported for a command that ran out of time (as coreutils' ``timeout``).
TIMEOUT_STATUS = 124
#: Exit status reported when the connection broke while the command ran.
LOST_STATUS = 255


class SshError(TestbedError):
    """A VM cannot be reached or a copy failed; the message names the host and the log."""


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in.

    Attributes
    ----------
    name
        The VM's node name (used in logs and errors).
    address, port
        The SSH endpoint.
    user
        Login user; commands needing root go through ``sudo -n`` (see the runbook).
    key
        Private key file (``None``: the agent's and the default keys).
    known_hosts
        known_hosts file to verify the server with (``None``: no verification).
    """

    name: str
    address: str
    user: str
    key: Path | None = None
    port: int = 22
    known_hosts: Path | None = None


class HostLog:
    """Append-only log of one host's commands (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Append ``text`` with a UTC time stamp on its first line."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock, self.path.open("a") as out:
            out.write(f"{stamp} {text.rstrip()}\n")

    def result(self, command: str, result: CommandResult, seconds: float, secret: bool = False) -> None:
        """Log a finished command with its outputs (stdout withheld when ``secret``)."""
        stdout = "<withheld: secret>" if secret and result.stdout else result.stdout.rstrip()
        body = f"$ {command}\n  exit {result.returncode} after {seconds:.2f} s"
        if stdout:
            body += "\n  stdout:\n" + _indent(stdout)
        if result.stderr.strip():
            body += "\n  stderr:\n" + _indent(result.stderr.rstrip())
        self.write(body)


def _indent(text: str) -> str:
    """Indent every line by four spaces."""
    return "\n".join("    " + line for line in text.splitlines())


class SshHost:
    """One VM over SSH: a lazily opened, automatically reopened connection.

    Parameters
    ----------
    target
        Where to log in.
    log
        The host's command log.
    connect_timeout, retries, retry_delay
        Seconds allowed to connect (and authenticate), extra attempts, pause between them.
    """

    def __init__(self, target: SshTarget, log: HostLog, connect_timeout: float = 20.0, retries: int = 3,
                 retry_delay: float = 5.0) -> None:
        self.target = target
        self.log = log
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def name(self) -> str:
        """The VM's node name."""
        return self.target.name

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The open connection, (re)connecting with retries.

        Raises
        ------
        SshError
            After ``retries + 1`` failed attempts, with the last reason.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn = await self._connect(self.retries, self.connect_timeout)
            return self._conn

    async def reconnect(self, timeout: float) -> None:
        """Drop the connection and try once to open a new one within ``timeout`` seconds.

        Raises
        ------
        SshError
            When the host does not answer in time.
        """
        self._drop()
        conn = await self._connect(0, timeout)
        if self._conn is not None:  # another caller reconnected meanwhile
            conn.close()
            return
        self._conn = conn

    async def _connect(self, retries: int, timeout: float) -> asyncssh.SSHClientConnection:
        """Open a connection, retrying on network errors (not on a missing key or a refused login)."""
        t = self.target
        if t.key is not None and not t.key.is_file():
            raise SshError(f"{t.name}: SSH key {t.key} does not exist (backend.ssh_key of the env)")
        last: Exception | None = None
        for attempt in range(retries + 1):
            try:
                conn = await asyncio.wait_for(asyncssh.connect(
                    t.address, port=t.port, username=t.user,
                    client_keys=[str(t.key)] if t.key else (),
                    known_hosts=str(t.known_hosts) if t.known_hosts else None,
                    connect_timeout=timeout, keepalive_interval=5, keepalive_count_max=3),
                    timeout=timeout + 5)
                self.log.write(f"connected to {t.user}@{t.address}:{t.port} (attempt {attempt + 1})")
                return conn
            except asyncssh.PermissionDenied as err:
                self.log.write(f"login to {t.user}@{t.address}:{t.port} refused: {_reason(err)}")
                raise SshError(f"{t.name}: {t.user}@{t.address}:{t.port} refused the login ({_reason(err)}); "
                               f"check backend.user and backend.ssh_key (log: {self.log.path})") from None
            except (OSError, asyncssh.Error, asyncio.TimeoutError) as err:
                last = err
                self.log.write(f"connect to {t.address}:{t.port} failed (attempt {attempt + 1}): {_reason(err)}")
                if attempt < retries:
                    await asyncio.sleep(self.retry_delay)
        raise SshError(f"{t.name}: cannot ssh to {t.user}@{t.address}:{t.port} after {retries + 1} attempt(s): "
                       f"{_reason(last)} (log: {self.log.path})")

    async def run(self, argv: Sequence[str], timeout: float = 120.0, stdin: str | None = None,
                  secret: bool = False) -> CommandResult:
        """Run ``argv`` (quoted for the remote shell) and wait for it.

        A command that outlives ``timeout`` returns exit status :data:`TIMEOUT_STATUS`; one
        whose connection breaks returns :data:`LOST_STATUS` (and the connection is reopened
        by the next call). Only failing to connect raises.
        """
        command = shlex.join(argv)
        conn = await self.connection()
        start = time.monotonic()
        try:
            done = await conn.run(command, input=stdin, timeout=timeout, check=False)
            result = CommandResult(tuple(argv), _status(done.exit_status, done.exit_signal), _text(done.stdout),
                                   _text(done.stderr))
        except asyncssh.TimeoutError as err:
            result = CommandResult(tuple(argv), TIMEOUT_STATUS, _text(err.stdout),
                                   _text(err.stderr) + f"\n[labkit] timed out after {timeout} s")
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, OSError) as err:
            self._drop()
            result = CommandResult(tuple(argv), LOST_STATUS, "", f"[labkit] connection lost: {_reason(err)}")
        self.log.result(command, result, time.monotonic() - start, secret=secret)
        return result

    async def put(self, remote: str, content: str | None = None, local: Path | None = None, mode: int = 0o644,
                  timeout: float = 600.0) -> None:
        """Copy ``content`` or the file ``local`` to ``remote`` (parents created) with ``mode``.

        Raises
        ------
        SshError
            When the local file is missing or the copy fails (naming both ends).
        """
        if local is not None and not Path(local).is_file():
            raise SshError(f"{self.name}: cannot copy {local} -> {remote}: no such local file")
        conn = await self.connection()
        start = time.monotonic()
        try:
            await asyncio.wait_for(self._sftp_put(conn, remote, content, local, mode), timeout=timeout)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as err:
            self.log.write(f"put {local or '<content>'} -> {remote} FAILED: {_reason(err)}")
            raise SshError(f"{self.name}: copy to {remote} failed: {_reason(err)} (log: {self.log.path})") from None
        size = len(content.encode()) if content is not None else Path(local).stat().st_size  # type: ignore[arg-type]
        self.log.write(f"put {local or '<content>'} -> {remote} ({size} bytes, mode {mode:04o}) "
                       f"in {time.monotonic() - start:.2f} s")

    @staticmethod
    async def _sftp_put(conn: asyncssh.SSHClientConnection, remote: str, content: str | None, local: Path | None,
                        mode: int) -> None:
        """SFTP: create the parent directory, write the file, set its mode."""
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs(str(PurePosixPath(remote).parent), exist_ok=True)
            if local is not None:
                await sftp.put(str(local), remote)
            else:
                async with sftp.open(remote, "w") as out:
                    await out.write(content or "")
            await sftp.chmod(remote, mode)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            try:
                await asyncio.wait_for(conn.wait_closed(), timeout=5)
            except (asyncio.TimeoutError, OSError, asyncssh.Error):
                pass

    def _drop(self) -> None:
        """Forget a broken connection so the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()


def _status(exit_status: int | None, exit_signal: Any) -> int:
    """An exit status for the result (a signal as 128 + its number like a shell; unknown as 255)."""
    if exit_status is not None and exit_status >= 0:
        return exit_status
    if exit_signal:
        try:
            return 128 + signal.Signals[f"SIG{exit_signal[0]}"].value
        except (KeyError, IndexError, TypeError):
            pass
    return LOST_STATUS


def _text(data: Any) -> str:
    """asyncssh output (str, bytes or None) as text."""
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


def _reason(err: BaseException | None) -> str:
    """A short reason for an error."""
    if err is None:
        return "unknown error"
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}" if text != type(err).__name__ else text


class SshPool:
    """The SSH hosts of an inventory, by name, run with bounded parallelism."""

    def __init__(self, hosts: Iterable[SshHost], parallel: int = 8) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.parallel = parallel

    def __getitem__(self, name: str) -> SshHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise SshError(f"no host {name!r} (hosts: {sorted(self.hosts)})") from None

    async def each(self, names: Iterable[str], work: Callable[[SshHost], Awaitable[T]]) -> dict[str, T | BaseException]:
        """Run ``work`` for every named host, at most ``parallel`` at once; exceptions are returned, not raised."""
        gate = asyncio.Semaphore(self.parallel)

        async def one(host: SshHost) -> T:
            async with gate:
                return await work(host)

        names = list(names)
        results = await asyncio.gather(*(one(self[n]) for n in names), return_exceptions=True)
        return dict(zip(names, results, strict=True))

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(h.close() for h in self.hosts.values()), return_exceptions=True)


class LoopThread:
    """An asyncio loop in a daemon thread, so synchronous callers (the Host protocol) share connections.

    Call :meth:`stop` when done: it ends the loop and joins the thread.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="labkit-vms-ssh", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join its thread (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()
