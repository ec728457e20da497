"""Building Go programs from source: the toolchain, its environment, and one progress-logging runner.

Kubernetes and CoreDNS (:mod:`labkit.testbed.embedded.binaries`), the look-alike's virtual kubelet
and Liqo (:mod:`labkit.images.liqo.source`) are built with the same Go, cached under
:func:`bin_root` in one directory per version key. A leaf below the test beds: the images of Liqo
are built from these programs as well as the embedded backend running them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from labkit import paths
from labkit.setup_steps import SetupError

Log = Callable[[str], None]


class BinariesMissing(FileNotFoundError):
    """A binary the embedded testbed needs is not installed; the message says how to get it."""


def go_binary() -> Path | None:
    """The Go toolchain: ``go`` on ``PATH``, else ``/usr/local/go/bin/go``; ``None`` if absent."""
    found = shutil.which("go")
    if found:
        return Path(found)
    default = Path("/usr/local/go/bin/go")
    return default if default.exists() else None


def go_version() -> str:
    """Version of the Go toolchain (``go1.26.8``), ``nogo`` when there is none."""
    go = go_binary()
    if go is None:
        return "nogo"
    out = subprocess.run([str(go), "env", "GOVERSION"], capture_output=True, text=True, env=go_env())
    return out.stdout.strip() or "nogo"


def bin_root() -> Path:
    """``~/.cache/labkit/bin``: one directory per version key."""
    return paths.cache_dir() / "bin"


def go_env() -> dict[str, str]:
    """Environment for the Go toolchain: local toolchain only, reproducible paths."""
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -trimpath").strip()
    go = go_binary()
    if go is not None:
        env["PATH"] = f"{go.parent}:{env.get('PATH', '')}"
    return env


def run_go(argv: list[str], log: Log, cwd: Path | None = None, total: int = 0, label: str = "",
            extra_env: dict[str, str] | None = None) -> None:
    """Run ``argv``, logging progress every 10 % of ``total`` output lines (or every 200 lines).

    Raises
    ------
    labkit.setup_steps.SetupError
        With the last output lines when the command fails.
    """
    proc = subprocess.Popen(argv, cwd=cwd, env={**go_env(), **(extra_env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    seen, next_mark, start = 0, 10, time.monotonic()
    for line in proc.stdout:
        seen += 1
        tail = (tail + [line.rstrip()])[-20:]
        pct = min(99, 100 * seen // total) if total else 0
        if (total and pct >= next_mark) or (not total and seen % 200 == 0):
            log(f"  {label}: {f'{pct} % ' if total else ''}({seen} packages, {time.monotonic() - start:.0f} s)")
            next_mark = pct + 10
    if proc.wait() != 0:
        raise SetupError(f"`{' '.join(argv)}` exited {proc.returncode}:\n" + "\n".join(tail))
