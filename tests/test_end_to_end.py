"""The README's main job and the task-folder commands, end to end on demo data."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PROJECT_ROOT

from common.benchmark import main
from common.probing.training import DEFAULT_RECIPE

# mfcc on the demo data: the primary metric must beat chance by this margin
CHANCE = {"esc50": 0.10, "urbansound8k": 0.10, "nsynth": 1 / 11, "speaker_id": 1 / 8,
          "speech_commands": 1 / 35, "icbhi": 0.5}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_dir):
    runs = tmp_path_factory.mktemp("runs")
    rows = main(["--demo", "--demo-dir", str(demo_dir), "--work-dir", str(runs), "--encoder", "mfcc"])
    return runs, pd.DataFrame(rows)


def test_demo_runs_every_task_protocol_and_head(demo_run):
    _, rows = demo_run
    expected = {("esc50", "official"), ("urbansound8k", "official"), ("nsynth", "official"),
                ("speaker_id", "official"), ("speaker_id", "chapters"), ("speech_commands", "full"),
                ("speech_commands", "lists12"), ("speech_commands", "superb"), ("speech_commands", "hear"),
                ("icbhi", "recording"), ("icbhi", "cycle")}
    assert set(zip(rows["task"], rows["protocol"])) == expected
    assert (rows.groupby(["task", "protocol"])["head"].apply(set) == {"linear", "three_layer"}).all()
    assert set(rows.loc[rows["task"] == "icbhi", "metric"]) == {"icbhi_score"}


def test_demo_includes_separation_with_the_baselines_and_nmf(demo_run):
    runs, _ = demo_run
    table = pd.read_csv(runs / "source_separation" / "results" / "separation_results.csv").set_index("method")
    assert set(table.index) == {"mixture", "oracle_irm", "nmf"}
    assert table.loc["mixture", "sdri"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["oracle_irm", "sdri"] > table.loc["nmf", "sdri"] > 3


def test_demo_probes_are_well_above_chance(demo_run):
    _, rows = demo_run
    for (task, protocol), group in rows.groupby(["task", "protocol"]):
        best = group["mean"].astype(float).max()
        if protocol == "lists12":  # _unknown_ dominates: judge the balanced score
            best = group["macro_f1"].astype(float).max()
            assert best > 3 / 12, (task, protocol, best)
        elif protocol in ("superb", "hear"):  # 12 balanced test classes
            assert best > 1 / 12 + 0.2, (task, protocol, best)
        else:
            assert best > CHANCE[task] + 0.2, (task, protocol, best)


def test_results_files_hold_folds_protocol_and_metrics(demo_run):
    runs, rows = demo_run
    esc = rows[(rows["task"] == "esc50") & (rows["head"] == "linear")].iloc[0]
    result = json.loads(open(esc["result_file"]).read())
    assert result["protocol"] == "official" and result["split"] == "official"
    assert sorted({r["fold"] for r in result["runs"]}) == [f"fold{k}" for k in range(1, 6)]
    assert {"mean", "std"} <= set(result["summary"]["accuracy"])
    run = result["runs"][0]
    assert {"accuracy", "macro_f1", "per_class_recall", "confusion_matrix"} <= set(run["metrics"])
    assert len(run["metrics"]["confusion_matrix"]) == len(result["classes"])
    assert result["recipe"]["lrs"] and result["recipe"]["name"] == DEFAULT_RECIPE.name
    split = pd.read_csv(result["split_file"])
    assert set(split["part"]) == {"train", "valid", "test"}
    assert (result["validation"], result["refit"], result["selection_metric"]) == ("carve", False, "accuracy")
    assert run["valid_metrics"]["accuracy"] == pytest.approx(max(g["best_valid_acc"] for g in run["grid"]))
    icbhi = json.loads(open(rows[rows["task"] == "icbhi"].iloc[0]["result_file"]).read())
    assert {"sensitivity", "specificity", "icbhi_score", "accuracy"} <= set(icbhi["summary"])
    # ICBHI picks lr and epoch by its score, not by accuracy
    assert icbhi["selection_metric"] == "icbhi_score"
    for run in icbhi["runs"]:
        chosen = next(g for g in run["grid"] if g["lr"] == run["lr"])
        assert chosen["epoch"] == run["epoch"]
        assert chosen["best_valid_score"] == max(g["best_valid_score"] for g in run["grid"])
        assert run["valid_metrics"]["icbhi_score"] == pytest.approx(chosen["best_valid_score"])
    superb = json.loads(open(rows[(rows["protocol"] == "superb")].iloc[0]["result_file"]).read())
    assert superb["balanced_sampling"] and superb["selection_metric"] == "balanced_accuracy"
    assert not superb["protocol_comparable"] and "speech_commands_v0.01" in " ".join(superb["dataset_notes"])
    assert set(rows["selection_metric"]) == {"accuracy", "balanced_accuracy", "icbhi_score"}
    table = pd.read_csv(runs / "esc50_feature_fc" / "results" / "results.csv")
    assert len(table) == 2 and set(table["head"]) == {"linear", "three_layer"}


def run(folder, *args):
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT / folder, capture_output=True, text=True,
                          timeout=600)


def test_task_folder_commands_as_the_readme_writes_them(demo_roots, tmp_path):
    work = str(tmp_path / "work")
    out = run("esc50_feature_fc", "extract.py", "--encoder", "mfcc", "--data-root", str(demo_roots["esc50"]),
              "--work-dir", work)
    assert out.returncode == 0, out.stderr
    again = run("esc50_feature_fc", "extract.py", "--encoder", "mfcc", "--data-root", str(demo_roots["esc50"]),
                "--work-dir", work)
    assert "reused" in again.stdout
    out = run("esc50_feature_fc", "train.py", "--epochs", "100", "--work-dir", work)
    assert out.returncode == 0, out.stderr
    assert "| esc50 | official | mfcc |" in out.stdout
    refit = run("esc50_feature_fc", "train.py", "--validation", "next-fold", "--refit", "--epochs", "20",
                "--head", "linear", "--work-dir", work, "--no-plots")
    assert refit.returncode == 0, refit.stderr
    table = pd.read_csv(tmp_path / "work" / "results" / "results.csv")
    last = table.iloc[-1]
    assert (last["validation"], bool(last["refit"])) == ("next-fold", True)
    result = json.loads(open(last["result_file"]).read())
    assert result["validation"] == "next-fold" and result["refit"] and all(r["refit"] for r in result["runs"])
    assert all(r["sizes"]["valid"] == r["sizes"]["test"] for r in result["runs"])  # a whole fold validates
    assert result["result_file"].endswith("official-official-next-fold-refit-linear.json")
    seeds = run("esc50_feature_fc", "train.py", "--split", "random", "--recipe", "seeds", "--epochs", "3",
                "--head", "linear", "--subset", "esc10", "--work-dir", work)
    assert seeds.returncode == 0, seeds.stderr
    assert "official (esc10) [random split]" in seeds.stdout


def test_task_folder_errors_are_one_sentence(tmp_path):
    out = run("esc50_feature_fc", "extract.py", "--encoder", "mfcc", "--data-root", str(tmp_path / "missing"))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error:") and "--data-root" in out.stderr
    out = run("nsynth_feature_fc", "train.py", "--work-dir", str(tmp_path))
    assert out.returncode != 0 and "run `python extract.py" in out.stderr
    out = run("key_word_spotting", "extract.py", "--help")
    assert out.returncode == 0 and "--max-batch-seconds" in out.stdout


def test_benchmark_takes_hears_validation_rule_and_refit(demo_run, demo_dir):
    """run_benchmark.py --validation next-fold --refit reaches the fold tasks'
    probes: the fold after the test fold validates and the probe is refit."""
    runs, _ = demo_run   # features are reused: only the probes run again
    rows = main(["--demo", "--demo-dir", str(demo_dir), "--work-dir", str(runs), "--encoder", "mfcc",
                 "--tasks", "esc50_feature_fc", "--validation", "next-fold", "--refit", "--epochs", "5"])
    result = json.loads(open(rows[0]["result_file"]).read())
    assert (result["validation"], result["refit"]) == ("next-fold", True)
    split = pd.read_csv(result["split_file"])
    folds = pd.read_csv(demo_dir / "ESC-50-master" / "meta" / "esc50.csv").set_index("filename")["fold"]
    first = split[split["fold"] == split["fold"].iloc[0]]
    test_fold = folds[first.loc[first["part"] == "test", "id"].map(lambda i: i.split("/")[-1])].unique()
    valid_fold = folds[first.loc[first["part"] == "valid", "id"].map(lambda i: i.split("/")[-1])].unique()
    assert len(test_fold) == 1 and list(valid_fold) == [test_fold[0] % 5 + 1]
    assert all(r["refit"] for r in result["runs"])


def test_train_py_prints_a_protocol_note_in_one_line(demo_run, tmp_path):
    """superb on the demo's Speech Commands v0.02 is not comparable with the
    published v0.01 numbers: train.py says so as one `warning:` line, without
    the Python source line a raw warning carries."""
    runs, _ = demo_run
    shutil.copytree(runs / "key_word_spotting" / "features", tmp_path / "features")
    out = run("key_word_spotting", "train.py", "--protocol", "superb", "--head", "linear", "--epochs", "1",
              "--seeds", "0", "--no-plots", "--work-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    notes = [line for line in out.stderr.splitlines() if "protocol superb is defined on" in line]
    assert notes and all(line.startswith("warning: protocol superb") for line in notes), out.stderr
    assert "warnings.warn" not in out.stderr


def test_benchmark_takes_the_encoders_weights_and_options(demo_roots, tmp_path):
    """run_benchmark.py reaches a checkpoint outside pretrained_models/ (here
    a tiny 1 s Whisper) and refuses a bad --encoder-option before any data
    is read, like extract.py."""
    from test_transformers_encoders import make_whisper
    make_whisper(tmp_path / "models", max_source_positions=50, chunk_length=1)
    runs = tmp_path / "runs"
    common = ["--data-root", str(demo_roots["esc50"].parent), "--work-dir", str(runs), "--encoder", "whisper",
              "--tasks", "esc50_feature_fc"]
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--encoder-option", "layers=2"])
    assert exit_info.value.code.startswith("error: unknown option layers for WhisperEncoder")
    assert not runs.exists()
    rows = main([*common, "--pretrained-dir", str(tmp_path / "models"), "--epochs", "1", "--seeds", "0"])
    assert {row["encoder"] for row in rows} == {"whisper"} and len(rows) == 2
    meta = json.loads(next(runs.glob("esc50_feature_fc/features/*/whisper/meta.json")).read_text())
    assert meta["settings"]["window_seconds"] == 1.0 and meta["complete"]
