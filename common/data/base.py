"""What every dataset reader returns, and the checks they share.

A reader turns a dataset root in its official layout into an item table: one
row per item to embed, with the columns

    id          unique, stable across machines (a path relative to the root)
    path        absolute path of the audio file
    clip_start  seconds into the file where the item starts (0.0)
    clip_end    seconds where it ends (NaN: end of file)
    label       the dataset's own label for the item

plus whatever the protocols need (fold, split, speaker, src_file, ...).

`DatasetListing` checks every reader's table the same way: no items, items
without a label or with a duplicated id are errors; exact duplicate rows are
dropped with a warning; an item whose file leaves the data root (`../..`, an
absolute path, a symbolic link pointing out), is a dangling link or a link
loop, or is not there at all, is kept with its reason in the `refused` column:
extraction lists it as failed without reading it.
"""
from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError

ITEM_COLUMNS = ("id", "path", "clip_start", "clip_end", "label")
REFUSED = "refused"   # column: why an item's file is not read ("" = fine)
MISSING_LABELS = ("", "nan", "none", "null")
NOT_FOUND = "does not exist"   # end of the refusal of a file that is not there


class DatasetError(UserError, RuntimeError):
    """A dataset root or metadata file that is missing or malformed."""


class PartialDownloadWarning(UserWarning):
    """Item counts differ from the full official download."""


class DatasetWarning(UserWarning):
    """Rows of a dataset that were dropped or will be listed as failed."""


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def path_problems(paths, root: str | Path, extra_roots: Sequence[str | Path] = ()) -> list[str]:
    """Why each file must not be read ("" when it may): it leaves `root`
    (by `..`, an absolute path or a symbolic link), is a dangling link or a
    link loop, or does not exist. `extra_roots`: other folders the reader
    found and declares part of the dataset (Speech Commands' test archives
    beside the main one); a file inside one of them is judged against it.
    One lstat per file; folders are resolved once each."""
    roots = [(os.path.abspath(r), os.path.realpath(r)) for r in (root, *extra_roots)]
    folders: dict[str, str] = {}
    seen: dict[str, str] = {}
    out = []
    for raw in paths:
        raw = str(raw)
        if raw not in seen:
            path = os.path.normpath(os.path.join(roots[0][0], raw))
            lexical, real = next(((lex, rl) for lex, rl in roots[1:] if _within(path, lex) or _within(path, rl)),
                                 roots[0])
            seen[raw] = _problem(path, lexical, real, folders)
        out.append(seen[raw])
    return out


def _problem(path: str, root_lexical: str, root_real: str, folders: dict[str, str]) -> str:
    if not _within(path, root_lexical) and not _within(path, root_real):
        return f"{path} is outside the data root {root_lexical}"
    folder = os.path.dirname(path)
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    if not _within(folders[folder], root_real):
        return f"{path} leads outside the data root {root_real} through a symbolic link"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"{path} {NOT_FOUND}"
    except OSError as err:
        return f"{path}: {err.strerror}"
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.path.realpath(path, strict=True)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return f"{path} is a symbolic link loop"
            return f"{path} is a dangling symbolic link (its target {os.readlink(path)} does not exist)"
        if not _within(target, root_real):
            return f"{path} is a symbolic link to {target}, outside the data root {root_real}"
    return ""


def _examples(values, limit: int = 3) -> str:
    values = list(values)
    return ", ".join(map(str, values[:limit])) + (", ..." if len(values) > limit else "")


@dataclass
class DatasetListing:
    items: pd.DataFrame
    variant: str                 # which dataset this is, e.g. "speech_commands_v0.02"
    root: Path
    complete: bool = True        # counts match the full official download
    notes: list[str] = field(default_factory=list)
    # folders outside `root` that the reader found and declares part of the
    # dataset (Speech Commands' test archives beside the main one)
    extra_roots: list[Path] = field(default_factory=list)

    def __post_init__(self):
        items = self.items
        missing = [c for c in ITEM_COLUMNS if c not in items.columns]
        if missing:
            raise DatasetError(f"the {self.variant} reader returned no {missing} columns")
        if items.empty:
            raise DatasetError(f"{self.variant}: no items under {self.root}; its metadata lists none "
                               "(check the download and --data-root)")
        hashable = items.astype(str)
        repeated = hashable.duplicated()
        if repeated.any():
            warnings.warn(f"{self.variant}: {int(repeated.sum()):,} duplicated rows were dropped "
                          f"(e.g. {_examples(items.loc[repeated, 'id'])})", DatasetWarning, stacklevel=3)
            items = items[~repeated.to_numpy()]
        clash = items["id"].duplicated(keep=False)
        if clash.any():
            raise DatasetError(f"{self.variant}: {int(clash.sum()):,} rows share an id with different contents "
                               f"(e.g. {_examples(items.loc[clash, 'id'].unique())}); fix the metadata")
        unlabelled = items["label"].isna() | items["label"].astype(str).str.strip().str.lower().isin(MISSING_LABELS)
        if unlabelled.any():
            raise DatasetError(f"{self.variant}: {int(unlabelled.sum()):,} items have no label "
                               f"(e.g. {_examples(items.loc[unlabelled, 'id'])}); fix or remove those rows")
        if REFUSED not in items.columns:
            items = items.assign(**{REFUSED: path_problems(items["path"], self.root, self.extra_roots)})
        refused = items[REFUSED].astype(bool)
        if refused.any():
            self.notes.append(f"{int(refused.sum()):,} items are refused and will be listed as failed, e.g. "
                              f"{items.loc[refused, REFUSED].iloc[0]}")
            warnings.warn(self.notes[-1], DatasetWarning, stacklevel=3)
        self.items = items.reset_index(drop=True)


def find_root(root: str | Path | None, marker: str, subdirs: tuple[str, ...], dataset: str,
              download: str, env: str | None = None) -> Path:
    """The folder that holds `marker`: `root` itself or one of `subdirs` of it.
    Raise one sentence saying what is expected where when neither holds it."""
    if root is None:
        raise DatasetError(f"no data root given for {dataset}: pass --data-root DIR"
                           + (f" or set ${env}" if env else "") + f" (download: {download})")
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DatasetError(f"{dataset} data root {root} does not exist. Download {dataset} from "
                           f"{download} and pass --data-root to the unpacked folder.")
    for candidate in (root, *(root / s for s in subdirs)):
        if (candidate / marker).exists():
            return candidate
    where = " or ".join(str(root / s / marker) for s in ("", *subdirs)).replace("//", "/")
    raise DatasetError(f"{dataset}: {marker} not found (looked for {where}). "
                       f"--data-root must point at the official layout (download: {download}).")


def check_counts(name: str, found: dict[str, int], expected: dict[str, int]) -> list[str]:
    """Compare item counts with the full download; warn and return the notes
    for every count that differs (a partial download is usable, but results on
    it are not comparable with published ones)."""
    notes = [f"{name}: {key} has {found.get(key, 0):,} items, the full download has {value:,}"
             for key, value in expected.items() if found.get(key, 0) != value]
    if notes:
        warnings.warn("partial download: " + "; ".join(notes), PartialDownloadWarning, stacklevel=3)
    return notes


def check_listed(name: str, listed: set[str], found: set[str]) -> list[str]:
    """Warn (and return the note) when an official list names files that are not there."""
    absent = sorted(listed - found)
    if not absent:
        return []
    note = f"{name} names {len(absent):,} files that are not there, e.g. {_examples(absent)}"
    warnings.warn(note, DatasetWarning, stacklevel=3)
    return [note]


def item_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    # rows without a segment cover their whole file
    df["clip_start"] = df["clip_start"].fillna(0.0).astype(float) if "clip_start" in df else 0.0
    df["clip_end"] = df["clip_end"].astype(float) if "clip_end" in df else np.nan
    return df
