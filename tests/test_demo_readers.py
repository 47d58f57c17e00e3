"""Readers and protocols on the demo datasets (the official layouts)."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from common.audio import load_audio
from common.datasets import DatasetError, PartialDownloadWarning
from common.task import load_task
from conftest import PROJECT_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::common.datasets.PartialDownloadWarning")


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


def test_speech_commands_silence_windows_and_twelve_classes(demo_roots):
    kws = task("key_word_spotting")
    listing = kws.read(demo_roots["speech_commands"])
    assert listing.variant == "speech_commands_v0.02"
    items = listing.items
    silence = items[items["label"] == "_silence_"]
    assert len(silence) > 0 and (silence["clip_end"] - silence["clip_start"] == 1.0).all()
    for _, windows in silence.groupby("path"):  # train, then validation, then test along each file
        order = windows.sort_values("clip_start")["split"].map({"train": 0, "validation": 1, "test": 2})
        assert order.is_monotonic_increasing
    twelve = kws.protocol("12").prepare(items)
    assert "_silence_" in np.array(twelve.classes)[twelve.y[twelve.folds[0].test]]
    full = kws.protocol("full").prepare(items)
    assert len(full.classes) == 35 and "_silence_" not in full.classes


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
