"""Leaderboard: every task's results.csv gathered into encoders x tasks.

    python report.py [--work-dir DIR ...] [--out DIR] [--reference FILE]

One cell = the primary metric of one task and protocol (mean ± std over folds
and seeds, in %) of the better probe head, marked `(lin)` or `(3L)`; the best
encoder of a column is bold. For duplicate runs (same task, dataset variant,
store, layer, head, protocol, split, subset) the latest row wins. Published
numbers from `../shared/REFERENCE_NUMBERS.md` are shown beside ours where the
task and protocol match, marked as published with their source. Written to
`<out>/leaderboard.md`, `.csv` and `.png`, and printed.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .benchmark import TASK_FOLDERS
from .encoders import PROJECT_ROOT

DEFAULT_REFERENCE = PROJECT_ROOT.parent / "shared" / "REFERENCE_NUMBERS.md"
KEY = ["task", "variant", "store", "layer", "head", "protocol", "split", "subset"]
HEAD_TAGS = {"linear": "lin", "three_layer": "3L"}

# task name -> (column title, task folder)
TASKS = {"esc50": ("ESC-50", "esc50_feature_fc"), "urbansound8k": ("US8K", "urbansound8k_feature_fc"),
         "nsynth": ("NSynth", "nsynth_feature_fc"), "speaker_id": ("LibriSpeech speaker ID", "speaker_recognition"),
         "speech_commands": ("Speech Commands", "key_word_spotting"), "icbhi": ("ICBHI", "icbhi_feature_fc")}
PROTOCOL_ORDER = {"official": 0, "full": 0, "superb": 1, "hear": 1, "lists12": 2, "recording": 0, "cycle": 1}
METRIC_SHORT = {"accuracy": "acc.", "icbhi_score": "score", "macro_f1": "macro-F1"}


# --------------------------------------------------------------------------- columns
@dataclass(frozen=True, order=True)
class Column:
    """One leaderboard column: a task on one dataset variant and protocol."""
    task: str
    variant: str
    protocol: str
    subset: str = ""

    @property
    def label(self) -> str:
        title = TASKS.get(self.task, (self.task,))[0]
        if self.task == "speech_commands":
            version = re.search(r"v0\.0(\d)", self.variant)
            title = f"SC v{version.group(1)}" if version else title
        if self.protocol != "official" or self.task == "speech_commands":
            title += f" {self.protocol}"
        return title + (f" ({self.subset})" if self.subset else "")

    def sort_key(self):
        order = list(TASKS)
        return (order.index(self.task) if self.task in order else len(order), self.task, self.variant,
                PROTOCOL_ORDER.get(self.protocol, 9), self.protocol, self.subset)


def match_published(name: str) -> Column | None:
    """Column of one of our tasks that a published column name measures the
    same thing as, or None (VoxCeleb is not our LibriSpeech task, NSynth
    pitch is not instrument family)."""
    n = " ".join(name.lower().split())
    if "voxceleb" in n or n.startswith("vc1") or "pitch" in n:
        return None
    if n.startswith("esc-50") or n.startswith("esc50"):
        return Column("esc50", "esc50", "official")
    if n.startswith("us8k") or "urbansound" in n:
        return Column("urbansound8k", "urbansound8k", "official")
    if n.startswith("nsynth"):
        return Column("nsynth", "nsynth", "official")
    speech = re.match(r"(spcv|speech commands v)(\d)", n)
    if speech:
        version = speech.group(2)
        # 12 classes published = SUPERB (v0.01) or HEAR (v0.02), never `lists12`
        protocol = ("superb" if version == "1" else "hear") if re.search(r"\b12\b", n) else "full"
        return Column("speech_commands", f"speech_commands_v0.0{version}", protocol)
    return None


# --------------------------------------------------------------------------- published numbers
@dataclass
class Published:
    encoder: str
    source: str          # short name, e.g. "EVAR linear evaluation"
    source_full: str     # the section heading in REFERENCE_NUMBERS.md
    values: dict = field(default_factory=dict)   # Column -> value in %


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _number(text: str) -> float | None:
    try:
        return float(text.strip().rstrip("."))
    except ValueError:
        return None


def parse_reference(text: str) -> list[Published]:
    """Published rows from REFERENCE_NUMBERS.md: Markdown tables (EVAR),
    `A / B / C:` headers followed by `- name: a / b / c` lines (X-ARES, HEAR),
    and `name value, name value` prose under a heading naming the task
    (Piczak). Fractions are turned into percent."""
    out: list[Published] = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        heading = heading.strip()
        short = heading.split("(")[0].strip().rstrip(",") or heading
        rows: list[tuple[str, dict]] = []
        lines = [line.strip() for line in body.splitlines()]
        table = [line for line in lines if line.startswith("|")]
        columns: list[str] = []
        if table:
            columns = _cells(table[0])[1:]
            for line in table[1:]:
                cells = _cells(line)
                if set("".join(cells)) <= set("-: "):
                    continue
                rows.append((cells[0], {c: _number(v) for c, v in zip(columns, cells[1:])}))
        else:
            for line in lines:
                if line.endswith(":") and " / " in line and not line.startswith("-"):
                    columns = [c.strip() for c in line[:-1].split(" / ")]
                elif line.startswith("- ") and ":" in line and columns:
                    name, values = line[2:].split(":", 1)
                    rows.append((name.strip(), {c: _number(v) for c, v in zip(columns, values.split(" / "))}))
            if not rows and match_published(heading):
                prose = " ".join(lines)
                for piece in re.split(r"[,;]", prose):
                    found = re.match(r"\s*([A-Za-z][\w +-]*?)\s+(\d+(?:\.\d+)?)\.?\s*$", piece)
                    if found:
                        rows.append((found.group(1), {heading: float(found.group(2))}))
        numbers = [v for _, values in rows for v in values.values() if v is not None]
        scale = 100.0 if numbers and max(numbers) <= 1.0 else 1.0
        for name, values in rows:
            matched = {}
            for column, value in values.items():
                target = match_published(column)
                if target is not None and value is not None:
                    matched[target] = value * scale
            if matched:
                out.append(Published(name, short, heading, matched))
    return out


def load_reference(path: Path | None) -> list[Published]:
    if path is None or not Path(path).is_file():
        return []
    return parse_reference(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- our results
def result_files(work_dirs: list[str | Path] | None = None) -> list[tuple[Path, str]]:
    """(results.csv, origin) pairs. Default: each task folder's results/ and
    demo_runs/<task>/results/ (origin "demo"); given dirs are searched
    recursively (a work root, a task work dir, or a results/ dir)."""
    found = []
    if not work_dirs:
        for folder in TASK_FOLDERS:
            for base, origin in ((PROJECT_ROOT / folder, ""), (PROJECT_ROOT / "demo_runs" / folder, "demo")):
                path = base / "results" / "results.csv"
                if path.is_file():
                    found.append((path, origin))
        return found
    for d in map(Path, work_dirs):
        if d.is_file():
            found.append((d, ""))
        elif (d / "results.csv").is_file():
            found.append((d / "results.csv", ""))
        elif d.is_dir():
            found += [(p, "") for p in sorted(d.rglob("results.csv")) if p.parent.name == "results"]
    return found


def read_results(files: list[tuple[Path, str]]) -> pd.DataFrame:
    """All rows, latest row per KEY (+ origin) kept."""
    frames = []
    for path, origin in files:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if frame.empty:
            continue
        frame["origin"] = origin
        frame["results_dir"] = str(path.parent)
        frame["order"] = np.arange(len(frame))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=KEY + ["origin", "metric", "mean", "std", "created"])
    rows = pd.concat(frames, ignore_index=True)
    for column in KEY + ["created", "dataset_complete", "pooling", "encoder"]:
        if column not in rows:
            rows[column] = ""
    rows = rows.sort_values(["created", "order"], kind="stable")
    return rows.drop_duplicates(KEY + ["origin"], keep="last").reset_index(drop=True)


def default_layer(results_dir: str, variant: str, store: str) -> str | None:
    """The store's default layer from its meta.json (<work>/features/...), if it is still there."""
    meta = Path(results_dir).parent / "features" / variant / store / "meta.json"
    try:
        return json.loads(meta.read_text())["settings"]["default_layer"]
    except (OSError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------- the board
@dataclass
class Cell:
    mean: float              # %
    std: float | None        # %
    head: str = ""           # better head ("" for published)
    heads: dict = field(default_factory=dict)   # head -> (mean %, std %)
    partial: bool = False    # run on an incomplete download (e.g. demo data)

    def text(self) -> str:
        out = f"{self.mean:.1f}" + (f" ± {self.std:.1f}" if self.std is not None else "")
        if self.head:
            out += f" ({HEAD_TAGS.get(self.head, self.head)})"
        return out + ("†" if self.partial else "")


@dataclass
class Entry:
    label: str
    kind: str                # "measured" or "published"
    source: str = ""
    source_full: str = ""
    encoder: str = ""
    store: str = ""
    layer: str = ""
    cells: dict = field(default_factory=dict)   # Column -> Cell


@dataclass
class Leaderboard:
    columns: list[Column]
    entries: list[Entry]
    metrics: dict            # Column -> primary metric name
    files: list[Path]
    omitted: dict = field(default_factory=dict)   # reason -> count
    reference: Path | None = None

    @property
    def measured(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "measured"]

    @property
    def published(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "published"]

    def header(self, column: Column) -> str:
        return f"{column.label} ({METRIC_SHORT.get(self.metrics.get(column), self.metrics.get(column, ''))})"

    def best(self, column: Column) -> Entry | None:
        scored = [e for e in self.measured if column in e.cells]
        return max(scored, key=lambda e: e.cells[column].mean) if scored else None

    # ------------------------------------------------------------------ outputs
    def markdown(self) -> str:
        lines = ["| encoder | source | " + " | ".join(self.header(c) for c in self.columns) + " |",
                 "|---|---|" + "---|" * len(self.columns)]
        best = {c: self.best(c) for c in self.columns}
        for e in self.entries:
            cells = []
            for c in self.columns:
                cell = e.cells.get(c)
                text = cell.text() if cell else "–"
                if cell and best[c] is e and len(self.measured) > 1:
                    text = f"**{text}**"
                cells.append(text)
            source = "this benchmark" if e.kind == "measured" else f"published [{e.source}]"
            lines.append(f"| {e.label} | {source} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def notes(self) -> list[str]:
        out = ["Primary metric per task in %, mean ± std over folds and seeds, of the better probe head "
               "((lin) linear, (3L) three-layer); bold: best encoder of the column."]
        if any(cell.partial for e in self.measured for cell in e.cells.values()):
            out.append("†: dataset incomplete (partial download or demo data); not comparable with published "
                       "numbers.")
        sources = {}
        for e in self.published:
            sources.setdefault(e.source, e.source_full)
        for short, full in sources.items():
            out.append(f"[{short}]: {full}, as listed in {self.reference} (published, not re-measured).")
        for reason, count in self.omitted.items():
            out.append(f"Not shown: {count} {reason}.")
        return out

    def frame(self) -> pd.DataFrame:
        """Wide CSV: one row per entry; per column the best mean, its std and head (%)."""
        records = []
        for e in self.entries:
            record = {"encoder": e.label, "kind": e.kind, "source": e.source_full or "this benchmark",
                      "store": e.store, "layer": e.layer}
            for c in self.columns:
                cell = e.cells.get(c)
                record[c.label] = round(cell.mean, 2) if cell else None
                record[f"{c.label} std"] = round(cell.std, 2) if cell and cell.std is not None else None
                record[f"{c.label} head"] = cell.head if cell else ""
                if e.kind == "measured":
                    for head in HEAD_TAGS:
                        value = cell.heads.get(head) if cell else None
                        record[f"{c.label} {head}"] = round(value[0], 2) if value else None
            records.append(record)
        return pd.DataFrame(records)

    def plot(self, path: Path) -> Path | None:
        from .plots import leaderboard_plot
        entries = self.measured
        if not entries or not self.columns:
            return None
        means = [[e.cells[c].mean if c in e.cells else math.nan for c in self.columns] for e in entries]
        stds = [[(e.cells[c].std or 0.0) if c in e.cells else math.nan for c in self.columns] for e in entries]
        return leaderboard_plot([self.header(c) for c in self.columns], [e.label for e in entries], means, stds,
                                path, "Primary metric per task (better head, mean ± std over folds and seeds)")

    def write(self, out: Path) -> dict[str, Path]:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv"}
        paths["markdown"].write_text("# Leaderboard\n\n" + self.markdown() + "\n\n" +
                                     "\n".join(f"- {n}" for n in self.notes()) + "\n\nSources: " +
                                     ", ".join(str(f) for f in self.files) + "\n", encoding="utf-8")
        self.frame().to_csv(paths["csv"], index=False)
        png = self.plot(out / "leaderboard.png")
        if png:
            paths["png"] = png
        return paths


def build_leaderboard(work_dirs: list[str | Path] | None = None, reference: Path | None = DEFAULT_REFERENCE,
                      all_layers: bool = False) -> Leaderboard:
    files = result_files(work_dirs)
    rows = read_results(files)
    omitted = {}
    keep = (rows["split"] == "official") if len(rows) else pd.Series([], dtype=bool)
    if (~keep).sum():
        omitted["random-split result(s) (not comparable with published numbers)"] = int((~keep).sum())
    rows = rows[keep]

    # which layer of each store to show
    if len(rows) and not all_layers:
        shown = []
        for (origin, variant, store, results_dir), group in rows.groupby(["origin", "variant", "store", "results_dir"]):
            layers = set(group["layer"])
            default = default_layer(results_dir, variant, store) if len(layers) > 1 else None
            shown.append(group[group["layer"] == default] if default in layers else group)
        hidden = len(rows) - sum(len(g) for g in shown)
        rows = pd.concat(shown) if shown else rows
        if hidden:
            omitted["non-default-layer result(s) (see the per-layer plots, or --all-layers)"] = hidden

    metrics, cells = {}, {}
    layers_per_store = rows.groupby(["origin", "store"])["layer"].nunique().to_dict() if len(rows) else {}
    for _, r in rows.iterrows():
        if _number(str(r["mean"])) is None:   # a row from an interrupted write
            continue
        column = Column(r["task"], r["variant"], r["protocol"], r["subset"])
        metrics[column] = r["metric"]
        multi = layers_per_store.get((r["origin"], r["store"]), 1) > 1
        label = r["store"] + (f"/{r['layer']}" if multi else "") + (" [demo]" if r["origin"] == "demo" else "")
        entry_key = (r["origin"], r["store"], r["layer"] if multi else "")
        cells.setdefault(entry_key, {"label": label, "encoder": r["encoder"], "store": r["store"],
                                     "layer": r["layer"], "cells": {}})
        heads = cells[entry_key]["cells"].setdefault(column, {})
        single = str(r.get("runs", "")).strip() == "1"   # one fold, one seed: no spread to show
        heads[r["head"]] = (100 * float(r["mean"]), None if single else 100 * float(r["std"]),
                            str(r.get("dataset_complete", "True")).lower() == "false")
    entries = []
    for key in sorted(cells, key=lambda k: (k[0], k[1], k[2])):
        spec = cells[key]
        entry = Entry(spec["label"], "measured", encoder=spec["encoder"], store=spec["store"], layer=spec["layer"])
        for column, heads in spec["cells"].items():
            head = max(heads, key=lambda h: heads[h][0])
            mean, std, partial = heads[head]
            entry.cells[column] = Cell(mean, std, head, {h: v[:2] for h, v in heads.items()}, partial)
        entries.append(entry)
    columns = sorted(metrics, key=Column.sort_key)
    for published in load_reference(reference):
        values = {c: v for c, v in published.values.items() if c in metrics}
        if values:
            entry = Entry(published.encoder, "published", published.source, published.source_full,
                          encoder=published.encoder)
            entry.cells = {c: Cell(v, None) for c, v in values.items()}
            entries.append(entry)
    return Leaderboard(columns, entries, metrics, [f for f, _ in files], omitted,
                       Path(reference) if reference and Path(reference).is_file() else None)


# --------------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Gather every task's results.csv into one leaderboard (encoders x tasks, primary metric of "
                    "the better head, mean ± std over folds and seeds), with published numbers beside ours "
                    "where the task and protocol match. Writes leaderboard.md, .csv and .png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work-dir", nargs="+", metavar="DIR",
                   help="where results are: work roots, task work dirs or results/ folders, searched for "
                        "results.csv (default: each task folder's results/ and demo_runs/<task>/results/)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "results"), help="folder for leaderboard.md/.csv/.png")
    p.add_argument("--reference", default=str(DEFAULT_REFERENCE),
                   help="published numbers to show beside ours (skipped when the file is absent)")
    p.add_argument("--no-published", action="store_true", help="leave published numbers out")
    p.add_argument("--all-layers", action="store_true",
                   help="one row per probed layer (default: each store's default layer only)")
    return p


def main(argv: list[str] | None = None) -> Leaderboard:
    args = parser().parse_args(argv)
    board = build_leaderboard(args.work_dir, None if args.no_published else Path(args.reference), args.all_layers)
    if not board.measured:
        where = ", ".join(map(str, args.work_dir)) if args.work_dir else "the task folders and demo_runs/"
        sys.exit(f"error: no results.csv with results found under {where}: run train.py or "
                 "run_benchmark.py first")
    paths = board.write(Path(args.out))
    print(board.markdown())
    print()
    for note in board.notes():
        print(note)
    print()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return board
