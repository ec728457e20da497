"""The run report: every figure, the "thesis vs labkit" table and the run's manifest.

The ``90-report`` notebook assembles it from ``data/<run_id>/`` and ``figures/`` only; the
runner then turns the executed notebook into ``figures/report.html`` with nbconvert.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit.manifest import Manifest

REPORT_HTML = "report.html"


def figures(figures_dir: Path) -> list[Path]:
    """The PNG figures of ``figures_dir``, sorted by name (figure ids sort in thesis order)."""
    return sorted(Path(figures_dir).glob("*.png"))


def run_summary(run_dir: Path) -> pd.DataFrame:
    """The manifest as a two-column table: run, git, host, versions and each notebook's status."""
    m = Manifest.read(Path(run_dir))
    rows = [("run id", m.run_id), ("env / profile", f"{m.env} / {m.profile}"), ("seed", m.seed),
            ("started (UTC)", m.started_utc), ("status", m.status), ("peering", m.peering or "not recorded"),
            ("git", f"{m.git.get('sha') or 'not a git checkout'}{' (dirty)' if m.git.get('dirty') else ''}")]
    rows += [(f"host {k}", v) for k, v in m.host.items()]
    rows += [(f"notebook {n.notebook}", f"{n.status} ({n.seconds or 0:.1f} s)") for n in m.notebooks]
    rows += [(f"version {k}", v) for k, v in m.packages.items()]
    return pd.DataFrame(rows, columns=["item", "value"]).astype({"value": str}).set_index("item")


def to_html(notebook: Path, out: Path) -> Path:
    """Convert an executed notebook to a standalone HTML page without code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out
