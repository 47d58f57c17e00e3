"""Speech Commands v0.01 / v0.02: <word>/<hash>_nohash_<n>.wav with official
validation/testing lists, `_silence_` windows cut from `_background_noise_/`,
and the separate official 12-class test archives
`speech_commands_test_set_v0.0x/` (found inside or beside the data root).

Item columns besides the common ones:
    split       train / validation / test by the lists (noise windows: by
                position, see SILENCE_SPLIT); a test-archive clip: the
                archive's name
    hear_split  HEAR's parts: as `split` for words; noise windows of
                running_tap.wav validate, all others train
    archive     "main" or the test archive's name
    on_second   False for the noise windows that start half a second into a
                second (only HEAR's 0.5 s hop uses them)
    speaker     the hash before `_nohash_`
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import soundfile as sf

from .base import DatasetError, DatasetListing, check_counts, check_listed, find_root, item_frame
from .fetch import DatasetDownload, RemoteFile

V2_ONLY_WORDS = {"backward", "follow", "forward", "learn", "visual"}
EXPECTED = {  # clips, validation, test of the full downloads
    "speech_commands_v0.01": {"clips": 64_721, "validation": 6_798, "test": 6_835},
    "speech_commands_v0.02": {"clips": 105_829, "validation": 9_981, "test": 11_005},
}
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
TWELVE_CLASSES = (*COMMANDS, UNKNOWN, SILENCE)
DOWNLOAD = ("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz "
            "(or speech_commands_v0.01.tar.gz)")
# The official 12-class test archives (SUPERB scores v0.01, HEAR v0.02), 12
# balanced folders each, `_silence_` and `_unknown_` included.
TEST_ARCHIVES = {"speech_commands_v0.01": "speech_commands_test_set_v0.01",
                 "speech_commands_v0.02": "speech_commands_test_set_v0.02"}
TEST_ARCHIVE_CLIPS = {"speech_commands_test_set_v0.01": 3_081, "speech_commands_test_set_v0.02": 4_890}
TEST_ARCHIVE_URL = "http://download.tensorflow.org/data/{}.tar.gz"
# Noise windows are assigned by position in their recording (first 80% train,
# next 10% validation, last 10% test) so neighbouring windows never straddle
# the train/test boundary.
SILENCE_SPLIT = (0.8, 0.9)
HEAR_VALID_NOISE = "running_tap"  # HEAR (after TFDS) validates on this file's windows only


def _silence_items(noise_dir: Path) -> list[dict]:
    """1 s windows of every noise file: one at every whole second that fits
    (split by position), and HEAR's windows, starting every 0.5 s before the
    last full second (a whole-second window HEAR does not cut gets an empty
    `hear_split`)."""
    rows = []
    for wav in sorted(noise_dir.glob("*.wav")):
        info = sf.info(str(wav))
        rate, frames = info.samplerate, info.frames
        seconds = frames // rate
        hear = "validation" if wav.stem.startswith(HEAR_VALID_NOISE) else "train"
        for start in range(0, seconds * rate - rate // 2, rate // 2):
            k = start / rate
            on_second = start % rate == 0
            split = ("train" if k < SILENCE_SPLIT[0] * seconds else
                     "validation" if k < SILENCE_SPLIT[1] * seconds else "test")
            rows.append({"id": f"_background_noise_/{wav.name}#{k:g}", "path": str(wav), "clip_start": k,
                         "clip_end": k + 1.0, "label": SILENCE, "split": split,
                         "hear_split": hear if start < frames - rate else "", "archive": "main",
                         "on_second": on_second, "speaker": ""})
    return rows


def find_test_archive(base: Path, name: str) -> Path | None:
    """`name/` inside the main archive's folder or beside it."""
    for candidate in (base / name, base.parent / name):
        if candidate.is_dir():
            return candidate
    return None


def _test_archive_items(folder: Path) -> list[dict]:
    rows = []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for wav in sorted(label_dir.glob("*.wav")):
            rows.append({"id": f"{folder.name}/{label_dir.name}/{wav.name}", "path": str(wav),
                         "label": label_dir.name, "split": folder.name, "hear_split": folder.name,
                         "archive": folder.name, "on_second": True, "speaker": wav.name.split("_nohash_")[0]})
    return rows


def read_speech_commands(root: str | Path | None) -> DatasetListing:
    base = find_root(root, "testing_list.txt", ("speech_commands_v0.02", "speech_commands_v0.01"),
                     "Speech Commands", DOWNLOAD)
    lists = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        if not (base / name).exists():
            raise DatasetError(f"Speech Commands: {base / name} is missing; it ships with the official archive")
        lists[split] = set((base / name).read_text().split())
    rows, notes = [], []
    words = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_")
                   and not p.name.startswith("speech_commands_test_set"))
    if not words:
        raise DatasetError(f"Speech Commands: no word folders under {base}")
    for word in words:
        for wav in sorted((base / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "validation" if rel in lists["validation"] else "test" if rel in lists["test"] else "train"
            rows.append({"id": rel, "path": str(wav), "label": word, "split": split, "hear_split": split,
                         "archive": "main", "on_second": True, "speaker": wav.name.split("_nohash_")[0]})
    variant = "speech_commands_v0.02" if V2_ONLY_WORDS & set(words) else "speech_commands_v0.01"
    for split, listed in lists.items():
        notes += check_listed(f"the {split} list", listed, {row["id"] for row in rows})
    noise_dir = base / "_background_noise_"
    if noise_dir.is_dir():
        rows += _silence_items(noise_dir)
    else:
        notes.append(f"no _background_noise_/ under {base}: the 12-class protocols have no {SILENCE} "
                     "training items")
    words_only = pd.DataFrame(rows)
    words_only = words_only[words_only["label"] != SILENCE]
    counts = {"clips": len(words_only), **words_only["split"].value_counts().to_dict()}
    notes += check_counts(variant, counts, EXPECTED[variant])
    archives = []
    for name, expected in TEST_ARCHIVE_CLIPS.items():
        folder = find_test_archive(base, name)
        if folder is not None:
            found = _test_archive_items(folder)
            rows += found
            archives.append(folder)
            notes += check_counts(name, {"clips": len(found)}, {"clips": expected})
    return DatasetListing(item_frame(rows), variant, base, complete=not notes, notes=notes, extra_roots=archives)


def twelve_class_label(label: str) -> str:
    """Ten commands, _silence_, and _unknown_ for every other word (SUPERB and
    HEAR alike; the test archives' folders already hold these 12 names)."""
    return label if label in COMMANDS or label == SILENCE else UNKNOWN


def main_archive_items(items: pd.DataFrame) -> pd.Series:
    """Words of the main archive and its whole-second noise windows, split by the lists."""
    # the store's items.csv gives booleans back as bool or as text
    return (items["archive"] == "main") & (items["on_second"].astype(str).str.lower() == "true")


def require_test_archive(archive: str) -> Callable[[pd.DataFrame], None]:
    """A protocol's requirement: clips of `archive` among the items, else one
    sentence naming the archive and where it goes."""
    def check(items: pd.DataFrame) -> None:
        if not (items["archive"] == archive).any():
            raise DatasetError(
                f"Speech Commands: this protocol is scored on the official test archive {archive}.tar.gz, "
                f"which was not found: unpack it ({TEST_ARCHIVE_URL.format(archive)}) to {archive}/ beside "
                "or inside the data root, then extract again with --overwrite")
    return check


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


# What --download fetches (common.data.fetch): the main archive and the separate
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
