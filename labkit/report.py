"""The run report: per figure, the thesis' value beside ours with the fidelity verdict, the methods, the figures.

The ``90-report`` notebook assembles it from ``data/<run_id>/`` and ``figures/`` only; the
runner then turns the executed notebook into ``figures/report.html`` with nbconvert. What it
shows, in order:

1. the run in one paragraph (env, profile, peering, how many fidelity checks pass);
2. :func:`fidelity_table`: per figure, the thesis' method, ours, the differences of environment
   and implementation that remain, and the verdict of its checks (:mod:`labkit.fidelity`);
3. per figure (:data:`TITLES`, in the thesis' order): :func:`results_table`, each check with the
   thesis' value, ours with unit, spread and n, what we expect here, the verdict and its reason;
   then the figure itself;
4. the other figures of the run (topology, pacing);
5. :func:`comparison_table`: every number the thesis published beside ours, readable;
6. :func:`bounds_table`: the env's limits; :func:`run_summary`: the manifest.

Every table is rendered by :func:`html_table`: no row index, no cell cut short, no ``NaN``
(a missing value reads ``—`` or says why it is missing).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from labkit import bounds, fidelity, reference
from labkit.manifest import Manifest

REPORT_HTML = "report.html"
#: What a missing value reads in a table.
MISSING = "—"
#: Each figure's readable name, in the thesis' order (the figure ids of :data:`labkit.experiments.EXPERIMENTS`).
TITLES: dict[str, str] = {
    "eq. 5.1": "Peering links, setup time and resources against the number of clusters (eq. 5.1, chapter 5.3)",
    "Fig. 6.2": "Island operation: a cut-off leaf keeps its own stream, the root loses it",
    "Tables 7.2-7.5": "Round-trip time leaf → root: VM to VM, pod to pod in one cluster, across a Liqo peering",
    "Fig. 7.2": "Reaction: a provider cut off, its virtual node NotReady in the consumer",
    "Fig. 7.3": "Stream downtime after a PDC pod failure",
    "Fig. 7.3 sweep": "How the pod-failure downtime moves with the timers that dominate it",
    "Fig. 7.4": "Stream downtime after the failure of the PDC's cluster",
    "multi-level pod failure": "Pod failure on two-level logical domains (6.2; not run by the thesis)",
}
#: Readable names of the thesis' published numbers (:mod:`labkit.reference` keys), by key prefix.
QUANTITIES: dict[str, tuple[str, str]] = {
    "latency_ms.table_7_2_network": ("Table 7.2", "VM → root RTT"),
    "latency_ms.table_7_3_same_cluster": ("Table 7.3", "pod → pod RTT, nodes of one cluster"),
    "latency_ms.table_7_4_liqo_peered": ("Table 7.4", "pod → pod RTT, clusters peered with Liqo"),
    "latency_ms.table_7_5_liqo_overhead": ("Table 7.5", "Liqo overhead (7.4 − 7.3)"),
    "reaction_s.figure_7_2_virtual_node_not_ready_median": ("Fig. 7.2", "NotReady delay, median"),
    "stream_downtime_s.figure_7_3_pod_failure_median": ("Fig. 7.3", "stream downtime, median"),
    "stream_downtime_s.figure_7_4_cluster_failure_composition": ("Fig. 7.4", "stream downtime"),
}


# --------------------------------------------------------------------------- formatting


def number(value: object, unit: str = "", digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits and its unit; :data:`MISSING` for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, (int, float)):
        text = f"{value:.{digits}g}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit else text


def html_table(frame: pd.DataFrame, *, classes: str = "labkit") -> str:
    """``frame`` as an HTML table: no index, every cell whole and escaped, :data:`MISSING` for a missing cell."""
    if frame.empty:
        return "<p><em>Nothing to show.</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            text = number(value) if not isinstance(value, str) else (value or MISSING)
            style = _verdict_style(text)
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="{classes}" style="border-collapse:collapse;text-align:left;vertical-align:top">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _verdict_style(text: str) -> str:
    """A cell's colour when it is a verdict."""
    colours = {"pass": "#1a7f37", "fail": "#b42318", "not measured": "#6e7781", "no check": "#6e7781"}
    for word, colour in colours.items():
        if text == word or text.startswith(f"{word} ("):
            return f' style="color:{colour};font-weight:bold"'
    return ""


STYLE = """<style>
table.labkit td, table.labkit th { border: 1px solid #d0d7de; padding: 3px 6px; font-size: 12px; }
table.labkit th { background: #f6f8fa; }
</style>"""


# --------------------------------------------------------------------------- tables


def results_table(checks: pd.DataFrame, figure: str | None = None) -> pd.DataFrame:
    """The checks of ``figure`` (all when ``None``), readable: thesis, ours with unit and spread, n, verdict, reason."""
    rows = checks if figure is None else checks[checks["figure"] == figure]
    out = pd.DataFrame({
        "figure": rows["figure"], "what": rows["name"],
        "thesis": [t or MISSING for t in rows["thesis"].fillna("")],
        "ours": [number(v, u) if not pd.isna(v) else "not measured" for v, u in zip(rows["observed"], rows["unit"])],
        "spread": [s or MISSING for s in rows["spread"].fillna("")],
        "n": [MISSING if pd.isna(n) else str(int(n)) for n in rows["n"]],
        "expected here": rows["expected"], "basis": rows["basis"], "verdict": rows["verdict"],
        "reason": rows["reason"]})
    return (out if figure is None else out.drop(columns="figure")).reset_index(drop=True)


def fidelity_table(run_dir: Path, figures: Sequence[str] = tuple(TITLES)) -> pd.DataFrame:
    """Per figure: the thesis' method, ours, the remaining differences and the checks' verdict (in ``figures``' order)."""
    checks, methods = fidelity.read_checks(run_dir), fidelity.read_methods(run_dir)
    present = set(checks["figure"]) | set(methods["figure"])
    return fidelity.figure_verdicts(checks, methods, [f for f in figures if f in present])


def quantity(key: str) -> tuple[str, str]:
    """``(figure, readable quantity)`` of a :mod:`labkit.reference` key (the key's own words when unknown)."""
    for prefix, (figure, what) in QUANTITIES.items():
        if key == prefix or key.startswith(prefix + "."):
            rest = key[len(prefix):].strip(".")
            detail = ", ".join(part.replace("_", " ") for part in rest.split(".") if part)
            return figure, f"{what}, {detail}" if detail else what
    return MISSING, key.replace("_", " ")


def comparison_table(run_dir: Path) -> pd.DataFrame:
    """Every number the thesis published beside ours: figure, quantity, thesis ± std, ours ± std, n, difference, ratio."""
    comp = reference.read_comparisons(run_dir)
    rows = []
    for r in comp.to_dict("records"):
        figure, what = quantity(str(r["key"]))
        unit = str(r.get("unit") or "")
        rows.append({"figure": figure, "what": what,
                     "thesis": _mean_std(r.get("thesis_mean"), r.get("thesis_std"), unit),
                     "ours": _mean_std(r.get("labkit_mean"), r.get("labkit_std"), unit),
                     "n": MISSING if pd.isna(r.get("labkit_n")) else str(int(r["labkit_n"])),
                     "difference": number(r.get("diff"), unit), "ratio": number(r.get("ratio"), digits=3)})
    return pd.DataFrame(rows, columns=["figure", "what", "thesis", "ours", "n", "difference", "ratio"])


def _mean_std(mean: object, std: object, unit: str) -> str:
    if mean is None or pd.isna(mean):
        return MISSING
    if std is None or pd.isna(std):
        return number(mean, unit)
    return f"{number(mean)} ± {number(std)} {unit}".strip()


def bounds_table(env_bounds: Iterable[object], run_dir: Path) -> pd.DataFrame:
    """The env's bounds against the run's metrics: metric, value, limit, status, why."""
    rows = []
    for v in bounds.check(env_bounds, run_dir):  # type: ignore[arg-type]
        limits = " and ".join(f"{sign} {number(x)}" for sign, x in (("≥", v.min), ("≤", v.max)) if x is not None)
        rows.append({"metric": v.metric, "value": number(v.value) if v.value is not None else "not measured",
                     "limit": limits, "status": v.status, "why": v.why or MISSING})
    return pd.DataFrame(rows, columns=["metric", "value", "limit", "status", "why"])


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


def overview(run_dir: Path) -> str:
    """The run in one paragraph (Markdown): env, profile, peering, and how the fidelity checks came out."""
    try:
        m = Manifest.read(Path(run_dir))
        head = (f"Run **{m.run_id}** on env **{m.env}**, profile **{m.profile}** "
                f"(peering: {getattr(m, 'peering', '') or 'not recorded'}; started {m.started_utc} UTC).")
        quick = m.profile != "full"
    except FileNotFoundError:
        head, quick = "A run without a manifest.", False
    checks = fidelity.read_checks(run_dir)
    counts = checks["verdict"].value_counts()
    tally = (f"Fidelity checks: {int(counts.get('pass', 0))} pass, {int(counts.get('fail', 0))} fail, "
             f"{int(counts.get('not measured', 0))} not measured, of {len(checks)}.") if len(checks) else \
        "No fidelity check was recorded in this run."
    note = (" This is not the full profile: its counts and intervals are cut for speed, which the protocol "
            "checks below say where it matters.") if quick else ""
    return f"{head} {tally}{note}"


# --------------------------------------------------------------------------- figures


_FIGURE_FILE = re.compile(r"^(fig|tab|eq)-(\d+)-(\d+)(?:-(\d+)-(\d+))?(-sweep$)?")


def figure_of(path: Path) -> str | None:
    """The figure id a figure file draws (``fig-7-2-reaction.png`` -> ``Fig. 7.2``, ``fig-7-3-sweep.png`` ->
    ``Fig. 7.3 sweep``), ``None`` for another figure."""
    stem = Path(path).stem
    if stem.startswith("multilevel"):
        return "multi-level pod failure"
    m = _FIGURE_FILE.match(stem)
    if m is None:
        return None
    kind, a, b, c, d, sweep = m.groups()
    if kind == "tab":
        return f"Tables {a}.{b}-{c}.{d}" if c else f"Table {a}.{b}"
    return f"eq. {a}.{b}" if kind == "eq" else f"Fig. {a}.{b}{' sweep' if sweep else ''}"


def _order(path: Path) -> tuple[int, float, float, str]:
    m = _FIGURE_FILE.match(path.stem)
    if m:
        return (1, int(m.group(2)), int(m.group(3)) + (0.5 if m.group(1) == "eq" else 0), path.stem)
    return (0 if path.stem.startswith("env") else 2, 0, 0, path.stem)


def figures(figures_dir: Path) -> list[Path]:
    """The PNG figures of ``figures_dir``, in the thesis' order (the kit's own first and last)."""
    return sorted(Path(figures_dir).glob("*.png"), key=_order)


def figure_title(path: Path) -> str:
    """A figure file's readable title: its figure id and name, or its file name in words."""
    figure = figure_of(path)
    if figure in TITLES:
        return f"{figure}: {TITLES[figure]}"
    return figure or Path(path).stem.replace("-", " ")


@dataclass(frozen=True)
class Section:
    """One figure of the report: its title, its checks (:func:`results_table`) and its figure files."""

    figure: str
    title: str
    results: pd.DataFrame
    images: tuple[Path, ...]


def sections(run_dir: Path, figures_dir: Path) -> list[Section]:
    """Per figure that has checks or a figure file in this run, in the thesis' order (:data:`TITLES`)."""
    checks = fidelity.read_checks(run_dir)
    drawn: dict[str, list[Path]] = {}
    for path in figures(figures_dir):
        figure = figure_of(path)
        if figure in TITLES:
            drawn.setdefault(figure, []).append(path)
    order = [*TITLES, *(f for f in dict.fromkeys(checks["figure"]) if f not in TITLES)]
    return [Section(f, f"{f}: {TITLES[f]}" if f in TITLES else f, results_table(checks, f), tuple(drawn.get(f, ())))
            for f in order if f in drawn or f in set(checks["figure"])]


def other_figures(figures_dir: Path) -> list[Path]:
    """The run's figures that no section shows (the topology's, the environment's pacing)."""
    return [p for p in figures(figures_dir) if figure_of(p) not in TITLES]


def to_html(notebook: Path, out: Path) -> Path:
    """Convert an executed notebook to a standalone HTML page without code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out
