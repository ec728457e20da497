"""Where things live: the repository, data/, figures/, notebooks/, envs/ and the cache."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path


def repo_root() -> Path:
    """The checkout root (``LABKIT_ROOT`` overrides; else the parent of the package)."""
    env = os.environ.get("LABKIT_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``data/``: one folder per run, ``data/<run_id>/``."""
    return repo_root() / "data"


def new_run_id() -> str:
    """A sortable, unique run id, the name of a run's folder: ``YYYYmmddTHHMMSSZ-<6 hex>``."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def figures_dir() -> Path:
    """``figures/``: every figure, rebuilt from data/ by ``invoke figures``."""
    return repo_root() / "figures"


def notebooks_dir() -> Path:
    """``notebooks/``: the papermill pipeline notebooks."""
    return repo_root() / "notebooks"


def envs_dir() -> Path:
    """``envs/``: declarative topologies and backends."""
    return repo_root() / "envs"


def cache_dir() -> Path:
    """Build cache for binaries and images (``LABKIT_CACHE`` or ``~/.cache/labkit``)."""
    env = os.environ.get("LABKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "labkit"
