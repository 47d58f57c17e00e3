"""Readers and protocols on the demo datasets (the official layouts)."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import PROJECT_ROOT

from common.data import DatasetError, PartialDownloadWarning
from common.data.audio import load_audio
from common.task import load_task

pytestmark = pytest.mark.filterwarnings("ignore::common.data.PartialDownloadWarning")


def task(folder):
    return load_task(PROJECT_ROOT / folder)


def test_esc50_folds_never_split_a_source_recording(demo_roots):
    esc = task("esc50_feature_fc")
    items = esc.read(demo_roots["esc50"]).items
    data = esc.protocol("official").prepare(items)
    assert len(data.folds) == 5
    for fold in data.folds:
        test_sources = set(data.items["src_file"].iloc[fold.test])
        train_sources = set(data.items["src_file"].iloc[np.concatenate([fold.train, fold.valid])])
        assert not test_sources & train_sources
    esc10 = items[esc.subsets["esc10"](items)]
    meta = pd.read_csv(demo_roots["esc50"] / "meta" / "esc50.csv")
    assert set(esc10["category"]) == set(meta.loc[meta["esc10"], "category"])
    assert 0 < len(esc10) < len(items)


def test_urbansound8k_every_awkward_file_decodes(demo_roots):
    items = task("urbansound8k_feature_fc").read(demo_roots["urbansound8k"]).items
    awkward = {a.path.name if hasattr(a, "path") else str(a) for a in demo_roots.awkward["urbansound8k"]}
    assert awkward
    subtypes = {sf.info(p).subtype for p in items["path"]}
    assert {"PCM_24", "FLOAT", "PCM_U8", "PCM_16"} <= subtypes
    for path in items["path"]:
        audio = load_audio(path, 16000)
        assert audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()


def test_librispeech_split_keeps_every_test_speaker_in_training(demo_roots):
    speaker = task("speaker_recognition")
    data = speaker.protocol("official").prepare(speaker.read(demo_roots["librispeech"]).items)
    fold = data.folds[0]
    speakers = data.items["speaker"].to_numpy()
    assert set(speakers[fold.test]) <= set(speakers[fold.train])
    assert len(fold.test) == pytest.approx(0.2 * len(data.items), abs=len(set(speakers)))


def test_icbhi_cycles_are_cut_at_annotated_times_on_the_official_split(demo_roots):
    icbhi = task("icbhi_feature_fc")
    root = demo_roots["icbhi"]
    items = icbhi.read(root).items
    split = pd.read_csv(root / "ICBHI_challenge_train_test.txt", sep=r"\s+", header=None, names=["rec", "split"])
    split_of = dict(zip(split["rec"], split["split"]))
    recordings = items[items["kind"] == "recording"]
    for rec in recordings.itertuples():
        assert rec.split == split_of[rec.id]
        cycles = pd.read_csv(root / f"{rec.id}.txt", sep=r"\s+", header=None, names=["s", "e", "c", "w"])
        mine = items[(items["kind"] == "cycle") & (items["recording"] == rec.id)]
        np.testing.assert_allclose(mine["clip_start"], cycles["s"])
        np.testing.assert_allclose(mine["clip_end"], cycles["e"])
        assert rec.label == ("abnormal" if (cycles["c"] + cycles["w"]).any() else "normal")
        assert list(mine["label"]) == [["normal", "crackle", "wheeze", "both"][c + 2 * w]
                                       for c, w in zip(cycles["c"], cycles["w"])]
    first = items[items["kind"] == "cycle"].iloc[0]
    audio = load_audio(first["path"], 8000, first["clip_start"], first["clip_end"])
    assert len(audio) == pytest.approx((first["clip_end"] - first["clip_start"]) * 8000, abs=2)
    data = icbhi.protocol("cycle").prepare(items)
    fold = data.folds[0]
    assert set(data.items["split"].iloc[fold.test]) == {"test"}
    patients = data.items["patient"].to_numpy()
    assert not set(patients[fold.valid]) & set(patients[fold.train])


def test_speech_commands_silence_windows_and_the_lists_protocols(demo_roots):
    kws = task("key_word_spotting")
    listing = kws.read(demo_roots["speech_commands"])
    assert listing.variant == "speech_commands_v0.02"
    items = listing.items
    silence = items[(items["label"] == "_silence_") & (items["archive"] == "main")]
    assert len(silence) > 0 and (silence["clip_end"] - silence["clip_start"] == 1.0).all()
    whole = silence[silence["on_second"]]
    assert (whole["clip_start"] % 1 == 0).all() and (silence[~silence["on_second"]]["clip_start"] % 1 == 0.5).all()
    for _, windows in whole.groupby("path"):  # train, then validation, then test along each file
        order = windows.sort_values("clip_start")["split"].map({"train": 0, "validation": 1, "test": 2})
        assert order.is_monotonic_increasing
    lists12 = kws.protocol("lists12")
    assert not lists12.comparable and "matches no published table" in lists12.description
    twelve = lists12.prepare(items)
    test = twelve.items.iloc[twelve.folds[0].test]
    assert "_silence_" in np.array(twelve.classes)[twelve.y[twelve.folds[0].test]]
    assert set(test["archive"]) == {"main"} and set(test["split"]) == {"test"} and test["on_second"].all()
    full = kws.protocol("full").prepare(items)
    assert len(full.classes) == 35 and "_silence_" not in full.classes and set(full.items["archive"]) == {"main"}


def test_superb_and_hear_train_on_the_lists_and_test_on_their_archives(demo_roots):
    kws = task("key_word_spotting")
    items = kws.read(demo_roots["speech_commands"]).items
    for name, archive, variant in (("superb", "speech_commands_test_set_v0.01", "speech_commands_v0.01"),
                                   ("hear", "speech_commands_test_set_v0.02", "speech_commands_v0.02")):
        protocol = kws.protocol(name)
        assert protocol.variant == variant and protocol.comparable
        data = protocol.prepare(items)
        fold = data.folds[0]
        parts = {part: data.items.iloc[getattr(fold, part)] for part in ("train", "valid", "test")}
        labels = np.array(data.classes)
        # test: the archive's 12 balanced folders, labels from the folder names
        assert set(parts["test"]["archive"]) == {archive}
        assert (parts["test"]["label"].value_counts() == 5).all() and len(parts["test"]) == 60
        assert set(labels[data.y[fold.test]]) == set(data.classes)
        # train / valid: the main archive by its lists; testing_list.txt is never used
        for part in ("train", "valid"):
            assert set(parts[part]["archive"]) == {"main"}
            words = parts[part][parts[part]["label"] != "_silence_"]
            assert "test" not in set(words["split"])
            assert "_silence_" in set(labels[data.y[getattr(fold, part)]])
        noise = parts["train"][parts["train"]["label"] == "_silence_"]
        valid_noise = parts["valid"][parts["valid"]["label"] == "_silence_"]
        if name == "superb":   # whole-second windows, the first 80% of each file train
            assert protocol.balanced_sampling and protocol.selected_by == "balanced_accuracy"
            assert noise["on_second"].all() and set(noise["split"]) == {"train"}
        else:                  # 0.5 s hop; running_tap validates, every other noise trains
            assert not protocol.balanced_sampling and protocol.selected_by == "accuracy"
            assert not noise["on_second"].all()
            assert {p.split("/")[-1] for p in valid_noise["path"]} == {"running_tap.wav"}
            assert "running_tap.wav" not in {p.split("/")[-1] for p in noise["path"]}
        # unknown: every word outside the 10 commands
        unknown = parts["train"][labels[data.y[fold.train]] == "_unknown_"]
        assert {"bed", "marvin", "visual"} <= set(unknown["label"]) and not set(unknown["label"]) & {"yes", "go"}
    # the demo's main archive is v0.02: SUPERB's numbers on it are flagged, HEAR's are not
    assert kws.protocol("superb").variant_notes("speech_commands_v0.02")
    assert not kws.protocol("hear").variant_notes("speech_commands_v0.02")


def test_missing_test_archive_is_named_in_one_sentence(demo_roots, tmp_path):
    import shutil
    root = tmp_path / "speech_commands_v0.02"
    shutil.copytree(demo_roots["speech_commands"], root)
    kws = task("key_word_spotting")
    items = kws.read(root).items
    assert set(items["archive"]) == {"main"}
    with pytest.raises(DatasetError, match=r"speech_commands_test_set_v0\.01\.tar\.gz.*beside or inside") as err:
        kws.protocol("superb").prepare(items)
    assert "\n" not in str(err.value)
    # inside the data root is found too, and a partial archive is reported like a partial download
    shutil.copytree(demo_roots["speech_commands"].parent / "speech_commands_test_set_v0.02",
                    root / "speech_commands_test_set_v0.02")
    with pytest.warns(PartialDownloadWarning, match="4,890"):
        listing = kws.read(root)
    assert not listing.complete and any("speech_commands_test_set_v0.02" in n for n in listing.notes)
    assert len(kws.protocol("hear").prepare(listing.items).folds[0].test) == 60


def test_librispeech_chapter_disjoint_protocol(demo_roots):
    speaker = task("speaker_recognition")
    data = speaker.protocol("chapters").prepare(speaker.read(demo_roots["librispeech"]).items)
    fold = data.folds[0]
    chapters, speakers = data.items["chapter"].to_numpy(), data.items["speaker"].to_numpy()
    assert not set(chapters[fold.test]) & set(chapters[np.concatenate([fold.train, fold.valid])])
    assert not set(chapters[fold.valid]) & set(chapters[fold.train])
    assert set(speakers[fold.test]) == set(speakers[fold.train]) == set(speakers)
    assert len(fold.valid) > 0


def test_missing_roots_and_metadata_say_what_to_do(tmp_path, demo_roots):
    esc = task("esc50_feature_fc")
    with pytest.raises(DatasetError, match="does not exist.*--data-root"):
        esc.read(tmp_path / "nowhere")
    (tmp_path / "ESC-50-master" / "audio").mkdir(parents=True)
    with pytest.raises(DatasetError, match="meta/esc50.csv not found"):
        esc.read(tmp_path)
    with pytest.raises(DatasetError, match="nsynth-train"):
        task("nsynth_feature_fc").read(tmp_path)
    with pytest.warns(PartialDownloadWarning, match="2,000"):
        assert not esc.read(demo_roots["esc50"]).complete
