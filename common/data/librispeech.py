"""LibriSpeech train-clean-100 for speaker identification."""
from __future__ import annotations

from pathlib import Path

from .base import DatasetError, DatasetListing, check_counts, find_root, item_frame
from .fetch import DatasetDownload, RemoteFile

PART = "train-clean-100"
EXPECTED = {"utterances": 28_539, "speakers": 251}
DOWNLOAD = "https://www.openslr.org/12 (train-clean-100.tar.gz)"


def read_librispeech(root: str | Path | None, part: str = PART) -> DatasetListing:
    base = find_root(root, part, ("LibriSpeech",), "LibriSpeech", DOWNLOAD)
    rows = []
    for speaker_dir in sorted(p for p in (base / part).iterdir() if p.is_dir()):
        for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir()):
            for flac in sorted(chapter_dir.glob("*.flac")):
                speaker, chapter, _ = flac.stem.split("-")
                rows.append({"id": f"{part}/{flac.stem}", "path": str(flac), "label": speaker,
                             "speaker": speaker, "chapter": chapter})
    if not rows:
        raise DatasetError(f"LibriSpeech: no <speaker>/<chapter>/*.flac under {base / part}")
    items = item_frame(rows)
    notes = check_counts(f"LibriSpeech {part}", {"utterances": len(items),
                                                  "speakers": items["speaker"].nunique()}, EXPECTED)
    return DatasetListing(items, f"librispeech_{part}", base, complete=not notes, notes=notes)


# What --download fetches (common.data.fetch).
DOWNLOADS = DatasetDownload(
    name="LibriSpeech train-clean-100", root="LibriSpeech",
    licence="LibriSpeech: Creative Commons Attribution 4.0 (CC BY 4.0), openslr.org/12",
    files=(RemoteFile(
        url="https://www.openslr.org/resources/12/train-clean-100.tar.gz", filename="train-clean-100.tar.gz",
        # torchaudio's LIBRISPEECH checksum table (OpenSLR's md5sum.txt has md5 2a93770f6d5c6c964bc36631d331a522)
        checksum="sha256:d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
        unpack_to="", provides="LibriSpeech/train-clean-100"),),
)
