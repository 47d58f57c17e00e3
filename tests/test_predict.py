"""Saved probes and predict.py: round trip on demo data, folders, refusal of
a probe whose encoder settings no longer match."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT
from safetensors import safe_open

from common.benchmark import main
from common.data.audio import load_audio
from common.encoders import build_encoder
from common.extraction.store import FeatureStore
from common.probing.predict import Predictor, choose_probe, default_work_dirs, predict_main
from common.probing.probe_io import ProbeError, find_probes, load_probe
from common.task import load_task

CLEAN = ("crickets", "clock_alarm", "sea_waves")   # demo classes every probe learns


@pytest.fixture(scope="module")
def esc_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    demo = tmp_path_factory.mktemp("demo")
    main(["--demo", "--demo-dir", str(demo), "--work-dir", str(runs), "--encoder", "mfcc",
          "--tasks", "esc50_feature_fc", "--epochs", "40"])
    work = runs / "esc50_feature_fc"
    probe = work / "results" / "esc50" / "mfcc" / "mfcc" / "official-official-three_layer.probe.json"
    return work, demo / "ESC-50-master", probe


def predict(*args, cwd=None):
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "esc50_feature_fc" / "predict.py"), *map(str, args)],
                          cwd=cwd or PROJECT_ROOT / "esc50_feature_fc", capture_output=True, text=True, timeout=600)


def training_files(work, root, label):
    split = pd.read_csv(work / "results" / "esc50" / "splits" / "official-official.csv")
    train = set(split.loc[(split["fold"] == "fold1") & (split["part"] == "train"), "id"])
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    names = meta.loc[meta["filename"].isin(train) & (meta["category"] == label), "filename"]
    return [root / "audio" / n for n in sorted(names)]


def test_probe_is_saved_as_safetensors_and_json(esc_run):
    work, _, probe = esc_run
    info = json.loads(probe.read_text())
    assert info["fold"] == "fold1" and info["seed"] == 0 and info["head"] == "three_layer"
    assert info["encoder"] == "mfcc" and info["encoder_config"]["n_mfcc"] == 40 and info["pooling"] == "mean"
    assert info["sample_rate"] == 16000 and info["layer"] == "mfcc" and info["in_dim"] == 40
    assert len(info["classes"]) == 10 and info["protocol"] == "official" and info["split"] == "official"
    assert (work / "features" / "esc50" / "mfcc") == type(work)(info["store_path"])
    with safe_open(str(probe.with_name(info["weights_file"])), "np") as f:
        assert {"scaler_mean", "scaler_scale"} <= set(f.keys()) and any(k.startswith("model.") for k in f.keys())
    assert not list(work.rglob("*.pkl")) and not list(work.rglob("*.pt"))
    result = json.loads(probe.with_name("official-official-three_layer.json").read_text())
    assert result["probe_file"] == str(probe)


def test_predictor_embeds_like_the_store_and_knows_training_files(esc_run):
    work, root, probe = esc_run
    predictor = Predictor(load_probe(probe))
    features = FeatureStore(work / "features" / "esc50" / "mfcc").load()
    files = [f for label in CLEAN for f in training_files(work, root, label)[:2]]
    assert len(files) == 6
    x = predictor.embed([load_audio(f, 16000) for f in files])
    index = {i: k for k, i in enumerate(features.items["id"])}
    stored = features.embeddings["mfcc"][[index[f.name] for f in files]]
    np.testing.assert_allclose(x, stored, rtol=1e-4, atol=1e-4)
    table = predictor.predict_files(files, top_k=3)
    assert list(table["top1"]) == [label for label in CLEAN for _ in range(2)]
    assert (table["p1"] >= table["p2"]).all() and (table["p1"] <= 1).all()


def test_predict_command_on_a_file(esc_run, tmp_path):
    work, root, _ = esc_run
    file = training_files(work, root, "crickets")[0]
    out = predict(file, "--work-dir", work, "--head", "three_layer", "--top-k", "3")
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3 and lines[0][1] == "crickets" and float(lines[0][2]) > 0.5
    assert "three_layer" in out.stdout


def test_predict_command_on_a_folder_writes_one_row_per_file(esc_run, tmp_path, monkeypatch, capsys):
    work, root, _ = esc_run
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    files = training_files(work, root, "sea_waves")[:2] + training_files(work, root, "clock_alarm")[:2]
    for k, f in enumerate(files):
        shutil.copy(f, folder / ("sub" if k % 2 else "") / f.name)
    (folder / "notes.txt").write_text("not audio")
    monkeypatch.chdir(tmp_path)
    predict_main(load_task(PROJECT_ROOT / "esc50_feature_fc"),
                 [str(folder), "--work-dir", str(work.parent), "--top-k", "2"])   # a benchmark work root
    stdout = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "clips_predictions.csv")
    assert len(table) == 4 and list(table.columns) == ["file", "top1", "p1", "top2", "p2"]
    assert sorted(table["file"]) == sorted(str(p.relative_to(folder)) for p in folder.rglob("*.wav"))
    truth = {f.name: label for f, label in zip(files, ["sea_waves"] * 2 + ["clock_alarm"] * 2)}
    assert [truth[name.split("/")[-1]] for name in table["file"]] == list(table["top1"])
    assert "4 files" in stdout and "clips_predictions.csv" in stdout


def test_most_recent_matching_probe_is_chosen(esc_run):
    work, _, _ = esc_run
    task = load_task(PROJECT_ROOT / "esc50_feature_fc")
    found = find_probes([work], task="esc50")
    assert {info["head"] for _, info in found} == {"linear", "three_layer"}
    assert choose_probe(task, [work], head="linear").name == "official-official-linear.probe.json"
    assert choose_probe(task, [work]) == found[0][0]
    with pytest.raises(ProbeError, match="no saved esc50 probe with encoder hubert"):
        choose_probe(task, [work], encoder="hubert")
    assert default_work_dirs(task)[0] == task.folder


@pytest.mark.parametrize("change", ["config", "option"])
def test_mismatched_probe_is_refused_in_one_sentence(esc_run, tmp_path, change):
    _, root, probe = esc_run
    info = json.loads(probe.read_text())
    if change == "config":
        info["encoder_config"]["n_mels"] = 128        # features made with another encoder setting
    else:
        info["encoder_options"] = {"n_mfcc": "20"}    # the encoder would now be built differently
    copy = tmp_path / probe.name
    copy.write_text(json.dumps(info))
    shutil.copy(probe.with_name(info["weights_file"]), tmp_path / info["weights_file"])
    with pytest.raises(ProbeError, match="another encoder configuration"):
        Predictor(load_probe(copy))
    if change == "config":   # the command line, as a user meets it
        out = predict(root / "audio" / "1-1079-A-13.wav", "--probe", copy)
        assert out.returncode != 0 and "Traceback" not in out.stderr
        message = out.stderr.strip()
    else:
        with pytest.raises(SystemExit) as exit_info:
            predict_main(load_task(PROJECT_ROOT / "esc50_feature_fc"),
                         [str(root / "audio" / "1-1079-A-13.wav"), "--probe", str(copy)])
        message = str(exit_info.value.code)
    assert message.startswith("error: the saved probe") and "n_m" in message and len(message.splitlines()) == 1
    assert build_encoder("mfcc").config()["n_mfcc"] == 40


@pytest.mark.parametrize("stacked", [False, True])
def test_saved_probe_gives_the_trained_probabilities(tmp_path, stacked):
    from common.probing.probe_io import save_probe
    from common.probing.training import DEFAULT_RECIPE, Recipe, train_probe
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    shape = (60, 3, 8) if stacked else (60, 8)
    x = rng.normal(size=shape).astype(np.float32) + y.reshape(-1, *[1] * (len(shape) - 1))
    fit = train_probe("three_layer", x[::2], y[::2], x[1::2], y[1::2], 3,
                      Recipe(**{**DEFAULT_RECIPE.to_dict(), "epochs": 5}))
    info = {"classes": ["a", "b", "c"], "in_dim": 8, "num_layers": 3 if stacked else None, "task": "toy"}
    saved = load_probe(save_probe(fit, tmp_path / "toy", info))
    np.testing.assert_allclose(saved.predict_proba(x), fit.predict_proba(x), rtol=1e-5, atol=1e-6)
    assert (getattr(fit, "layer_weights", None) is not None) == stacked
    with pytest.raises(ProbeError, match="takes embeddings of shape"):
        saved.predict_proba(x.reshape(60, -1)[:, :5])


# --------------------------------------------------------------------------- refusals
def test_unreadable_files_are_listed_with_why_and_fail_the_command(esc_run, tmp_path, capsys):
    work, root, probe = esc_run
    task = load_task(PROJECT_ROOT / "esc50_feature_fc")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(SystemExit) as exit_info:
        predict_main(task, [str(bad), "--probe", str(probe)])
    assert exit_info.value.code == "error: 1 of 1 files could not be classified (listed above)"
    out = capsys.readouterr()
    assert "nan" not in out.out and f"failed: {bad}: cannot read {bad}" in out.err
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(training_files(work, root, "sea_waves")[0], folder / "good.wav")
    shutil.copy(bad, folder / "bad.wav")
    (folder / "gone.wav").symlink_to(folder / "missing.wav")
    with pytest.raises(SystemExit) as exit_info:
        predict_main(task, [str(folder), "--probe", str(probe), "--out", str(tmp_path / "mixed.csv")])
    assert "2 of 3 files could not be classified" in str(exit_info.value.code)
    table = pd.read_csv(tmp_path / "mixed.csv")
    assert table["error"].notna().sum() == 2 and table.loc[table["file"] == "good.wav", "top1"].item() == "sea_waves"


def tamper(probe, tmp_path, info_change=None, tensor_change=None):
    from safetensors.torch import load_file, save_file
    info = json.loads(probe.read_text())
    tensors = load_file(str(probe.with_name(info["weights_file"])))
    if info_change:
        info_change(info)
    if tensor_change:
        tensor_change(tensors)
    save_file(tensors, str(tmp_path / "w.probe.safetensors"))
    info.setdefault("weights_file", "w.probe.safetensors")
    if info.get("weights_file") == json.loads(probe.read_text())["weights_file"]:
        info["weights_file"] = "w.probe.safetensors"
    copy = tmp_path / "t.probe.json"
    copy.write_text(json.dumps(info))
    return copy


@pytest.mark.parametrize("info_change, tensor_change, message", [
    (lambda i: i.pop("classes"), None, "lacks the field.* classes"),
    (lambda i: i.pop("encoder"), None, "lacks the field.* encoder"),
    (lambda i: i.update(in_dim="forty"), None, "in_dim 'forty'"),
    (lambda i: i.update(classes=["only"]), None, "two or more distinct"),
    (lambda i: i.update(head="forest"), None, "head 'forest'"),
    (lambda i: i.update(weights_file="../w.probe.safetensors"), None, "bare file name"),
    (lambda i: i.update(weights_file="/etc/passwd"), None, "bare file name"),
    (None, lambda t: t.update(scaler_scale=t["scaler_scale"] * 0), "zero or negative"),
    (None, lambda t: t.update(scaler_mean=t["scaler_mean"] * float("nan")), "NaN or infinite"),
    (None, lambda t: t.update(scaler_mean=t["scaler_mean"][:3].contiguous()), "scaler_mean has shape \\[3\\]"),
    (None, lambda t: t.pop("scaler_scale"), "no scaler_scale"),
    (None, lambda t: t.update({"model.fc.weight": t["model.fc.weight"][:, :5].contiguous()}), "do not fit"),
])
def test_tampered_probes_are_refused_field_by_field(esc_run, tmp_path, info_change, tensor_change, message):
    _, _, probe = esc_run
    probe = probe.with_name(probe.name.replace("three_layer", "linear"))
    copy = tamper(probe, tmp_path, info_change, tensor_change)
    with pytest.raises(ProbeError, match=message) as info:
        load_probe(copy, ("task", "encoder", "pooling", "layer"))
    assert "\n" not in str(info.value)
