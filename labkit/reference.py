"""The thesis' published numbers, and the side-by-side comparison with ours.

``labkit/data/thesis_reference.yaml`` holds every number the thesis published (chapter 7),
so that each figure and table can show the thesis' value beside the kit's: the difference and
the ratio. Whether ours reproduces the thesis' value is not a test of equality but a band that
allows for the known differences, with its reason (:mod:`labkit.fidelity`).

No significance test is computed. The ping tables give mean ± std of about 1000 probes per leaf,
so Welch's test could be run per leaf, but with n ≈ 1000 on each side it rejects any difference
above ~0.07 ms, and one machine of network namespaces is not meant to equal five VMs on a
data-center network: a p-value of 0.000 in every row says nothing. The Avg rows are not samples
of probes at all: their mean is the mean of three leaf means, and Table 7.3's Avg std (0.267 ms)
is smaller than each of its leaves' (0.294-0.568 ms), so it is not a spread of the probes (Tables
7.2 and 7.4 take the root mean square of the leaves' stds: 0.581, 0.821 ms; for 7.3 that would be
0.463 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

#: Probes per ping test in the thesis ("approximately 1000 iterations per test").
THESIS_PING_N = 1000


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The reference figures as a nested mapping (read once)."""
    text = resources.files("labkit").joinpath("data/thesis_reference.yaml").read_text()
    return yaml.safe_load(text)


def lookup(path: str) -> Any:
    """A value by dotted path, e.g. ``"latency_ms.table_7_2_network.avg"`` (``KeyError`` naming it)."""
    node: Any = load()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"no reference value at {path!r} (stopped at {part!r})")
        node = node[part]
    return node


@dataclass(frozen=True)
class Published:
    """One published number: mean, optional std and sample size, and its unit."""

    key: str
    mean: float
    std: float | None
    n: int | None
    unit: str


def published(path: str, unit: str, n: int | None = None) -> Published:
    """The reference at ``path`` as :class:`Published` (``[mean, std]`` lists or plain numbers)."""
    value = lookup(path)
    if isinstance(value, list):
        return Published(path, float(value[0]), float(value[1]), n, unit)
    return Published(path, float(value), None, n, unit)


def compare(rows: list[tuple[Published, float, float | None, int]]) -> pd.DataFrame:
    """Thesis vs labkit, one row per published number.

    Parameters
    ----------
    rows
        ``(published, our_mean, our_std, our_n)`` tuples.

    Returns
    -------
    pandas.DataFrame
        Columns ``key, unit, thesis_mean, thesis_std, labkit_mean, labkit_std, labkit_n,
        diff, ratio`` (no test of equality: see the module docstring).
    """
    out = [{"key": ref.key, "unit": ref.unit, "thesis_mean": ref.mean, "thesis_std": ref.std,
            "labkit_mean": mean, "labkit_std": std, "labkit_n": n, "diff": mean - ref.mean,
            "ratio": mean / ref.mean if ref.mean else None} for ref, mean, std, n in rows]
    return pd.DataFrame(out, columns=["key", "unit", "thesis_mean", "thesis_std", "labkit_mean", "labkit_std",
                                      "labkit_n", "diff", "ratio"])


COMPARISON_DIR = "comparison"


def write_comparison(run_dir: Path, experiment: str, table: pd.DataFrame) -> Path:
    """Save a :func:`compare` table of ``experiment`` as ``run_dir/comparison/<experiment>.parquet``."""
    path = Path(run_dir) / COMPARISON_DIR / f"{experiment}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.assign(experiment=experiment).to_parquet(path, index=False)
    return path


def read_comparisons(run_dir: Path) -> pd.DataFrame:
    """Every comparison table of a run, one row per published number (empty when none)."""
    paths = sorted((Path(run_dir) / COMPARISON_DIR).glob("*.parquet"))
    if not paths:
        return pd.DataFrame(columns=["experiment", "key", "unit", "thesis_mean", "labkit_mean"])
    frames = [pd.read_parquet(p) for p in paths]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    # all-NA columns (a number the thesis gives without a spread) are left out of the concat, then restored
    return pd.concat([f.dropna(axis=1, how="all") for f in frames], ignore_index=True).reindex(columns=columns)
