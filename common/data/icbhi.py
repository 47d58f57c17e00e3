"""ICBHI 2017 respiratory sounds: recordings with per-cycle annotations and
the official patient-level train/test split."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import DatasetError, DatasetListing, check_counts, find_root, item_frame
from .fetch import DatasetDownload, RemoteFile

SPLIT_FILE = "ICBHI_challenge_train_test.txt"
EXPECTED = {"recordings": 920, "cycles": 6_898}
DOWNLOAD = ("https://bhichallenge.med.auth.gr/ICBHI_2017_Challenge (ICBHI_final_database.zip and "
            f"{SPLIT_FILE})")
CYCLE_CLASSES = ("normal", "crackle", "wheeze", "both")
RECORDING_CLASSES = ("normal", "abnormal")


def _cycle_class(crackles: int, wheezes: int) -> str:
    return CYCLE_CLASSES[int(crackles) + 2 * int(wheezes)]


def _find_split_file(base: Path) -> Path:
    for candidate in (base / SPLIT_FILE, base.parent / SPLIT_FILE):
        if candidate.exists():
            return candidate
    raise DatasetError(f"ICBHI: the official split file {SPLIT_FILE} is neither in {base} nor in "
                       f"{base.parent}; download it from {DOWNLOAD} and put it beside the recordings")


def read_icbhi(root: str | Path | None) -> DatasetListing:
    base = find_root(root, "", ("ICBHI_final_database",), "ICBHI 2017", DOWNLOAD)
    if not any(base.glob("*.wav")):
        base = find_root(root, "ICBHI_final_database", (), "ICBHI 2017", DOWNLOAD) / "ICBHI_final_database"
    split_table = pd.read_csv(_find_split_file(base), sep=r"\s+", header=None, names=["recording", "split"],
                              dtype=str)
    bad = set(split_table["split"]) - {"train", "test"}
    if bad:
        raise DatasetError(f"ICBHI: {SPLIT_FILE} has split values {sorted(bad)}; expected train/test")
    split_of = dict(zip(split_table["recording"], split_table["split"]))
    rows, notes = [], []
    unlisted = []
    for wav in sorted(base.glob("*.wav")):
        name = wav.stem
        if name not in split_of:
            unlisted.append(name)
            continue
        annotation = wav.with_suffix(".txt")
        if not annotation.exists():
            raise DatasetError(f"ICBHI: {annotation} (the cycle annotation of {wav.name}) is missing")
        cycles = pd.read_csv(annotation, sep=r"\s+", header=None, names=["start", "end", "crackles", "wheezes"])
        patient = name.split("_")[0]
        common = {"split": split_of[name], "patient": patient, "recording": name}
        abnormal = bool((cycles["crackles"] > 0).any() or (cycles["wheezes"] > 0).any())
        rows.append({"id": name, "path": str(wav), "label": RECORDING_CLASSES[abnormal], "kind": "recording",
                     **common})
        for i, cycle in enumerate(cycles.itertuples()):
            rows.append({"id": f"{name}#{i:03d}", "path": str(wav), "clip_start": float(cycle.start),
                         "clip_end": float(cycle.end), "label": _cycle_class(cycle.crackles, cycle.wheezes),
                         "kind": "cycle", **common})
    if unlisted:
        notes.append(f"{len(unlisted)} recordings are not in {SPLIT_FILE} and were left out, e.g. {unlisted[0]}")
    if not rows:
        raise DatasetError(f"ICBHI: no recordings listed in {SPLIT_FILE} found under {base}")
    items = item_frame(rows)
    notes += check_counts("ICBHI 2017", items["kind"].value_counts().rename(
        {"recording": "recordings", "cycle": "cycles"}).to_dict(), EXPECTED)
    return DatasetListing(items, "icbhi", base, complete=not notes, notes=notes)


# What --download fetches (common.data.fetch). The challenge site publishes no
# checksums: the reader's counts (920 recordings, 6,898 cycles) are the check.
_ICBHI_SITE = "https://bhichallenge.med.auth.gr/sites/default/files/ICBHI_final_database/"
DOWNLOADS = DatasetDownload(
    name="ICBHI 2017", root="ICBHI_final_database",
    licence="ICBHI 2017 Respiratory Sound Database: free for research, cite Rocha et al., Physiol. Meas. 2019 "
            "(terms: bhichallenge.med.auth.gr)",
    files=(RemoteFile(url=_ICBHI_SITE + "ICBHI_final_database.zip", filename="ICBHI_final_database.zip",
                      checksum=None, unpack_to="", provides="ICBHI_final_database"),
           RemoteFile(url=_ICBHI_SITE + SPLIT_FILE, filename=SPLIT_FILE, checksum=None, provides=SPLIT_FILE)),
)
