"""Speech Commands v0.01 / v0.02: <word>/<hash>_nohash_<n>.wav with official
validation/testing lists, plus 1 s `_silence_` windows cut from
`_background_noise_/`."""
from __future__ import annotations

from pathlib import Path

import soundfile as sf

from ..fetch import DatasetDownload, RemoteFile
from .base import DatasetError, DatasetListing, check_counts, find_root, item_frame

V2_ONLY_WORDS = {"backward", "follow", "forward", "learn", "visual"}
EXPECTED = {  # clips, validation, test of the full downloads
    "speech_commands_v0.01": {"clips": 64_721, "validation": 6_798, "test": 6_835},
    "speech_commands_v0.02": {"clips": 105_829, "validation": 9_981, "test": 11_005},
}
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
DOWNLOAD = ("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz "
            "(or speech_commands_v0.01.tar.gz)")
# Noise windows are assigned by position in their recording (first 80% train,
# next 10% validation, last 10% test) so neighbouring windows never straddle
# the train/test boundary.
SILENCE_SPLIT = (0.8, 0.9)


def _silence_items(noise_dir: Path) -> list[dict]:
    rows = []
    for wav in sorted(noise_dir.glob("*.wav")):
        seconds = int(sf.info(str(wav)).duration)
        for k in range(seconds):
            split = ("train" if k < SILENCE_SPLIT[0] * seconds else
                     "validation" if k < SILENCE_SPLIT[1] * seconds else "test")
            rows.append({"id": f"_background_noise_/{wav.name}#{k}", "path": str(wav), "clip_start": float(k),
                         "clip_end": float(k + 1), "label": SILENCE, "split": split, "speaker": ""})
    return rows


def read_speech_commands(root: str | Path | None) -> DatasetListing:
    base = find_root(root, "testing_list.txt", ("speech_commands_v0.02", "speech_commands_v0.01"),
                     "Speech Commands", DOWNLOAD)
    lists = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        if not (base / name).exists():
            raise DatasetError(f"Speech Commands: {base / name} is missing; it ships with the official archive")
        lists[split] = set((base / name).read_text().split())
    rows = []
    words = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if not words:
        raise DatasetError(f"Speech Commands: no word folders under {base}")
    for word in words:
        for wav in sorted((base / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "validation" if rel in lists["validation"] else "test" if rel in lists["test"] else "train"
            rows.append({"id": rel, "path": str(wav), "label": word, "split": split,
                         "speaker": wav.name.split("_nohash_")[0]})
    variant = "speech_commands_v0.02" if V2_ONLY_WORDS & set(words) else "speech_commands_v0.01"
    notes = []
    noise_dir = base / "_background_noise_"
    if noise_dir.is_dir():
        rows += _silence_items(noise_dir)
    else:
        notes.append(f"no _background_noise_/ under {base}: protocol '12' has no {SILENCE} class")
    items = item_frame(rows)
    words_only = items[items["label"] != SILENCE]
    counts = {"clips": len(words_only), **words_only["split"].value_counts().to_dict()}
    notes += check_counts(variant, counts, EXPECTED[variant])
    return DatasetListing(items, variant, base, complete=not notes, notes=notes)


def twelve_class_label(label: str) -> str:
    """SUPERB keyword spotting: ten commands, _silence_, _unknown_ for every other word."""
    return label if label in COMMANDS or label == SILENCE else UNKNOWN


TWELVE_CLASSES = (*COMMANDS, UNKNOWN, SILENCE)



def _speech_commands_download(version: str, main: tuple[str, int | None], test: tuple[str | None, int | None]):
    base = "http://download.tensorflow.org/data/"
    folder, test_folder = f"speech_commands_{version}", f"speech_commands_test_set_{version}"
    # the archives hold the word folders at their top: each unpacks into its own folder
    return DatasetDownload(
        name=folder, root=folder,
        licence="Speech Commands: Creative Commons Attribution 4.0 (CC BY 4.0), Google",
        files=(RemoteFile(url=f"{base}{folder}.tar.gz", filename=f"{folder}.tar.gz", checksum=main[0],
                          size=main[1], unpack_to=folder, provides=folder),
               RemoteFile(url=f"{base}{test_folder}.tar.gz", filename=f"{test_folder}.tar.gz", checksum=test[0],
                          size=test[1], unpack_to=test_folder, provides=test_folder)))


# What --download fetches (common.fetch): the main archive and the separate
# official test set. Checksums: torchaudio's SPEECHCOMMANDS table (main
# archives) and TensorFlow Datasets' url_checksums/speech_commands.txt (v0.02
# sizes and test set); none is published for the v0.01 test set.
DOWNLOADS = (
    _speech_commands_download(
        "v0.02", ("sha256:af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58", 2_428_923_189),
        ("sha256:cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df", 112_563_277)),
    _speech_commands_download(
        "v0.01", ("sha256:743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d", None), (None, None)),
)
