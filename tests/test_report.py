"""Leaderboard (report.py), published reference rows, and the plots written
beside every run."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from common.benchmark import main
from common.extract import extract_embeddings
from common.probing import run_probes
from common.report import Column, build_leaderboard, load_reference, match_published, parse_reference
from common.task import load_task
from common.training import DEFAULT_RECIPE, Recipe
from conftest import PROJECT_ROOT

TASKS = ["esc50_feature_fc", "key_word_spotting", "icbhi_feature_fc"]
SECOND = "mfcc.all.mean+std"   # a second store: every layer, mean+std pooling


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("runs")
    demo = tmp_path_factory.mktemp("demo")
    main(["--demo", "--demo-dir", str(demo), "--work-dir", str(work), "--encoder", "mfcc", "--tasks", *TASKS,
          "--epochs", "30"])
    task = load_task(PROJECT_ROOT / "esc50_feature_fc")
    store = extract_embeddings(task, "mfcc", demo / "ESC-50-master", work_dir=work / "esc50_feature_fc",
                               layer="all", pooling="mean+std", progress=False, num_workers=0)
    assert store.path.name == SECOND
    run_probes(task, [store], layer="all", recipe=Recipe(**{**DEFAULT_RECIPE.to_dict(), "epochs": 30}),
               work_dir=work / "esc50_feature_fc", progress=False)
    return work


def measured_rows(work):
    return pd.concat([pd.read_csv(p, dtype={"protocol": str}) for p in work.rglob("results/results.csv")])


def test_one_row_per_encoder_and_the_primary_metric_of_each_task(runs):
    board = build_leaderboard([runs], reference=None)
    assert [e.label for e in board.measured] == ["mfcc", SECOND]
    assert not board.published
    labels = [c.label for c in board.columns]
    assert labels == ["ESC-50", "SC v2 full", "SC v2 hear", "SC v2 superb", "SC v2 lists12", "ICBHI recording",
                      "ICBHI cycle"]
    assert {c.label: board.metrics[c] for c in board.columns}["ICBHI cycle"] == "icbhi_score"
    assert board.metrics[Column("esc50", "esc50", "official")] == "accuracy"
    rows = measured_rows(runs)
    mfcc = board.measured[0]
    for column in board.columns:
        mine = rows[(rows["store"] == "mfcc") & (rows["task"] == column.task) & (rows["protocol"] == column.protocol)]
        cell = mfcc.cells[column]
        assert cell.mean == pytest.approx(100 * mine["mean"].max())
        assert cell.head == mine.loc[mine["mean"].idxmax(), "head"]
        assert set(mine["metric"]) == {board.metrics[column]}
    # ESC-50 has 5 folds: mean ± std; single-split tasks: no spread
    esc = mfcc.cells[board.columns[0]]
    assert esc.std is not None and " ± " in esc.text() and esc.text().endswith(")†")
    assert " ± " not in mfcc.cells[board.columns[1]].text()
    # the second store only ran ESC-50, on its default layer; other layers on request
    assert set(board.measured[1].cells) == {board.columns[0]} and board.measured[1].layer == "mfcc"
    assert any("non-default-layer" in note for note in board.notes())
    every = build_leaderboard([runs], reference=None, all_layers=True)
    assert sorted(e.label for e in every.measured) == ["mfcc", f"{SECOND}/logmel", f"{SECOND}/mfcc"]


def test_markdown_marks_the_better_head_and_the_best_encoder(runs):
    board = build_leaderboard([runs], reference=None)
    table = board.markdown().splitlines()
    assert table[0].startswith("| encoder | source | ESC-50 (acc.) |") and "ICBHI cycle (score)" in table[0]
    assert len(table) == 2 + 2
    esc = board.columns[0]
    best = board.best(esc)
    line = next(line for line in table if line.startswith(f"| {best.label} |"))
    assert f"**{best.cells[esc].text()}**" in line and ("(3L)" in line or "(lin)" in line)


def test_latest_row_wins_for_duplicates(runs, tmp_path):
    source = runs / "esc50_feature_fc" / "results" / "results.csv"
    rows = pd.read_csv(source, dtype=str, keep_default_na=False)
    first = rows[rows["store"] == "mfcc"].iloc[[0]].copy()
    first["mean"], first["created"] = "0.123", "2999-01-01 00:00:00"
    copy = tmp_path / "results"
    copy.mkdir()
    pd.concat([first, rows]).to_csv(copy / "results.csv", index=False)   # newest row written first
    board = build_leaderboard([copy], reference=None)
    cell = board.measured[0].cells[Column("esc50", "esc50", "official")]
    assert cell.heads[first["head"].iloc[0]][0] == pytest.approx(12.3)


def test_published_rows_beside_ours(runs, shared_dir):
    reference = shared_dir / "REFERENCE_NUMBERS.md"
    board = build_leaderboard([runs], reference=reference)
    published = {(e.encoder, e.source): e for e in board.published}
    esc, full, twelve = board.columns[:3]
    beats = published[("BEATs iter3", "EVAR linear evaluation")]
    assert beats.cells[esc].mean == pytest.approx(86.9) and beats.cells[full].mean == pytest.approx(89.4)
    assert twelve.protocol == "hear"
    assert published[("CVSSP PANNs", "HEAR 2021 leaderboard")].cells[twelve].mean == pytest.approx(61.8)
    # the 12-class protocol scored on testing_list.txt is in no published table
    assert not any(c.protocol == "lists12" for e in board.published for c in e.cells)
    assert published[("human listeners", "ESC-50 paper")].cells[esc].mean == pytest.approx(81.3)
    # X-ARES measured Speech Commands v1: not our v0.02 columns; only its ESC-50 value shows here
    assert set(published[("dasheng", "X-ARES")].cells) == {esc}
    table = board.markdown()
    assert "published [EVAR linear evaluation]" in table and "this benchmark" in table
    assert "41.4" not in table and "(published, not re-measured)" in " ".join(board.notes())
    # ICBHI has no published counterpart: no published value in its columns
    assert not any(c.task == "icbhi" for e in board.published for c in e.cells)


def test_reference_parser_matches_tasks_and_leaves_voxceleb_out(shared_dir):
    rows = load_reference(shared_dir / "REFERENCE_NUMBERS.md")
    by = {(r.encoder, r.source): r.values for r in rows}
    sc1 = Column("speech_commands", "speech_commands_v0.01", "full")
    assert by[("whisper-base", "X-ARES")][sc1] == pytest.approx(93.3)
    assert by[("Whisper base", "EVAR linear evaluation")][Column("nsynth", "nsynth", "official")] == 65.5
    assert len(by[("Whisper base", "EVAR linear evaluation")]) == 4          # VC1 left out
    assert len(by[("OpenL3", "HEAR 2021 leaderboard")]) == 2                 # NSynth pitch left out
    assert all(c.task != "speaker_id" for r in rows for c in r.values)
    assert match_published("VoxCeleb1") is None and match_published("SPCV2").protocol == "full"
    assert parse_reference("# nothing here\n") == []


def test_report_command_writes_markdown_csv_and_png(runs, tmp_path):
    out = subprocess.run([sys.executable, str(PROJECT_ROOT / "report.py"), "--work-dir", str(runs),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| mfcc | this benchmark |" in out.stdout and "leaderboard.png" in out.stdout
    assert "| mfcc | this benchmark |" in (tmp_path / "leaderboard.md").read_text()
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(table.loc[table["kind"] == "measured", "encoder"]) == ["mfcc", SECOND]
    assert {"ESC-50", "ESC-50 std", "ESC-50 head", "ICBHI cycle"} <= set(table.columns)
    check_png(tmp_path / "leaderboard.png")
    empty = subprocess.run([sys.executable, str(PROJECT_ROOT / "report.py"), "--work-dir", str(tmp_path / "none"),
                            "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert empty.returncode != 0 and empty.stderr.startswith("error: no results.csv")


def check_png(path, minimum=200):
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.load()   # decodes the whole file
    assert width > minimum and height > minimum, (path, image.size)


def test_every_run_has_decodable_plots(runs):
    results = [json.loads(p.read_text()) for p in runs.rglob("*.json")
               if "results" in p.parts and not p.name.endswith(".probe.json")]
    assert len(results) == 2 * 7 + 2 * 2   # 7 task protocols x 2 heads, + 2 layers x 2 heads of the second store
    for result in results:
        assert set(result["plots"]) == {"confusion", "curves", "tsne"}, result["result_file"]
        for path in result["plots"].values():
            check_png(path)
    layer_plots = sorted((runs / "esc50_feature_fc" / "results" / "esc50" / SECOND).glob("*-layers.png"))
    assert [p.name for p in layer_plots] == ["official-official-linear-layers.png",
                                             "official-official-three_layer-layers.png"]
    for path in layer_plots:
        check_png(path)
    pngs = list(runs.rglob("*.png"))
    assert all(p.stat().st_size > 5000 for p in pngs)


def test_layer_weights_and_large_confusion_plots(tmp_path):
    import numpy as np
    from common import plots
    check_png(plots.layer_weights_plot([0.1, 0.5, 0.4], ["layer0", "layer1", "layer2"], tmp_path / "w.png", "w"))
    classes = [f"speaker{k}" for k in range(251)]
    check_png(plots.confusion_plot(np.eye(251) * 50 + 1, classes, tmp_path / "cm.png", "251 classes"))
    x, y = np.random.default_rng(0).normal(size=(60, 16)), np.arange(60) % 30
    first = plots.tsne_plot(x, y, classes[:30], tmp_path / "t.png", "t")
    stamp = first.stat().st_mtime_ns
    assert plots.tsne_plot(x, y, classes[:30], tmp_path / "t.png", "t").stat().st_mtime_ns == stamp  # reused
    check_png(first)
