"""Datasets described by one metadata CSV (ESC-50, UrbanSound8K, and any new
dataset of that kind: a new task only declares a `CsvDataset`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .base import NOT_FOUND, REFUSED, DatasetError, DatasetListing, check_counts, find_root, path_problems
from .fetch import DatasetDownload, RemoteFile


@dataclass(frozen=True)
class CsvDataset:
    name: str                   # e.g. "ESC-50"
    metadata: str               # CSV path relative to the dataset folder
    audio: str                  # audio path template, formatted with the CSV row
    label: str                  # label column
    id: str                     # column holding a unique id per row
    columns: tuple[str, ...]    # columns the official CSV has
    subdirs: tuple[str, ...]    # dataset folder names to look for under --data-root
    download: str
    expected_items: int | None = None
    variant: str | None = None
    folds: tuple[int, ...] | None = None    # the official folds (column `fold_column`); others are refused
    fold_column: str = "fold"

    def __call__(self, root: str | Path | None) -> DatasetListing:
        base = find_root(root, self.metadata, self.subdirs, self.name, self.download)
        source = base / self.metadata
        try:
            table = pd.read_csv(source)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DatasetError(f"{source} is not a readable CSV ({str(err).splitlines()[0]}); "
                               f"restore it from the official {self.name} download") from err
        missing = [c for c in self.columns if c not in table.columns]
        if missing:
            raise DatasetError(f"{source} lacks the columns {missing} of the official "
                               f"{self.name} metadata (found {list(table.columns)})")
        if table.empty:
            raise DatasetError(f"{source} lists no items (header only); restore it from the official {self.name} "
                               "download")
        self._check_folds(table, source)
        table["path"] = [str(base / self.audio.format(**row)) for row in table.to_dict("records")]
        table[REFUSED] = path_problems(table["path"], base)
        absent = table[REFUSED].str.endswith(NOT_FOUND)
        notes, listed = [], len(table)
        if absent.any():  # a partial download: counted and left out; other refusals are listed as failed
            notes.append(f"{int(absent.sum()):,} files listed in {self.metadata} are missing, "
                         f"e.g. {table.loc[absent, 'path'].iloc[0]}")
            table = table[~absent]
        table = table.assign(id=table[self.id].astype(str), label=table[self.label].astype(str),
                             clip_start=0.0, clip_end=float("nan"))
        if self.expected_items:
            notes += check_counts(self.name, {"items": len(table)}, {"items": self.expected_items})
        elif notes:
            check_counts(self.name, {"files": len(table)}, {"files": listed})
        return DatasetListing(table, self.variant or self.name.lower(), base, complete=not notes, notes=notes)

    def _check_folds(self, table: pd.DataFrame, source: Path) -> None:
        """Every row in one of the official folds: a fold 0 or 6 in ESC-50
        would silently add a sixth cross-validation fold."""
        if self.folds is None:
            return
        folds = pd.to_numeric(table[self.fold_column], errors="coerce")
        bad = ~folds.isin(self.folds)
        if bad.any():
            found = sorted({str(v) for v in table.loc[bad, self.fold_column]})
            raise DatasetError(f"{source}: {int(bad.sum()):,} rows have {self.fold_column} values "
                               f"{', '.join(found[:5])} outside the official {self.name} folds "
                               f"{min(self.folds)}-{max(self.folds)}; fix or remove those rows")


ESC50 = CsvDataset(
    name="ESC-50", variant="esc50",
    metadata="meta/esc50.csv", audio="audio/{filename}", label="category", id="filename",
    columns=("filename", "fold", "target", "category", "esc10", "src_file", "take"),
    subdirs=("ESC-50-master", "ESC-50"), expected_items=2000, folds=(1, 2, 3, 4, 5),
    download="https://github.com/karolpiczak/ESC-50 (archive master.zip)",
)

URBANSOUND8K = CsvDataset(
    name="UrbanSound8K", variant="urbansound8k",
    metadata="metadata/UrbanSound8K.csv", audio="audio/fold{fold}/{slice_file_name}", label="class",
    id="slice_file_name",
    columns=("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"),
    subdirs=("UrbanSound8K",), expected_items=8732, folds=tuple(range(1, 11)),
    download="https://urbansounddataset.weebly.com/urbansound8k.html",
)


# What --download fetches (common.data.fetch).
ESC50_DOWNLOAD = DatasetDownload(
    name="ESC-50", root="ESC-50-master",
    licence="ESC-50: Creative Commons Attribution-NonCommercial 3.0 (CC BY-NC 3.0), clips from freesound.org; "
            "ESC-10 subset CC BY (github.com/karolpiczak/ESC-50)",
    files=(RemoteFile(
        url="https://github.com/karolpiczak/ESC-50/archive/master.zip", filename="ESC-50-master.zip",
        # md5 of soundata's esc50 loader (REMOTES["all"]); GitHub builds branch archives on request, so a
        # change upstream shows up as a checksum error
        checksum="md5:7771e4b9d86d0945acce719c7a59305a",
        unpack_to="", provides="ESC-50-master"),),
)

URBANSOUND8K_DOWNLOAD = DatasetDownload(
    name="UrbanSound8K", root="UrbanSound8K",
    licence="UrbanSound8K: Creative Commons Attribution-NonCommercial 4.0 (CC BY-NC 4.0), clips from "
            "freesound.org (zenodo.org/record/1203745)",
    files=(RemoteFile(
        url="https://zenodo.org/record/1203745/files/UrbanSound8K.tar.gz", filename="UrbanSound8K.tar.gz",
        checksum="md5:9aa69802bbf37fb986f71ec1483a196e",  # the Zenodo record's md5 (also soundata's)
        unpack_to="", provides="UrbanSound8K"),),
)
