"""The synthetic demo datasets (common/data/demo.py) follow the official layouts,
are deterministic, and carry the awkward files they claim."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from common.data.demo import NSYNTH_FAMILIES, SC_CORE, SC_WORDS, TASKS, make_demo_datasets, which_set

PROJECT_ROOT = Path(__file__).resolve().parents[1]

ESC50_ALL = ["dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow", "rain",
             "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
             "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
             "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
             "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
             "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
             "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
             "church_bells", "airplane", "fireworks", "hand_saw"]
ESC10 = {"dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing", "clock_tick",
         "helicopter", "chainsaw"}
US8K = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
        "gun_shot", "jackhammer", "siren", "street_music"]
NSYNTH_FIELDS = {"qualities", "pitch", "note", "instrument_source_str", "velocity", "instrument_str",
                 "instrument", "sample_rate", "qualities_str", "instrument_source", "note_str",
                 "instrument_family", "instrument_family_str"}
SC_V2 = {"backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
         "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
         "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return make_demo_datasets(out, seed=0, workers=2)


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_roots(demo):
    assert list(demo) == list(TASKS)
    out = demo["nsynth"]
    assert demo["esc50"] == out / "ESC-50-master"
    assert demo["urbansound8k"] == out / "UrbanSound8K"
    assert demo["librispeech"] == out / "LibriSpeech"
    assert demo["speech_commands"] == out / "speech_commands_v0.02"
    assert demo["icbhi"] == out / "ICBHI_final_database"
    for split in ("nsynth-train", "nsynth-valid", "nsynth-test"):
        assert (out / split / "examples.json").is_file()
    assert all(demo.counts[t] > 0 for t in TASKS)


def test_deterministic_and_replaceable(demo, tmp_path):
    """Same seed, same bytes (tasks regenerated alone give the files of the
    full run); a rerun replaces an earlier demo (stale files go); another
    seed gives other audio."""
    again = make_demo_datasets(tmp_path, tasks=["icbhi", "librispeech"], seed=0, workers=2)
    for task in again:
        first = _hashes(demo[task])
        assert first == _hashes(again[task]), task
        assert len(first) > 20
    (again["icbhi"] / "stale.wav").write_bytes(b"")
    other = make_demo_datasets(tmp_path, tasks=["icbhi"], seed=1)
    assert other["icbhi"] == again["icbhi"] and not (other["icbhi"] / "stale.wav").exists()
    assert _hashes(other["icbhi"]) != _hashes(demo["icbhi"])


def test_esc50(demo):
    root = demo["esc50"]
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    assert list(meta.columns) == ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    assert meta.esc10.dtype == bool and set(meta.esc10) == {True, False}
    assert sorted(meta.fold.unique()) == [1, 2, 3, 4, 5]
    for row in meta.itertuples():
        assert row.filename == f"{row.fold}-{row.src_file}-{row.take}-{row.target}.wav"
        assert ESC50_ALL[row.target] == row.category
        assert row.esc10 == (row.category in ESC10)
        assert (root / "audio" / row.filename).is_file()
    assert len(list((root / "audio").glob("*.wav"))) == len(meta)
    assert meta.category.nunique() >= 10
    assert (meta.groupby(["category", "fold"]).size() == 2).all()
    assert (meta.groupby("src_file").fold.nunique() == 1).all()  # takes of a source share a fold
    awkward = {a.path for a in demo.awkward["esc50"]}
    for f in sorted((root / "audio").glob("*.wav")):
        info = sf.info(str(f))
        assert info.samplerate == 44100 and info.frames == 5 * 44100
        if f not in awkward:
            assert info.channels == 1 and info.subtype == "PCM_16"


def test_urbansound8k(demo):
    root = demo["urbansound8k"]
    meta = pd.read_csv(root / "metadata" / "UrbanSound8K.csv")
    assert list(meta.columns) == ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID",
                                  "class"]
    assert dict(zip(meta.classID, meta["class"])) == dict(enumerate(US8K))
    assert set(meta.salience) == {1, 2}
    assert (meta.groupby("fold").classID.nunique() == 10).all() and meta.fold.nunique() == 10
    assert (meta.groupby("fsID").fold.nunique() == 1).all()
    pattern = re.compile(r"^(\d+)-(\d)-(\d+)-(\d+)\.wav$")
    for row in meta.itertuples():
        m = pattern.match(row.slice_file_name)
        assert m and int(m.group(1)) == row.fsID and int(m.group(2)) == row.classID
        path = root / "audio" / f"fold{row.fold}" / row.slice_file_name
        info = sf.info(str(path))
        assert abs((row.end - row.start) - info.duration) < 1e-3
        assert info.duration <= 4.0 + 1e-6
    assert len(list((root / "audio").glob("fold*/*.wav"))) == len(meta)


def test_nsynth(demo):
    out = demo["nsynth"]
    family_ids = {}
    instruments = {}
    for split in ("nsynth-train", "nsynth-valid", "nsynth-test"):
        examples = json.loads((out / split / "examples.json").read_text())
        assert examples
        for key, ex in examples.items():
            assert set(ex) == NSYNTH_FIELDS
            assert key == ex["note_str"]
            assert re.fullmatch(r"[a-z_]+_(acoustic|electronic|synthetic)_\d{3}-\d{3}-\d{3}", key)
            assert key.startswith(ex["instrument_str"] + "-")
            assert ex["note_str"].endswith(f"-{ex['pitch']:03d}-{ex['velocity']:03d}")
            assert NSYNTH_FAMILIES[ex["instrument_family"]] == ex["instrument_family_str"]
            assert ex["instrument_str"].startswith(ex["instrument_family_str"] + "_")
            assert ex["sample_rate"] == 16000 and len(ex["qualities"]) == 10
            family_ids.setdefault(split, set()).add(ex["instrument_family"])
            instruments.setdefault(split, set()).add(ex["instrument_str"])
            info = sf.info(str(out / split / "audio" / f"{key}.wav"))
            assert (info.samplerate, info.frames, info.channels) == (16000, 64000, 1)
        assert len(list((out / split / "audio").glob("*.wav"))) == len(examples)
    assert family_ids["nsynth-train"] == set(range(11))
    assert family_ids["nsynth-test"] == family_ids["nsynth-valid"] == set(range(11)) - {9}
    assert not instruments["nsynth-train"] & (instruments["nsynth-valid"] | instruments["nsynth-test"])
    assert NSYNTH_FAMILIES == ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                               "string", "synth_lead", "vocal"]


def test_nsynth_fields_match_real(demo, shared_dir):
    real = shared_dir / "realdata" / "nsynth" / "nsynth-test" / "examples.json"
    if not real.is_file():
        pytest.skip("no real NSynth subset")
    real_ex = next(iter(json.loads(real.read_text()).values()))
    ours = next(iter(json.loads((demo["nsynth"] / "nsynth-test" / "examples.json").read_text()).values()))
    assert list(ours) == list(real_ex)
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in real_ex.items()}


def test_librispeech(demo):
    root = demo["librispeech"]
    speakers = {}
    for subset in ("train-clean-100", "test-clean"):
        flacs = sorted((root / subset).glob("*/*/*.flac"))
        assert flacs
        for trans in (root / subset).glob("*/*/*.trans.txt"):
            spk, ch = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{spk}-{ch}.trans.txt"
            ids = []
            for line in trans.read_text().splitlines():
                uid, text = line.split(" ", 1)
                assert re.fullmatch(rf"{spk}-{ch}-\d{{4}}", uid) and text == text.upper() and text.strip()
                ids.append(uid)
            assert sorted(f.stem for f in trans.parent.glob("*.flac")) == sorted(ids)
        for f in flacs:
            info = sf.info(str(f))
            assert info.format == "FLAC" and info.samplerate == 16000 and info.channels == 1
        speakers[subset] = {f.parent.parent.name for f in flacs}
        for spk in speakers[subset]:
            chapters = list((root / subset / spk).iterdir())
            assert len(chapters) == (3 if subset == "train-clean-100" else 1)
    assert len(speakers["train-clean-100"]) >= 8
    assert not speakers["train-clean-100"] & speakers["test-clean"]
    listed = {line.split("|")[0].strip() for line in (root / "SPEAKERS.TXT").read_text().splitlines()
              if not line.startswith(";")}
    assert listed == speakers["train-clean-100"] | speakers["test-clean"]


def test_speech_commands(demo):
    root = demo["speech_commands"]
    words = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert words == SC_V2 == set(SC_WORDS) and set(SC_CORE) <= words
    assert (root / "README.md").is_file() and (root / "LICENSE").is_file()
    clips = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav")
                   if not p.parent.name.startswith("_"))
    lists = {}
    for name, split in (("validation_list.txt", "validation"), ("testing_list.txt", "testing")):
        lines = (root / name).read_text().splitlines()
        assert lines and all((root / line).is_file() for line in lines)
        lists[split] = set(lines)
    assert not lists["validation"] & lists["testing"]
    side = {}
    for rel in clips:
        assert re.fullmatch(r"[a-z]+/[0-9a-f]{8}_nohash_\d+\.wav", rel)
        split = ("validation" if rel in lists["validation"] else
                 "testing" if rel in lists["testing"] else "training")
        assert split == which_set(rel)  # the official hashing
        assert side.setdefault(rel.split("/")[1].split("_")[0], split) == split
    assert set(side.values()) == {"training", "validation", "testing"}
    per_word = defaultdict(set)
    for rel in clips:
        per_word[rel.split("/")[0]].add(rel in lists["testing"])
    assert all(v == {True, False} for v in per_word.values())  # every word in train and test
    for rel in clips:
        info = sf.info(str(root / rel))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.frames <= 16000
    noise = root / "_background_noise_"
    assert (noise / "README.md").is_file()
    wavs = sorted(noise.glob("*.wav"))
    assert {"white_noise.wav", "pink_noise.wav", "running_tap.wav"} <= {w.name for w in wavs}
    for w in wavs:
        info = sf.info(str(w))
        assert info.samplerate == 16000 and 10.0 <= info.duration <= 20.0


def test_icbhi(demo):
    root = demo["icbhi"]
    wavs = sorted(root.glob("*.wav"))
    split = dict(line.split("\t") for line in
                 (root / "ICBHI_challenge_train_test.txt").read_text().splitlines())
    diagnosis = dict(line.split("\t") for line in
                     (root / "ICBHI_Challenge_diagnosis.txt").read_text().splitlines())
    assert sorted(split) == [w.stem for w in wavs]
    assert set(split.values()) == {"train", "test"}
    pattern = re.compile(r"^(\d{3})_(\d+b\d)_(Tc|Al|Ar|Pl|Pr|Ll|Lr)_(sc|mc)_(AKGC417L|Meditron|Litt3200|LittC2SE)$")
    side, rates, cycle_classes = {}, set(), defaultdict(set)
    recording_label = defaultdict(set)
    for w in wavs:
        m = pattern.match(w.stem)
        assert m, w.name
        patient = m.group(1)
        assert patient in diagnosis
        assert side.setdefault(patient, split[w.stem]) == split[w.stem]  # patient-level split
        info = sf.info(str(w))
        rates.add(info.samplerate)
        assert 10.0 <= info.duration <= 20.0
        abnormal = False
        for line in (w.with_suffix(".txt")).read_text().splitlines():
            fields = line.split("\t")
            assert len(fields) == 4
            assert all(re.fullmatch(r"\d+\.\d{3}", f) for f in fields[:2])
            start, end, crackle, wheeze = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
            assert 0 <= start < end <= info.duration and 1.5 - 1e-3 <= end - start <= 4.0 + 1e-3
            assert crackle in (0, 1) and wheeze in (0, 1)
            cycle_classes[split[w.stem]].add((crackle, wheeze))
            abnormal |= bool(crackle or wheeze)
        recording_label[split[w.stem]].add(abnormal)
    assert rates == {4000, 10000, 44100}
    assert set(diagnosis) == set(side)
    n_test = sum(v == "test" for v in side.values())
    assert 0.3 <= n_test / len(side) <= 0.5
    for s in ("train", "test"):
        assert recording_label[s] == {True, False}
    assert cycle_classes["train"] == {(0, 0), (1, 0), (0, 1), (1, 1)}


def test_awkward_files(demo):
    kinds = {}
    for task, files in demo.awkward.items():
        for a in files:
            assert a.path.is_file() and a.path.is_relative_to(demo[task])
            info = sf.info(str(a.path))
            for key, value in a.expect.items():
                if key == "duration_max":
                    assert info.duration <= value, a
                elif key == "duration_min":
                    assert info.duration >= value, a
                else:
                    assert getattr(info, key) == value, a
            kinds.setdefault(task, []).append(a.expect)
    us = kinds["urbansound8k"]
    for expect in ({"subtype": "PCM_24"}, {"subtype": "FLOAT"}, {"subtype": "PCM_U8"}, {"channels": 2},
                   {"samplerate": 8000}, {"samplerate": 22050}, {"samplerate": 48000}):
        assert expect in us
    assert any("duration_max" in e for e in us)
    assert {"channels": 2} in kinds["esc50"] and {"subtype": "PCM_24"} in kinds["esc50"]
    assert kinds["speech_commands"] and kinds["librispeech"] and kinds["icbhi"]
    assert "nsynth" not in kinds


def test_refuses_to_overwrite_foreign_data(tmp_path):
    real = tmp_path / "ESC-50-master"
    real.mkdir()
    (real / "precious.txt").write_text("real data")
    with pytest.raises(FileExistsError):
        make_demo_datasets(tmp_path, tasks=["esc50"])
    assert (real / "precious.txt").read_text() == "real data"
    # the command line: one line and a non-zero exit; a nonsense seed is refused before anything is written
    from common.data.demo import main
    with pytest.raises(SystemExit) as end:
        main(["--out", str(tmp_path), "--tasks", "esc50"])
    assert str(end.value).startswith("error: ") and "nothing was deleted" in str(end.value)
    with pytest.raises(SystemExit) as end:
        main(["--out", str(tmp_path / "new"), "--seed", "-1"])
    assert end.value.code == 2 and not (tmp_path / "new").exists()


def test_cli_help():
    res = subprocess.run([sys.executable, "-m", "common.data.demo", "--help"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--out" in res.stdout and "--seed" in res.stdout
