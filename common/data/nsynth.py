"""NSynth: nsynth-{train,valid,test}/examples.json + audio/<note>.wav."""
from __future__ import annotations

import json
from pathlib import Path

from .base import DatasetError, DatasetListing, check_counts, item_frame
from .fetch import DatasetDownload, RemoteFile

SPLITS = {"train": 289_205, "valid": 12_678, "test": 4_096}
FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
            "string", "synth_lead", "vocal")  # index = instrument_family
DOWNLOAD = "https://magenta.tensorflow.org/datasets/nsynth (json/wav archives)"


def read_nsynth(root: str | Path | None) -> DatasetListing:
    if root is None:
        raise DatasetError(f"no data root given for NSynth: pass --data-root DIR (download: {DOWNLOAD})")
    root = Path(root).expanduser().resolve()
    present = {s: root / f"nsynth-{s}" for s in SPLITS if (root / f"nsynth-{s}" / "examples.json").exists()}
    if not present:
        raise DatasetError(f"NSynth: no nsynth-train/, nsynth-valid/ or nsynth-test/ with examples.json "
                           f"under {root}. Unpack the official json/wav archives there (download: {DOWNLOAD}).")
    rows = []
    for split, folder in present.items():
        with open(folder / "examples.json") as f:
            examples = json.load(f)
        for note, attrs in examples.items():
            family = int(attrs["instrument_family"])
            if FAMILIES[family] != attrs.get("instrument_family_str", FAMILIES[family]):
                raise DatasetError(f"{folder / 'examples.json'}: {note} has family {family} named "
                                   f"{attrs['instrument_family_str']!r}, expected {FAMILIES[family]!r}")
            rows.append({"id": f"{split}/{note}", "path": str(folder / "audio" / f"{note}.wav"),
                         "label": FAMILIES[family], "split": split, "instrument": attrs.get("instrument_str"),
                         "pitch": attrs.get("pitch")})
    items = item_frame(rows)
    notes = check_counts("NSynth", items["split"].value_counts().to_dict(), SPLITS)
    return DatasetListing(items, "nsynth", root, complete=not notes, notes=notes)


# What --download fetches (common.data.fetch). No checksums are published for the
# json/wav archives (TFDS verifies only its TFRecord copy): the reader's item
# counts are the check.
DOWNLOADS = DatasetDownload(
    name="NSynth", root="",
    licence="NSynth: Creative Commons Attribution 4.0 (CC BY 4.0), Google Magenta",
    files=tuple(RemoteFile(
        url=f"http://download.magenta.tensorflow.org/datasets/nsynth/nsynth-{split}.jsonwav.tar.gz",
        filename=f"nsynth-{split}.jsonwav.tar.gz", checksum=None, unpack_to="", provides=f"nsynth-{split}")
        for split in SPLITS),
)
