"""separate.py --probe: the classes separated are the saved probe's top
predictions (not the mixture's true classes); a probe of another task, of a
changed encoder or of classes the NMF bases do not know is refused in one
line before anything is written."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import PROJECT_ROOT
from safetensors.torch import load_file, save_file

from common.cli import extract_main, train_main
from common.probing.predict import Predictor
from common.probing.probe_io import load_probe
from common.separation.benchmarks import BENCHMARKS
from common.separation.cli import separate_main
from common.separation.nmf import save_bases, train_bases
from common.task import load_task


@pytest.fixture(scope="module")
def setup(demo_roots, tmp_path_factory):
    """A probe trained on demo ESC-50 mfcc features, NMF bases of the demo
    folds 1-3 and one demo mixture of folds 4-5 as a WAV."""
    root = demo_roots["esc50"]
    probes = tmp_path_factory.mktemp("esc50_work")
    esc50 = load_task(PROJECT_ROOT / "esc50_feature_fc")
    extract_main(esc50, ["--encoder", "mfcc", "--data-root", str(root), "--work-dir", str(probes)])
    train_main(esc50, ["--epochs", "2", "--head", "linear", "--work-dir", str(probes)])
    probe = probes / "results" / "esc50" / "mfcc" / "mfcc" / "official-official-linear.probe.json"
    work = tmp_path_factory.mktemp("separation_work")
    train_bases("esc50", root, work, folds=(1, 2, 3), n_components=4, max_frames=300, max_iter=50)
    _, mix = next(BENCHMARKS["esc50"].mixtures(root, mixture_list=root / "meta" / "separation_mixtures.csv"))
    wav = tmp_path_factory.mktemp("mixes") / "mix.wav"
    sf.write(wav, mix.mixture, mix.sample_rate)
    truth = {mix.info["target_class"], mix.info["interference_class"]}
    return probe, work, wav, truth


def separate(setup, out, *options):
    _, work, wav, _ = setup
    task = load_task(PROJECT_ROOT / "source_separation")
    return separate_main(task, [str(wav), "--method", "nmf", "--work-dir", str(work), "-o", str(out), *options])


def copy_probe(probe, folder, info_change=None, bias=None):
    """A copy of the saved probe, its JSON changed by `info_change(info)` and
    its output bias raised by `bias` ({class: amount})."""
    folder.mkdir(parents=True, exist_ok=True)
    info = json.loads(probe.read_text())
    tensors = load_file(str(probe.with_name(info["weights_file"])))
    for name, amount in (bias or {}).items():
        tensors["model.fc.bias"][info["classes"].index(name)] += amount
    save_file(tensors, str(folder / info["weights_file"]))
    if info_change:
        info_change(info)
    copied = folder / probe.name
    copied.write_text(json.dumps(info))
    return copied


def test_separated_classes_are_the_probes_top_predictions(setup, tmp_path):
    probe, _, wav, truth = setup
    expected = Predictor(load_probe(probe)).predict_files([wav], top_k=2).iloc[0]
    top = [expected["top1"], expected["top2"]]
    separate(setup, tmp_path / "out", "--probe", str(probe))
    record = json.loads((tmp_path / "out" / "mix" / "separation.json").read_text())
    assert record["query"]["classes"] == top and record["info"]["classes"] == top   # what NMF separated
    assert record["query"]["probe"] == str(probe)
    assert [c for c, _ in record["query"]["predicted"]] == top
    assert sorted(p.name for p in (tmp_path / "out" / "mix").glob("*.wav")) == sorted(["target.wav", f"{top[1]}.wav"])

    # a probe that always answers two classes the mixture does not hold: those are separated
    others = [c for c in json.loads(probe.read_text())["classes"] if c not in truth]
    forced = copy_probe(probe, tmp_path / "forced", bias={others[0]: 100.0, others[1]: 90.0})
    separate(setup, tmp_path / "forced_out", "--probe", str(forced))
    record = json.loads((tmp_path / "forced_out" / "mix" / "separation.json").read_text())
    assert record["info"]["classes"] == others[:2] and not truth & set(record["info"]["classes"])
    assert record["query"]["predicted"][0][1] > 0.99
    assert (tmp_path / "forced_out" / "mix" / f"{others[1]}.wav").is_file()
    # --query names the target; the probe's predictions are the rest
    separate(setup, tmp_path / "queried", "--probe", str(forced), "--query", others[2])
    record = json.loads((tmp_path / "queried" / "mix" / "separation.json").read_text())
    assert record["info"]["classes"] == [others[2], *others[:2]]


def _other_task(info):
    info["task"] = "urbansound8k"


def _other_encoder(info):
    info["encoder_config"]["n_mfcc"] = 20


@pytest.mark.parametrize("case, message", [
    ("task", "is a probe of task 'urbansound8k'; separate.py takes probes of esc50 or nsynth"),
    ("encoder", "another encoder configuration (n_mfcc: stored 20, now 40)"),
    ("probe_task", "--probe-task speaker_recognition classifies speaker_id"),
    ("bases", "predicts esc50 classes but the nmf separator separates nsynth classes"),
])
def test_unfit_probe_is_refused_in_one_line_and_nothing_is_written(setup, tmp_path, case, message):
    probe = setup[0]
    options = {"task": lambda: ["--probe", str(copy_probe(probe, tmp_path / "p", _other_task))],
               "encoder": lambda: ["--probe", str(copy_probe(probe, tmp_path / "p", _other_encoder))],
               "probe_task": lambda: ["--probe-task", "speaker_recognition"],
               "bases": lambda: ["--probe", str(probe), "--bases", str(save_bases(
                   {"bass": np.ones((513, 2), np.float32), "brass": np.ones((513, 2), np.float32)},
                   tmp_path / "nsynth", {"dataset": "nsynth", "sample_rate": 16000}))]}[case]()
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        separate(setup, out, *options)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not out.exists()


def test_source_separation_scripts_run_the_common_of_their_checkout(tmp_path):
    """Like the task folders' scripts (tests/test_checkout.py): no PYTHONPATH needed."""
    import os
    import subprocess
    import sys
    keep = shutil.ignore_patterns("__pycache__", "results", "models", "separated")
    for name in ("common", "source_separation"):
        shutil.copytree(PROJECT_ROOT / name, tmp_path / name, ignore=keep)
    cli = tmp_path / "common" / "separation" / "cli.py"
    cli.write_text(cli.read_text().replace('description=f"{task.title}: ', 'description=f"CLONE-MARKER {task.title}: '))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for script in ("separate.py", "evaluate.py", "train.py"):
        out = subprocess.run([sys.executable, script, "--help"], cwd=tmp_path / "source_separation", env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "CLONE-MARKER" in out.stdout, (script, out.stderr[-300:])
