"""Leaderboard: every task's results.csv gathered into encoders x tasks, and
the published numbers measured in exactly the same setting beside ours.

    python report.py [--work-dir DIR ...] [--out DIR] [--published FILE]

One cell = the primary metric of one task and protocol (test mean ± std over
folds and seeds, in %) of one probe head, marked `(lin)` or `(3L)`. The head
is the one with the better *validation* mean of the primary metric; test
scores never choose anything (both heads' validation and test numbers go to
the CSV). A column's best encoder is bold only where its lead over the
runner-up exceeds the larger of their two standard deviations.

Published numbers are data: `common/reporting/published_numbers.csv`, one row per
number with its source and setting. A published row is listed beside one of
our results only where task, dataset version, protocol id, test set,
validation rule, probe type and metric are all equal (`Setting`); protocols
that match no published table (`lists12`, or a protocol run on features of
another dataset version), random splits, subsets and incomplete datasets are
never paired. Written to `<out>/leaderboard.md`,
`leaderboard.csv`, `comparisons.csv` and `leaderboard.png`, and printed.
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

from ..benchmark import TASK_FOLDERS
from ..encoders import PROJECT_ROOT
from ..entry import add_debug_option, entry_point
from ..errors import UserError
from ..files import atomic_path, atomic_write_text
from ..options import HelpFormatter
from . import PUBLISHED_TABLE

PUBLISHED_COLUMNS = ("source", "citation", "url", "encoder", "task", "dataset_version", "protocol", "test_set",
                     "validation", "probe", "metric", "value", "note")
KEY = ["task", "variant", "store", "layer", "head", "protocol", "split", "subset", "validation", "refit"]
HEAD_TAGS = {"linear": "lin", "three_layer": "3L"}     # in order of preference when validation cannot decide
PROBE_KINDS = {"linear": "linear", "three_layer": "mlp"}  # our heads -> the probe types published tables name

# task name -> (column title, task folder)
TASKS = {"esc50": ("ESC-50", "esc50_feature_fc"), "urbansound8k": ("US8K", "urbansound8k_feature_fc"),
         "nsynth": ("NSynth", "nsynth_feature_fc"), "speaker_id": ("LibriSpeech speaker ID", "speaker_recognition"),
         "speech_commands": ("Speech Commands", "key_word_spotting"), "icbhi": ("ICBHI", "icbhi_feature_fc")}
PROTOCOL_ORDER = {"official": 0, "full": 0, "superb": 1, "hear": 2, "lists12": 3, "recording": 0, "cycle": 1}
METRIC_SHORT = {"accuracy": "acc.", "icbhi_score": "score", "macro_f1": "macro-F1"}

# Protocols that match no published table: never paired, and refused in the published table.
NEVER_PAIRED = {"lists12", "12"}
# What a result row lacks when it was written before the protocol recorded these fields:
# fold datasets validated on the next fold; the others on their official part, else a carved 10%.
FOLD_TASKS = {"esc50", "urbansound8k"}
OWN_VALIDATION_PART = {"nsynth", "speech_commands"}
# The test part each protocol scores on (the protocol id decides it; named here for the published table).
TEST_SETS = {("nsynth", "official"): "nsynth-test", ("speech_commands", "full"): "testing_list",
             ("speech_commands", "superb"): "test_archive", ("speech_commands", "hear"): "test_archive",
             ("speaker_id", "official"): "per-speaker-20%", ("speaker_id", "chapters"): "per-speaker-chapters-20%",
             ("icbhi", "recording"): "official-test-patients",
             ("icbhi", "cycle"): "official-test-patients"}


class PublishedTableError(UserError):
    """The published-numbers table is malformed; the message names the row and what to fix."""


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """Everything a published number and ours must share to stand side by side."""
    task: str
    dataset_version: str
    protocol: str
    test_set: str
    validation: str
    probe: str
    metric: str

    def text(self) -> str:
        return (f"{self.dataset_version} · protocol {self.protocol} · test {self.test_set} · "
                f"validation {self.validation} · {self.probe} probe · {self.metric}")


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def validation_rule(row) -> str:
    """The row's validation rule (`+refit` when the probe was refitted on
    train + validation at the chosen setting); rows written before results
    recorded it get the rule the code used then."""
    rule = str(row.get("validation", "") or "").strip()
    if not rule:
        task = row.get("task", "")
        rule = "next-fold" if task in FOLD_TASKS else "official" if task in OWN_VALIDATION_PART else "carve"
    return rule + ("+refit" if _flag(row.get("refit", "")) else "")


def test_set(row) -> str:
    recorded = str(row.get("test_set", "") or "").strip()
    if recorded:
        return recorded
    if row.get("task") in FOLD_TASKS:
        return "folds"
    return TEST_SETS.get((row.get("task"), row.get("protocol")), "official-test")


def setting_of(row) -> Setting | None:
    """The Setting of one of our result rows, or None when it must never be
    paired with a published number (see the module docstring)."""
    if (row.get("split") != "official" or row.get("subset") or row.get("protocol") in NEVER_PAIRED
            or str(row.get("dataset_complete", "True")).lower() == "false"
            or str(row.get("comparable", "True")).lower() == "false" or row.get("head") not in PROBE_KINDS):
        return None
    return Setting(row["task"], row["variant"], row["protocol"], test_set(row), validation_rule(row),
                   PROBE_KINDS[row["head"]], row["metric"])


# --------------------------------------------------------------------------- published numbers
@dataclass(frozen=True)
class Published:
    source: str
    citation: str
    url: str
    encoder: str
    setting: Setting
    value: float          # %
    note: str = ""


def load_published(path: str | Path = PUBLISHED_TABLE) -> list[Published]:
    """The published-numbers table, checked row by row."""
    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(table.columns) != PUBLISHED_COLUMNS:
        raise PublishedTableError(f"{path}: the columns must be {','.join(PUBLISHED_COLUMNS)}; "
                                  f"found {','.join(table.columns)}")
    out = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        where = f"{path} line {line}"
        missing = [c for c in PUBLISHED_COLUMNS if c not in ("note", "citation") and not row[c].strip()]
        if missing:
            raise PublishedTableError(f"{where}: fill in {', '.join(missing)}")
        if row["protocol"] in NEVER_PAIRED:
            raise PublishedTableError(f"{where}: protocol {row['protocol']!r} matches no published table; "
                                      "give the protocol id the source really used, or remove the row")
        try:
            value = float(row["value"])
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 100.0:
            raise PublishedTableError(f"{where}: value {row['value']!r} must be a number in percent (0-100)")
        setting = Setting(*(row[c].strip() for c in ("task", "dataset_version", "protocol", "test_set",
                                                      "validation", "probe", "metric")))
        out.append(Published(row["source"], row["citation"], row["url"], row["encoder"], setting, value,
                             row["note"]))
    return out


# --------------------------------------------------------------------------- our results
def task_folders() -> list[str]:
    """The six task folders, then every other folder of the project that
    declares a task (a task added by copying a folder needs no edit here)."""
    added = sorted(p.parent.name for p in PROJECT_ROOT.glob("*/task.py") if p.parent.name not in TASK_FOLDERS)
    return [*TASK_FOLDERS, *added]


def result_files(work_dirs: list[str | Path] | None = None) -> list[tuple[Path, str]]:
    """(results.csv, origin) pairs. Default: each task folder's results/ and
    demo_runs/<task>/results/ (origin "demo"); given dirs are searched
    recursively (a work root, a task work dir, or a results/ dir)."""
    found = []
    if not work_dirs:
        for folder in task_folders():
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
    for column in KEY + ["created", "dataset_complete", "pooling", "encoder", "valid_mean", "valid_std", "runs"]:
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


def _number(text) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------- the board
@dataclass(frozen=True, order=True)
class Column:
    """One leaderboard column: a task on one dataset variant, protocol, subset and validation rule."""
    task: str
    variant: str
    protocol: str
    subset: str = ""
    validation: str = ""

    def sort_key(self):
        order = list(TASKS)
        return (order.index(self.task) if self.task in order else len(order), self.task, self.variant,
                PROTOCOL_ORDER.get(self.protocol, 9), self.protocol, self.subset, self.validation)

    def title(self, with_validation: bool = False) -> str:
        title = TASKS.get(self.task, (self.task,))[0]
        if self.task == "speech_commands":
            version = re.search(r"v0\.0(\d)", self.variant)
            title = f"SC v{version.group(1)}" if version else title
        if self.protocol != "official" or self.task == "speech_commands":
            title += f" {self.protocol}"
        title += f" ({self.subset})" if self.subset else ""
        return title + (f" [{self.validation}]" if with_validation else "")


@dataclass
class HeadResult:
    """One head's numbers in one cell (%), and the setting it was measured in."""
    mean: float
    std: float | None         # None: one run, no spread
    valid_mean: float | None  # None: the run had no validation part (or predates recording it)
    valid_std: float | None
    partial: bool             # run on an incomplete download (e.g. demo data)
    setting: Setting | None   # None: never paired with published numbers


@dataclass
class Cell:
    head: str                 # the head shown, chosen on validation
    heads: dict               # head -> HeadResult
    by_validation: bool       # False: no head had validation numbers; the first of HEAD_TAGS is shown

    @property
    def shown(self) -> HeadResult:
        return self.heads[self.head]

    @property
    def mean(self) -> float:
        return self.shown.mean

    @property
    def std(self) -> float | None:
        return self.shown.std

    def text(self) -> str:
        shown = self.shown
        out = f"{shown.mean:.1f}" + (f" ± {shown.std:.1f}" if shown.std is not None else "")
        out += f" ({HEAD_TAGS.get(self.head, self.head)}{'' if self.by_validation else '?'})"
        return out + ("†" if shown.partial else "")


def choose_head(heads: dict) -> tuple[str, bool]:
    """The head with the best validation mean (ties: the simpler head); never
    looks at test numbers. Without validation numbers: the first head of
    HEAD_TAGS that ran, flagged as not chosen by validation."""
    preference = {h: i for i, h in enumerate(HEAD_TAGS)}
    rank = sorted(heads, key=lambda h: preference.get(h, len(preference)))
    scored = [h for h in rank if heads[h].valid_mean is not None]
    if scored:
        return max(scored, key=lambda h: (heads[h].valid_mean, -rank.index(h))), True
    return rank[0], False


@dataclass
class Entry:
    label: str
    encoder: str = ""
    store: str = ""
    layer: str = ""
    cells: dict = field(default_factory=dict)   # Column -> Cell


@dataclass
class Comparison:
    """Our results and the published numbers of one Setting, in one column."""
    column: Column
    setting: Setting
    ours: list            # (Entry, head) pairs
    published: list       # Published rows


@dataclass
class Leaderboard:
    columns: list[Column]
    entries: list[Entry]
    metrics: dict            # Column -> primary metric name
    files: list[Path]
    comparisons: list[Comparison] = field(default_factory=list)
    omitted: dict = field(default_factory=dict)   # reason -> count
    published_table: Path | None = None

    def title(self, column: Column) -> str:
        # the validation rule is named only where one task/protocol has columns under several rules
        twins = [c for c in self.columns if (c.task, c.variant, c.protocol, c.subset) ==
                 (column.task, column.variant, column.protocol, column.subset)]
        return column.title(with_validation=len(twins) > 1)

    def header(self, column: Column) -> str:
        metric = self.metrics.get(column, "")
        return f"{self.title(column)} ({METRIC_SHORT.get(metric, metric)})"

    def best(self, column: Column) -> Entry | None:
        """The column's best encoder if its lead over the runner-up exceeds
        the larger of their two standard deviations, else None."""
        scored = sorted((e for e in self.entries if column in e.cells), key=lambda e: -e.cells[column].mean)
        if len(scored) < 2:
            return None
        first, second = scored[0].cells[column], scored[1].cells[column]
        if first.std is None or second.std is None:
            return None
        return scored[0] if first.mean - second.mean > max(first.std, second.std) else None

    # ------------------------------------------------------------------ outputs
    def markdown(self) -> str:
        lines = ["| encoder | " + " | ".join(self.header(c) for c in self.columns) + " |",
                 "|---|" + "---|" * len(self.columns)]
        best = {c: self.best(c) for c in self.columns}
        for e in self.entries:
            cells = []
            for c in self.columns:
                cell = e.cells.get(c)
                text = cell.text() if cell else "–"
                cells.append(f"**{text}**" if cell and best[c] is e else text)
            lines.append(f"| {e.label} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def comparison_markdown(self) -> str:
        if not self.comparisons:
            return ""
        lines = ["| column | setting (held fixed) | encoder | value (%) | source |", "|---|---|---|---|---|"]
        for comp in self.comparisons:
            first = f"{self.title(comp.column)}"
            for entry, head in comp.ours:
                result = entry.cells[comp.column].heads[head]
                value = f"{result.mean:.1f}" + (f" ± {result.std:.1f}" if result.std is not None else "")
                lines.append(f"| {first} | {comp.setting.text()} | {entry.label} ({HEAD_TAGS[head]}) | {value} | "
                             "this benchmark |")
                first = ""
            for pub in sorted(comp.published, key=lambda p: (p.source, -p.value)):
                lines.append(f"| | | {pub.encoder} | {pub.value:.1f} | published: [{pub.source}]({pub.url}) |")
        return "\n".join(lines)

    def notes(self) -> list[str]:
        out = ["Primary metric per task in %, test mean ± std over folds and seeds. The head shown, (lin) linear "
               "or (3L) three-layer, is the one with the better validation mean; test scores choose nothing "
               "(both heads' validation and test numbers are in leaderboard.csv)."]
        if any(not cell.by_validation for e in self.entries for cell in e.cells.values()):
            out.append("?: no validation numbers recorded for this cell (older results): the linear head is shown.")
        out.append("Bold: the column's best encoder, only where its lead over the runner-up exceeds the larger of "
                   "their two standard deviations (no bold: the top two are within each other's spread, or a "
                   "cell has a single run).")
        if any(cell.shown.partial for e in self.entries for cell in e.cells.values()):
            out.append("†: dataset incomplete (partial download or demo data); never compared with published "
                       "numbers.")
        if self.comparisons:
            sources = sorted({(p.source, p.citation, p.url) for c in self.comparisons for p in c.published})
            out.append("Published numbers are listed only in their exact setting: the same task, dataset version, "
                       "protocol id, test set, validation rule, probe type (linear: one linear layer; mlp: hidden "
                       "layers) and metric as ours. Not held fixed: the encoder checkpoint and layer, pooling, "
                       "and each source's optimiser, hyper-parameter grid and number of runs.")
            out += [f"[{source}]: {citation} ({url})" for source, citation, url in sources]
        elif self.published_table is not None:
            out.append(f"No published number in {self.published_table} shares the exact setting of a result here "
                       "(demo data, lists12, random splits and subsets are never compared).")
        for reason, count in self.omitted.items():
            out.append(f"Not shown: {count} {reason}.")
        return out

    def frame(self) -> pd.DataFrame:
        """Wide CSV: one row per entry; per column the shown head's test mean,
        std and head, and both heads' test and validation means (%)."""
        records = []
        for e in self.entries:
            record = {"encoder": e.label, "store": e.store, "layer": e.layer}
            for c in self.columns:
                cell, label = e.cells.get(c), self.title(c)
                record[label] = round(cell.mean, 2) if cell else None
                record[f"{label} std"] = round(cell.std, 2) if cell and cell.std is not None else None
                record[f"{label} head"] = cell.head if cell else ""
                record[f"{label} head chosen on"] = ("validation" if cell.by_validation else "default") if cell \
                    else ""
                for head in HEAD_TAGS:
                    result = cell.heads.get(head) if cell else None
                    record[f"{label} {head} test"] = round(result.mean, 2) if result else None
                    record[f"{label} {head} valid"] = round(result.valid_mean, 2) \
                        if result and result.valid_mean is not None else None
            records.append(record)
        return pd.DataFrame(records)

    def comparison_frame(self) -> pd.DataFrame:
        """Long CSV: one row per number in a comparison, ours and published
        (header only when nothing pairs)."""
        columns = ["column", *Setting.__dataclass_fields__, "kind", "encoder", "head", "value", "std", "source", "url"]
        records = []
        for comp in self.comparisons:
            base = {"column": self.title(comp.column), **vars(comp.setting)}
            for entry, head in comp.ours:
                result = entry.cells[comp.column].heads[head]
                records.append({**base, "kind": "measured", "encoder": entry.label, "head": head,
                                "value": round(result.mean, 2),
                                "std": round(result.std, 2) if result.std is not None else None,
                                "source": "this benchmark", "url": ""})
            for pub in comp.published:
                records.append({**base, "kind": "published", "encoder": pub.encoder, "head": "", "value": pub.value,
                                "std": None, "source": pub.source, "url": pub.url})
        return pd.DataFrame(records, columns=columns)

    def plot(self, path: Path) -> Path | None:
        from .plots import leaderboard_plot
        if not self.entries or not self.columns:
            return None
        means = [[e.cells[c].mean if c in e.cells else math.nan for c in self.columns] for e in self.entries]
        stds = [[(e.cells[c].std or 0.0) if c in e.cells else math.nan for c in self.columns] for e in self.entries]
        return leaderboard_plot([self.header(c) for c in self.columns], [e.label for e in self.entries], means,
                                stds, path, "Primary metric per task (head chosen on validation, mean ± std over "
                                            "folds and seeds)")

    def write(self, out: Path) -> dict[str, Path]:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv"}
        text = "# Leaderboard\n\n" + self.markdown() + "\n\n" + "\n".join(f"- {n}" for n in self.notes()) + "\n"
        if self.comparisons:
            text += "\n## Published numbers in the same setting\n\n" + self.comparison_markdown() + "\n"
        text += "\nSources: " + ", ".join(str(f) for f in self.files) + "\n"
        atomic_write_text(paths["markdown"], text)
        with atomic_path(paths["csv"]) as tmp:
            self.frame().to_csv(tmp, index=False)
        # written even when empty: a comparisons.csv left by an earlier report would contradict this one
        paths["comparisons"] = out / "comparisons.csv"
        with atomic_path(paths["comparisons"]) as tmp:
            self.comparison_frame().to_csv(tmp, index=False)
        png = self.plot(out / "leaderboard.png")
        if png:
            paths["png"] = png
        return paths


def build_leaderboard(work_dirs: list[str | Path] | None = None, published: str | Path | None = PUBLISHED_TABLE,
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

    metrics, specs = {}, {}
    layers_per_store = rows.groupby(["origin", "store"])["layer"].nunique().to_dict() if len(rows) else {}
    for r in rows.to_dict("records"):
        mean = _number(r["mean"])
        if mean is None:   # a row from an interrupted write
            continue
        column = Column(r["task"], r["variant"], r["protocol"], r["subset"], validation_rule(r))
        metrics[column] = r["metric"]
        multi = layers_per_store.get((r["origin"], r["store"]), 1) > 1
        # a weighted-sum probe is named as such even when it is the store's only probed layer
        named = multi or r["layer"] == "weighted"
        label = r["store"] + (f"/{r['layer']}" if named else "") + (" [demo]" if r["origin"] == "demo" else "")
        key = (r["origin"], r["store"], r["layer"] if multi else "")
        spec = specs.setdefault(key, Entry(label, r["encoder"], r["store"], r["layer"]))
        single = str(r.get("runs", "")).strip() == "1"   # one fold, one seed: no spread to show
        std, valid_mean, valid_std = _number(r["std"]), _number(r["valid_mean"]), _number(r["valid_std"])
        spec.cells.setdefault(column, {})[r["head"]] = HeadResult(
            100 * mean, None if single or std is None else 100 * std,
            None if valid_mean is None else 100 * valid_mean, None if valid_std is None else 100 * valid_std,
            str(r.get("dataset_complete", "True")).lower() == "false", setting_of(r))
    entries = []
    for key in sorted(specs):
        entry = specs[key]
        for column, heads in list(entry.cells.items()):
            head, by_validation = choose_head(heads)
            entry.cells[column] = Cell(head, heads, by_validation)
        entries.append(entry)
    columns = sorted(metrics, key=Column.sort_key)
    comparisons = compare(entries, columns, load_published(published) if published else [])
    return Leaderboard(columns, entries, metrics, [f for f, _ in files], comparisons, omitted,
                       Path(published) if published else None)


def compare(entries: list[Entry], columns: list[Column], published: list[Published]) -> list[Comparison]:
    """Every Setting that both one of our results and a published number
    have, with all of them; matching is exact equality of the Setting."""
    by_setting: dict[Setting, list[Published]] = {}
    for pub in published:
        by_setting.setdefault(pub.setting, []).append(pub)
    out = []
    for column in columns:
        ours: dict[Setting, list] = {}
        for entry in entries:
            cell = entry.cells.get(column)
            for head, result in (cell.heads.items() if cell else ()):
                if result.setting is not None and result.setting in by_setting:
                    ours.setdefault(result.setting, []).append((entry, head))
        for setting in sorted(ours, key=lambda s: s.probe):
            out.append(Comparison(column, setting, ours[setting], by_setting[setting]))
    return out


# --------------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Gather every task's results.csv into one leaderboard (encoders x tasks, primary metric of "
                    "the head chosen on validation, mean ± std over folds and seeds), with the published numbers "
                    "measured in exactly the same setting listed beside ours. Writes leaderboard.md, "
                    "leaderboard.csv, comparisons.csv and leaderboard.png.",
        formatter_class=HelpFormatter)
    p.add_argument("--work-dir", nargs="+", metavar="DIR",
                   help="where results are: work roots, task work dirs or results/ folders, searched for "
                        "results.csv (default: each task folder's results/ and demo_runs/<task>/results/)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "results"), help="folder for the leaderboard files")
    p.add_argument("--published", default=str(PUBLISHED_TABLE),
                   help="table of published numbers (CSV, one row per number with its source and setting)")
    p.add_argument("--no-published", action="store_true", help="leave published numbers out")
    p.add_argument("--all-layers", action="store_true",
                   help="one row per probed layer (default: each store's default layer only)")
    return add_debug_option(p)


@entry_point
def main(argv: list[str] | None = None) -> Leaderboard:
    args = parser().parse_args(argv)
    board = build_leaderboard(args.work_dir, None if args.no_published else Path(args.published), args.all_layers)
    from ..separation.report import write_separation_section
    separation = write_separation_section(args.work_dir, Path(args.out), with_published=not args.no_published)
    if not board.entries and separation:
        print(separation)
        return board
    if not board.entries:
        where = ", ".join(map(str, args.work_dir)) if args.work_dir else "the task folders and demo_runs/"
        sys.exit(f"error: no results.csv with results found under {where}: run train.py or "
                 "run_benchmark.py first")
    paths = board.write(Path(args.out))
    print(board.markdown())
    print()
    for note in board.notes():
        print(note)
    if board.comparisons:
        print()
        print(board.comparison_markdown())
    if separation:
        print()
        print(separation)
    print()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return board
