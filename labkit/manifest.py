"""The run manifest: ``data/<run_id>/manifest.json``, written first and completed last.

It records what is needed to trust and repeat a run: run id, UTC start/end, git SHA and
dirty flag, the env and profile, resolved parameters per notebook, package and tool
versions, host facts, seed, per-notebook status and duration, and threshold verdicts.
Writes are atomic (temporary file + rename), so a killed run leaves a readable manifest
whose status says ``running``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from labkit import machine, paths
from labkit.paths import new_run_id

__all__ = ["MANIFEST", "Manifest", "NotebookRecord", "git_info", "new_run_id", "package_versions", "utcnow"]

MANIFEST = "manifest.json"
NotebookStatus = Literal["pending", "running", "ok", "failed", "skipped"]
RunStatus = Literal["running", "ok", "failed", "interrupted"]


def utcnow() -> str:
    """Current UTC time as ISO 8601 with microseconds and a ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def git_info(root: Path | None = None) -> dict[str, Any]:
    """``{"sha": ..., "dirty": bool}`` of the checkout (``sha: None`` outside git)."""
    root = root or paths.repo_root()

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str]:
    """Installed versions of labkit, Python and every distribution labkit requires."""
    versions = {"python": sys.version.split()[0]}
    try:
        requires = metadata.distribution("labkit").requires or []
        versions["labkit"] = metadata.version("labkit")
    except metadata.PackageNotFoundError:
        requires = []
    for req in requires:
        name = req.split(";")[0].split("[")[0]
        for sep in ("==", ">=", "<=", "~=", "<", ">", " "):
            name = name.split(sep)[0]
        try:
            versions[name.strip()] = metadata.version(name.strip())
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class NotebookRecord:
    """One notebook of the run: where it ran to, its parameters, status and duration."""

    notebook: str
    output: str
    parameters: dict[str, Any]
    status: NotebookStatus = "pending"
    started_utc: str | None = None
    ended_utc: str | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass
class Manifest:
    """Everything recorded about one run (see the module docstring)."""

    run_id: str
    env: str
    profile: str
    seed: int
    started_utc: str = field(default_factory=utcnow)
    ended_utc: str | None = None
    status: RunStatus = "running"
    git: dict[str, Any] = field(default_factory=git_info)
    packages: dict[str, str] = field(default_factory=package_versions)
    host: dict[str, Any] = field(default_factory=lambda: machine.facts().as_dict())
    parameters: dict[str, Any] = field(default_factory=dict)
    notebooks: list[NotebookRecord] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: Who peered the clusters (``labkit.testbed.peering_of``): Liqo, or the kit's look-alike.
    peering: str = ""

    def write(self, run_dir: Path) -> Path:
        """Write ``run_dir/manifest.json`` atomically and return its path."""
        run_dir.mkdir(parents=True, exist_ok=True)
        target = run_dir / MANIFEST
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, target)
        return target

    @classmethod
    def read(cls, run_dir: Path) -> Manifest:
        """Read ``run_dir/manifest.json`` (``FileNotFoundError`` naming the path)."""
        path = run_dir / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"no manifest at {path}: is {run_dir} a run folder of data/?")
        data = json.loads(path.read_text())
        data["notebooks"] = [NotebookRecord(**nb) for nb in data.get("notebooks", [])]
        return cls(**data)
