"""What the ``00-environment`` notebook records: host facts, tool versions, timer pacing.

The pacing measurement matters for everything downstream: PMUs send a frame every 33 ms
(30 fps) and stream downtime is measured from frame timestamps, so the host's ability to
keep a 33 ms schedule bounds the resolution of every downtime figure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import machine

#: Tools the test beds use, with the argument that makes each print its version.
TOOLS: dict[str, list[str]] = {
    "etcd": ["--version"],
    "containerd": ["--version"],
    "runc": ["--version"],
    "ctr": ["--version"],
    "wireguard-go": ["--version"],
    "wg": ["--version"],
    "nft": ["--version"],
    "mariadbd": ["--version"],
    "go": ["version"],
    "kubelet": ["--version"],
    "kube-apiserver": ["--version"],
}

_VERSION = re.compile(r"v?\d+\.\d+(\.\d+)?([-+~][\w.\-+~]*)?")


def tool_versions(tools: Mapping[str, list[str]] = TOOLS) -> dict[str, str]:
    """Version string of each tool found on PATH (``"absent"`` when it is not installed)."""
    out = {}
    for tool, args in tools.items():
        exe = shutil.which(tool)
        if exe is None:
            out[tool] = "absent"
            continue
        try:
            proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
            text = proc.stdout + proc.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[tool] = f"error: {exc}"
            continue
        match = _VERSION.search(text)
        out[tool] = match.group(0) if match else text.strip().splitlines()[0][:80] if text.strip() else "unknown"
    return out


def pacing_lateness(period_s: float = 1 / 30, ticks: int = 300,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> np.ndarray:
    """Lateness (s) of each tick of an absolute-deadline schedule with period ``period_s``.

    This is how a PMU paces its frames: tick *k* is due at ``start + k * period_s``; the
    lateness is how long after its deadline the tick actually ran.
    """
    if period_s <= 0 or ticks <= 0:
        raise ValueError(f"period_s and ticks must be positive, got {period_s}, {ticks}")
    start = clock()
    late = np.empty(ticks)
    for k in range(ticks):
        due = start + (k + 1) * period_s
        remaining = due - clock()
        if remaining > 0:
            sleep(remaining)
        late[k] = clock() - due
    return late


def facts_table(versions: Mapping[str, str]) -> pd.DataFrame:
    """Host facts and tool versions as a two-column table (``fact``, ``value``)."""
    rows = [(k, str(v)) for k, v in machine.facts().as_dict().items()]
    rows += [(f"version:{k}", v) for k, v in versions.items()]
    return pd.DataFrame(rows, columns=["fact", "value"])


def plot_pacing(lateness_ms: pd.Series, period_ms: float, path: Path) -> Path:
    """Histogram + ECDF of tick lateness, saved to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    sns.histplot(lateness_ms, bins=40, ax=ax1)
    ax1.set(xlabel="tick lateness (ms)", ylabel="ticks", title=f"{period_ms:.1f} ms schedule")
    sns.ecdfplot(lateness_ms, ax=ax2)
    q = lateness_ms.quantile([0.5, 0.99])
    ax2.set(xlabel="tick lateness (ms)", ylabel="ECDF",
            title=f"median {q.iloc[0]:.3f} ms, p99 {q.iloc[1]:.3f} ms")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


FACTS_FILE = "environment.parquet"
PACING_TABLE = "pacing"


def record(run_dir: Path, *, run_id: str, fps: int = 30, ticks: int = 300) -> dict[str, Path]:
    """Measure and write this host's environment into ``run_dir``.

    Writes ``environment.parquet`` (facts and versions, two string columns) and the tidy
    table ``pacing`` (metric ``tick_lateness``, unit ``ms``, one row per tick).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    facts_path = run_dir / FACTS_FILE
    facts_table(tool_versions()).to_parquet(facts_path, index=False)
    period = 1 / fps
    start = pd.Timestamp.now(tz="UTC")
    late = pacing_lateness(period, ticks)
    rows = pd.DataFrame({
        "t": start + pd.to_timedelta(np.arange(1, ticks + 1) * period, unit="s"),
        "value": late * 1e3,
        "tick": np.arange(ticks),
        "fps": fps,
    })
    from labkit import results

    pacing = results.write_table(run_dir, PACING_TABLE, rows, run_id=run_id, scenario="environment",
                                 step="pacing", cluster="host", metric="tick_lateness", unit="ms")
    return {"facts": facts_path, "pacing": pacing}


def figure(run_dir: Path, figures_dir: Path) -> Path:
    """Draw ``env-pacing.png`` from the ``pacing`` table of ``run_dir``."""
    from labkit import results

    pacing = results.read_table(run_dir, PACING_TABLE)
    fps = int(pacing["fps"].iloc[0])
    return plot_pacing(pacing["value"], 1000 / fps, figures_dir / "env-pacing.png")
