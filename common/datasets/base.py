"""What every dataset reader returns, and the checks they share.

A reader turns a dataset root in its official layout into an item table: one
row per item to embed, with the columns

    id          unique, stable across machines (a path relative to the root)
    path        absolute path of the audio file
    clip_start  seconds into the file where the item starts (0.0)
    clip_end    seconds where it ends (NaN: end of file)
    label       the dataset's own label for the item

plus whatever the protocols need (fold, split, speaker, src_file, ...).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError

ITEM_COLUMNS = ("id", "path", "clip_start", "clip_end", "label")


class DatasetError(UserError, RuntimeError):
    """A dataset root or metadata file that is missing or malformed."""


class PartialDownloadWarning(UserWarning):
    """Item counts differ from the full official download."""


@dataclass
class DatasetListing:
    items: pd.DataFrame
    variant: str                 # which dataset this is, e.g. "speech_commands_v0.02"
    root: Path
    complete: bool = True        # counts match the full official download
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        missing = [c for c in ITEM_COLUMNS if c not in self.items.columns]
        assert not missing, f"reader returned no {missing} columns"
        assert self.items["id"].is_unique, "item ids must be unique"
        self.items = self.items.reset_index(drop=True)


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


def item_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    # rows without a segment cover their whole file
    df["clip_start"] = df["clip_start"].fillna(0.0).astype(float) if "clip_start" in df else 0.0
    df["clip_end"] = df["clip_end"].astype(float) if "clip_end" in df else np.nan
    return df
