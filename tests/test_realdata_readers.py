"""Readers on the real subsets in ../shared/realdata (official layouts, partial downloads)."""
import numpy as np
import pytest
from conftest import PROJECT_ROOT

from common.data import PartialDownloadWarning, read_nsynth, read_speech_commands
from common.data.nsynth import FAMILIES
from common.data.speech_commands import TWELVE_CLASSES, twelve_class_label
from common.task import load_task


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
    data = task.protocol("lists12").prepare(items)
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


def test_constant_unknown_scores_about_62_percent_on_lists12(shared_dir, tmp_path):
    """The official v0.01 lists give the real class mix (the audio is not
    needed): answering `_unknown_` always scores ~62% on `lists12`, which is
    why it is never put beside SUPERB or HEAR numbers."""
    import pandas as pd
    import soundfile as sf

    from common.data.speech_commands import _silence_items
    from common.probing.metrics import evaluate
    root = shared_dir / "realdata" / "speech_commands_v0.01"
    rows = [{"id": rel, "label": rel.split("/")[0], "split": split, "archive": "main", "on_second": True}
            for split, name in (("test", "testing_list.txt"), ("validation", "validation_list.txt"))
            for rel in (root / name).read_text().split()]
    noise = tmp_path / "_background_noise_"
    noise.mkdir()
    for name, seconds in (("doing_the_dishes", 95), ("dude_miaowing", 61), ("exercise_bike", 61),
                          ("pink_noise", 60), ("running_tap", 61), ("white_noise", 61)):  # v0.01's six
        sf.write(noise / f"{name}.wav", np.zeros(seconds * 100, np.float32), 100)
    items = pd.concat([pd.DataFrame(rows), pd.DataFrame(_silence_items(noise))], ignore_index=True)
    task = load_task(PROJECT_ROOT / "key_word_spotting")
    items.loc[items.index[:50], "split"] = "train"   # a training part for the fold check
    data = task.protocol("lists12").prepare(items)
    test = data.folds[0].test
    unknown = data.classes.index("_unknown_")
    scores = evaluate(data.y[test], np.full(len(test), unknown), data.classes)
    assert 0.60 < scores["accuracy"] < 0.64 and scores["macro_f1"] < 0.07
    assert not task.protocol("lists12").comparable
