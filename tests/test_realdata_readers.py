"""Readers on the real subsets in ../shared/realdata (official layouts, partial downloads)."""
import numpy as np
import pytest

from common.datasets import PartialDownloadWarning, read_nsynth, read_speech_commands
from common.datasets.nsynth import FAMILIES
from common.datasets.speech_commands import TWELVE_CLASSES, twelve_class_label
from common.task import load_task
from conftest import PROJECT_ROOT


def test_speech_commands_lists_are_honoured_and_partial_reported(shared_dir):
    root = shared_dir / "realdata" / "speech_commands_v0.01"
    with pytest.warns(PartialDownloadWarning, match="64,721"):
        listing = read_speech_commands(root)
    assert listing.variant == "speech_commands_v0.01" and not listing.complete
    items = listing.items
    assert len(items) == 300 and items["label"].nunique() == 30
    assert items["split"].value_counts().to_dict() == {"train": 205, "test": 51, "validation": 44}
    test_list = set((root / "testing_list.txt").read_text().split())
    valid_list = set((root / "validation_list.txt").read_text().split())
    for row in items.itertuples():
        assert (row.id in test_list) == (row.split == "test")
        assert (row.id in valid_list) == (row.split == "validation")


def test_speech_commands_twelve_class_protocol(shared_dir):
    task = load_task(PROJECT_ROOT / "key_word_spotting")
    with pytest.warns(PartialDownloadWarning):
        items = task.read(shared_dir / "realdata" / "speech_commands_v0.01").items
    data = task.protocol("12").prepare(items)
    assert data.classes == list(TWELVE_CLASSES)
    labels = np.array(data.classes)[data.y]
    words = data.items["label"].to_numpy()
    assert (labels[np.isin(words, ["yes", "no", "stop", "go"])] == words[np.isin(words, ["yes", "no", "stop", "go"])]).all()
    assert set(labels[np.isin(words, ["bed", "marvin", "sheila", "zero"])]) == {"_unknown_"}
    assert twelve_class_label("_silence_") == "_silence_"
    full = task.protocol("full").prepare(items)
    assert len(full.classes) == 30
    fold = full.folds[0]
    assert set(full.items["split"].iloc[fold.test]) == {"test"}
    assert set(full.items["split"].iloc[fold.valid]) == {"validation"}


def test_nsynth_test_notes_keep_the_11_family_map(shared_dir):
    with pytest.warns(PartialDownloadWarning, match="4,096"):
        listing = read_nsynth(shared_dir / "realdata" / "nsynth")
    items = listing.items
    assert len(items) == 60 and set(items["split"]) == {"test"} and not listing.complete
    assert items["label"].nunique() == 10 and "synth_lead" not in set(items["label"])
    task = load_task(PROJECT_ROOT / "nsynth_feature_fc")
    assert list(task.protocol("official").classes) == list(FAMILIES) and len(FAMILIES) == 11
    import json
    examples = json.loads((shared_dir / "realdata" / "nsynth" / "nsynth-test" / "examples.json").read_text())
    for row in items.itertuples():
        assert FAMILIES.index(row.label) == examples[row.id.split("/", 1)[1]]["instrument_family"]
