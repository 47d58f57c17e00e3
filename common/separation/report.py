"""The separation table that `report.py` shows beside the probe leaderboard:
one row per (benchmark, method), the latest run of each, mean ± std over
mixtures of SDRi and SI-SDR (dB), BSS-eval SDR where the benchmark scores it,
and mixtures scored / failed / excluded; published numbers
(`common/reporting/published_numbers.csv`, task `source_separation`) on the same
benchmark and protocol beside ours."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..reporting import PUBLISHED_TABLE
from .pipeline import RESULTS_CSV, read_results

TASK_FOLDER = "source_separation"
PROJECT_ROOT = Path(__file__).resolve().parents[2]   # not common.encoders's: that imports torch and the models


def result_files(work_dirs: list[str | Path] | None = None) -> list[Path]:
    """separation_results.csv files: by default in source_separation/results/
    and demo_runs/source_separation/results/; else searched under the dirs given."""
    if not work_dirs:
        candidates = [PROJECT_ROOT / TASK_FOLDER / "results" / RESULTS_CSV,
                      PROJECT_ROOT / "demo_runs" / TASK_FOLDER / "results" / RESULTS_CSV]
        return [p for p in candidates if p.is_file()]
    found = []
    for d in map(Path, work_dirs):
        if d.is_file() and d.name == RESULTS_CSV:
            found.append(d)
        elif d.is_dir():
            found += sorted(d.rglob(RESULTS_CSV))
    return found


def published_rows(path: Path = PUBLISHED_TABLE) -> pd.DataFrame:
    if not Path(path).is_file():
        return pd.DataFrame()
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return table[table.get("task", pd.Series(dtype=str)) == "source_separation"] if len(table) else table


def _cell(row, name: str) -> str:
    mean, std = row.get(name, ""), row.get(f"{name}_std", "")
    if mean in ("", None) or pd.isna(mean):
        return "–"
    text = f"{float(mean):.2f}"
    if std not in ("", None) and not pd.isna(std):
        text += f" ± {float(std):.2f}"
    return text


def markdown_rows(rows: pd.DataFrame, published: pd.DataFrame | None = None) -> str:
    lines = ["| benchmark | method | source | SDRi (dB) | SI-SDR (dB) | BSS-eval SDR (dB) | scored | failed | excluded |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in rows.sort_values(["benchmark", "method"]).iterrows():
        mark = "" if str(r.get("dataset_complete", "True")).lower() == "true" else "†"
        lines.append(f"| {r['benchmark']} | {r['method']} | this benchmark{mark} | {_cell(r, 'sdri')} | "
                     f"{_cell(r, 'sisdr')} | {_cell(r, 'bss_sdr')} | {r.get('scored', '')} | {r.get('failed', '')} | "
                     f"{r.get('excluded', '')} |")
    if published is not None and len(published):
        shown = set(rows["benchmark"]) if len(rows) else set()
        for (benchmark, method, source), group in published.groupby(["dataset_version", "encoder", "source"]):
            if benchmark not in shown:
                continue
            values = dict(zip(group["metric"], group["value"]))
            lines.append(f"| {benchmark} | {method} | published [{source}] | {values.get('sdri', '–')} | "
                         f"{values.get('sisdr', '–')} | {values.get('bss_sdr', '–')} | | | |")
    return "\n".join(lines)


def table_with_notes(rows: pd.DataFrame, published: pd.DataFrame | None = None) -> str:
    """The Markdown table of `rows` (with the published rows of the same
    benchmarks) and its notes as a list."""
    notes = ["Mean ± std over mixtures. SDRi and SI-SDR as AudioSep defines them (`utils.calculate_sdr`, "
             "`calculate_sisdr`); BSS-eval SDR from fast_bss_eval (512-tap filter). `mixture`: SDRi 0 by "
             "definition; `oracle_irm`: ideal ratio mask from the true sources, the bound of mask methods."]
    if any(str(v).lower() == "false" for v in rows.get("dataset_complete", [])):
        notes.append("†: not the full benchmark (demo data, another mixture list, missing clips, --limit, or "
                     "mixtures excluded because the method trained on their clips); not comparable with "
                     "published numbers.")
    shown = set(rows["benchmark"]) if len(rows) else set()
    if published is not None and len(published):
        published = published[published["dataset_version"].isin(shown)]
    if published is not None and len(published):
        for citation in published.drop_duplicates("source")["citation"]:
            notes.append(f"Published: {citation} (from common/reporting/published_numbers.csv, not re-measured).")
    return markdown_rows(rows, published) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def separation_section(work_dirs=None, with_published: bool = True) -> str | None:
    """The Markdown section (table and notes), or None without separation results."""
    files = result_files(work_dirs)
    rows = read_results(files)
    if not len(rows):
        return None
    published = published_rows() if with_published else None
    return "## Source separation\n\n" + table_with_notes(rows, published) + "\n\nSources: " + \
        ", ".join(map(str, files)) + "\n"


def write_separation_section(work_dirs, out: Path, with_published: bool = True) -> str | None:
    """The section, also written to <out>/separation.md (None without separation results)."""
    section = separation_section(work_dirs, with_published)
    if section:
        from ..files import atomic_write_text
        atomic_write_text(Path(out) / "separation.md", "# Source separation\n\n" + section.split("\n", 2)[2])
    return section
