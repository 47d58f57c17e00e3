"""Leaderboard (report.py): heads chosen on validation, bolding against the
spread, published numbers paired only on an exact setting; validation
metrics and default seeds of the runs; the plots written beside every run."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PROJECT_ROOT
from PIL import Image

from common.benchmark import main
from common.extraction.extract import extract_embeddings
from common.probing.evaluate import default_seeds, run_probes
from common.probing.training import DEFAULT_RECIPE, Recipe
from common.reporting.report import (
    PUBLISHED_COLUMNS,
    PublishedTableError,
    Setting,
    build_leaderboard,
    load_published,
    setting_of,
)
from common.reporting.report import TASKS as REPORT_TASKS
from common.reporting.report import main as report_main
from common.task import load_task

TASKS = ["esc50_feature_fc", "icbhi_feature_fc"]   # a k-fold task and a single-split one
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


def result_jsons(work):
    """The probe runs' result JSONs (the demo also writes separation results)."""
    return [json.loads(p.read_text()) for p in work.rglob("*.json")
            if "results" in p.parts and not p.name.endswith(".probe.json") and "source_separation" not in p.parts]


# --------------------------------------------------------------------------- result rows made by hand
BASE_ROW = {"task": "esc50", "variant": "esc50", "encoder": "mfcc", "store": "mfcc", "layer": "mfcc",
            "pooling": "mean", "head": "linear", "protocol": "official", "split": "official", "subset": "",
            "recipe_name": "grid-v2", "metric": "accuracy", "mean": 0.8, "std": 0.02, "valid_mean": 0.8,
            "valid_std": 0.02, "runs": 5, "seeds": "0", "macro_f1": 0.8, "dataset_complete": True,
            "created": "2026-01-01 00:00:00", "result_file": "x.json"}


def write_results(folder, rows):
    """results.csv of the given rows (each a change of BASE_ROW); returns its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{**BASE_ROW, **row} for row in rows]).to_csv(folder / "results.csv", index=False)
    return folder


def write_published(path, rows):
    base = {"source": "S", "citation": "a paper", "url": "https://example.org", "encoder": "E", "task": "esc50",
            "dataset_version": "esc50", "protocol": "official", "test_set": "folds", "validation": "carve",
            "probe": "linear", "metric": "accuracy", "value": 90.0, "note": ""}
    pd.DataFrame([{**base, **row} for row in rows], columns=PUBLISHED_COLUMNS).to_csv(path, index=False)
    return path


def test_the_head_is_chosen_on_validation_never_on_test(tmp_path):
    # store a: three_layer is better on test but worse on validation -> linear is shown
    # store b: the reverse -> three_layer is shown (the choice can go either way)
    results = write_results(tmp_path / "results", [
        {"store": "a", "head": "linear", "mean": 0.70, "valid_mean": 0.90},
        {"store": "a", "head": "three_layer", "mean": 0.95, "valid_mean": 0.85},
        {"store": "b", "head": "linear", "mean": 0.95, "valid_mean": 0.80},
        {"store": "b", "head": "three_layer", "mean": 0.70, "valid_mean": 0.88}])
    board = build_leaderboard([results], published=None)
    (column,) = board.columns
    cells = {e.store: e.cells[column] for e in board.entries}
    assert cells["a"].head == "linear" and cells["a"].mean == pytest.approx(70.0) and cells["a"].by_validation
    assert cells["b"].head == "three_layer" and cells["b"].mean == pytest.approx(70.0)
    assert "70.0 ± 2.0 (lin)" in board.markdown() and "70.0 ± 2.0 (3L)" in board.markdown()
    # both heads' validation and test numbers are in the CSV
    table = board.frame().set_index("encoder")
    assert table.loc["a", "ESC-50 three_layer test"] == pytest.approx(95.0)
    assert table.loc["a", "ESC-50 three_layer valid"] == pytest.approx(85.0)
    assert table.loc["a", "ESC-50 head chosen on"] == "validation"


def test_without_validation_numbers_the_linear_head_is_shown_and_flagged(tmp_path):
    results = write_results(tmp_path / "results", [
        {"head": "linear", "mean": 0.70, "valid_mean": "", "valid_std": ""},
        {"head": "three_layer", "mean": 0.95, "valid_mean": "", "valid_std": ""}])
    board = build_leaderboard([results], published=None)
    cell = board.entries[0].cells[board.columns[0]]
    assert cell.head == "linear" and not cell.by_validation and cell.text() == "70.0 ± 2.0 (lin?)"
    assert any(note.startswith("?:") for note in board.notes())


def test_bold_only_where_the_lead_exceeds_the_spread(tmp_path):
    def board_of(lead, std):
        results = write_results(tmp_path / f"{lead}-{std}" / "results", [
            {"store": "a", "mean": 0.80 + lead, "std": std}, {"store": "b", "mean": 0.80, "std": std}])
        return build_leaderboard([results], published=None)
    clear = board_of(0.05, 0.02)
    assert clear.best(clear.columns[0]).store == "a"
    assert "| a | **85.0 ± 2.0 (lin)** |" in clear.markdown()
    within = board_of(0.01, 0.02)
    assert within.best(within.columns[0]) is None and "**" not in within.markdown()
    single = write_results(tmp_path / "single" / "results", [
        {"store": "a", "mean": 0.9, "runs": 1}, {"store": "b", "mean": 0.5, "runs": 1}])
    assert "**" not in build_leaderboard([single], published=None).markdown()   # one run: no spread, no bold
    assert any("lead over the runner-up exceeds" in note for note in clear.notes())


def test_published_numbers_pair_only_on_the_exact_setting(tmp_path):
    published = write_published(tmp_path / "published.csv", [
        {"source": "EVAR", "encoder": "evar-linear", "validation": "carve", "probe": "linear", "value": 88.0},
        {"source": "HEAR", "encoder": "hear-mlp", "validation": "next-fold", "probe": "mlp", "value": 91.0},
        {"source": "X", "encoder": "wrong-version", "dataset_version": "esc50_v1", "value": 50.0},
        {"source": "X", "encoder": "wrong-test-set", "test_set": "random-20%", "value": 51.0}])
    results = write_results(tmp_path / "results", [
        {"store": "carved", "head": "linear", "validation": "carve", "refit": False},
        {"store": "carved", "head": "three_layer", "validation": "carve", "refit": False},
        {"store": "nextfold", "head": "linear", "validation": "next-fold"},
        {"store": "nextfold", "head": "three_layer", "validation": "next-fold"},
        {"store": "refitted", "head": "linear", "validation": "carve", "refit": True}])
    board = build_leaderboard([results], published=published)
    pairs = {(c.setting.validation, c.setting.probe): ([f"{e.store}/{h}" for e, h in c.ours],
                                                      [p.encoder for p in c.published]) for c in board.comparisons}
    # a linear result pairs with the linear source of its validation rule, the MLP result with the MLP source;
    # a linear next-fold result, an MLP carve result and a refitted probe have no published counterpart
    assert pairs == {("carve", "linear"): (["carved/linear"], ["evar-linear"]),
                     ("next-fold", "mlp"): (["nextfold/three_layer"], ["hear-mlp"])}
    text = board.comparison_markdown()
    assert "evar-linear" in text and "hear-mlp" in text and "wrong-version" not in text and "51.0" not in text
    assert any("Not held fixed" in note for note in board.notes())
    frame = board.comparison_frame()
    assert set(frame["kind"]) == {"measured", "published"} and set(frame["validation"]) == {"carve", "next-fold"}


def test_lists12_partial_data_subsets_and_random_splits_are_never_paired(tmp_path):
    # a published row that shares every other key with each of our results
    published = write_published(tmp_path / "published.csv", [
        {"task": "speech_commands", "dataset_version": "speech_commands_v0.02", "protocol": "full",
         "test_set": "testing_list", "validation": "official", "encoder": "sc-full"},
        {"validation": "next-fold", "encoder": "esc"}])
    sc = {"task": "speech_commands", "variant": "speech_commands_v0.02", "runs": 3}
    results = write_results(tmp_path / "results", [
        {**sc, "store": "lists", "protocol": "lists12"},                  # the renamed testing-list protocol
        {**sc, "store": "demo", "protocol": "full", "dataset_complete": False},
        {"store": "esc10", "subset": "esc10"},
        {**sc, "store": "other-variant", "protocol": "full", "comparable": False},   # e.g. features of v0.01
        {"store": "random", "split": "random"}])
    board = build_leaderboard([results], published=published)
    assert board.comparisons == []
    assert setting_of({**BASE_ROW, **sc, "protocol": "lists12"}) is None
    assert setting_of({**BASE_ROW, **sc, "protocol": "full", "dataset_complete": "True"}) == Setting(
        "speech_commands", "speech_commands_v0.02", "full", "testing_list", "official", "linear", "accuracy")
    # the same complete result on the `full` protocol does pair: the exclusions above are what kept it out
    complete = write_results(tmp_path / "complete" / "results", [{**sc, "store": "ok", "protocol": "full"}])
    assert [p.encoder for c in build_leaderboard([complete], published=published).comparisons
            for p in c.published] == ["sc-full"]
    # and the published table refuses a lists12 row outright
    with pytest.raises(PublishedTableError, match="lists12"):
        load_published(write_published(tmp_path / "bad.csv", [{"protocol": "lists12"}]))


def test_rows_written_before_validation_was_recorded_keep_the_rule_of_their_time(tmp_path):
    published = write_published(tmp_path / "published.csv", [
        {"validation": "next-fold", "probe": "mlp", "encoder": "hear"},
        {"validation": "carve", "probe": "linear", "encoder": "evar"}])
    results = write_results(tmp_path / "results", [{"head": "three_layer"}, {"head": "linear"}])
    board = build_leaderboard([results], published=published)
    assert [(c.setting.validation, [p.encoder for p in c.published]) for c in board.comparisons] == \
        [("next-fold", ["hear"])]


def test_malformed_published_tables_are_refused_with_the_line(tmp_path):
    with pytest.raises(PublishedTableError, match="line 2: value"):
        load_published(write_published(tmp_path / "a.csv", [{"value": 120}]))
    with pytest.raises(PublishedTableError, match="fill in probe"):
        load_published(write_published(tmp_path / "b.csv", [{"probe": ""}]))
    (tmp_path / "c.csv").write_text("source,value\nS,1\n")
    with pytest.raises(PublishedTableError, match="columns must be"):
        load_published(tmp_path / "c.csv")


def test_the_projects_published_table_names_its_settings_in_our_terms():
    # the separation rows (SDRi, SI-SDR in dB) are checked by tests/test_separation.py
    rows = [r for r in load_published() if r.setting.task != "source_separation"]
    assert {r.source for r in rows} >= {"EVAR", "X-ARES", "HEAR 2021", "ESC-50 paper"}
    tasks = {"esc50", "urbansound8k", "nsynth", "speech_commands"}
    for r in rows:
        assert r.setting.task in tasks and r.url.startswith("https://") and r.citation
        assert r.setting.metric == "accuracy" and 0 < r.value <= 100
        assert r.setting.validation in {"carve", "next-fold", "official", "test-fold", "none"}
    protocols = {r.setting.task: set() for r in rows}
    for r in rows:
        protocols[r.setting.task].add(r.setting.protocol)
    sc_tasks = {p for t, ps in protocols.items() if t == "speech_commands" for p in ps}
    assert sc_tasks <= {"full", "superb", "hear"}
    # linear-probe sources are linear, HEAR's head is an MLP
    by_source = {}
    for r in rows:
        by_source.setdefault(r.source, set()).add(r.setting.probe)
    assert by_source["EVAR"] == by_source["X-ARES"] == {"linear"} and by_source["HEAR 2021"] == {"mlp"}


# --------------------------------------------------------------------------- on real runs
def test_runs_record_validation_metrics_and_single_split_protocols_run_three_seeds(runs):
    results = result_jsons(runs)
    for result in results:
        task = load_task(PROJECT_ROOT / REPORT_TASKS[result["task"]][1])
        expected = default_seeds(task.protocol(result["protocol"]))
        assert tuple(result["seeds"]) == expected, result["result_file"]
        for run in result["runs"]:
            assert run["valid_metrics"]["num_test"] == run["sizes"]["valid"] > 0
        metric = result["primary_metric"]
        assert result["valid_summary"][metric]["n"] == len(result["runs"])
    assert {len(r["seeds"]) for r in results if r["task"] == "esc50"} == {1}
    assert {len(r["seeds"]) for r in results if r["task"] != "esc50"} == {3}
    rows = pd.concat([pd.read_csv(p) for p in runs.rglob("results/results.csv")])
    assert rows["valid_mean"].between(0, 1).all() and (rows.loc[rows["task"] != "esc50", "runs"] == 3).all()


def test_one_row_per_encoder_and_the_primary_metric_of_each_task(runs):
    board = build_leaderboard([runs], published=None)
    assert [e.label for e in board.entries] == ["mfcc", SECOND]
    icbhi = load_task(PROJECT_ROOT / "icbhi_feature_fc")
    assert len(board.columns) == 1 + len(icbhi.protocols)
    assert board.columns[0].title() == "ESC-50" and board.metrics[board.columns[0]] == "accuracy"
    assert {board.metrics[c] for c in board.columns if c.task == "icbhi"} == {"icbhi_score"}
    rows = pd.concat([pd.read_csv(p, dtype={"protocol": str}) for p in runs.rglob("results/results.csv")])
    mfcc = board.entries[0]
    for column in board.columns:
        mine = rows[(rows["store"] == "mfcc") & (rows["task"] == column.task) & (rows["protocol"] == column.protocol)]
        cell = mfcc.cells[column]
        chosen = mine.loc[mine["valid_mean"].idxmax()]
        assert cell.head == chosen["head"] and cell.mean == pytest.approx(100 * chosen["mean"])
        assert cell.std is not None and " ± " in cell.text() and cell.text().endswith(")†")
    # the second store only ran ESC-50, on its default layer; other layers on request
    assert set(board.entries[1].cells) == {board.columns[0]} and board.entries[1].layer == "mfcc"
    assert any("non-default-layer" in note for note in board.notes())
    every = build_leaderboard([runs], published=None, all_layers=True)
    assert sorted(e.label for e in every.entries) == ["mfcc", f"{SECOND}/logmel", f"{SECOND}/mfcc"]
    # demo data is incomplete: the project's published numbers never pair with it
    assert build_leaderboard([runs]).comparisons == []


def test_latest_row_wins_for_duplicates(runs, tmp_path):
    source = runs / "esc50_feature_fc" / "results" / "results.csv"
    rows = pd.read_csv(source, dtype=str, keep_default_na=False)
    first = rows[rows["store"] == "mfcc"].iloc[[0]].copy()
    first["mean"], first["created"] = "0.123", "2999-01-01 00:00:00"
    copy = tmp_path / "results"
    copy.mkdir()
    pd.concat([first, rows]).to_csv(copy / "results.csv", index=False)   # newest row written first
    board = build_leaderboard([copy], published=None)
    cell = board.entries[0].cells[board.columns[0]]
    assert cell.heads[first["head"].iloc[0]].mean == pytest.approx(12.3)


def test_a_weighted_sum_probe_is_labelled_as_one(runs, tmp_path):
    rows = pd.read_csv(runs / "esc50_feature_fc" / "results" / "results.csv", dtype=str, keep_default_na=False)
    weighted = rows[rows["store"] == SECOND].assign(layer="weighted").drop_duplicates(["head", "protocol"])
    board = build_leaderboard([write_results(tmp_path / "results", weighted.to_dict("records"))], published=None)
    assert [e.label for e in board.entries] == [f"{SECOND}/weighted"]


def test_report_finds_a_task_folder_added_by_copying_one(tmp_path, monkeypatch):
    from common.reporting import report
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "task.py").write_text("# a copied task folder\n")
    write_results(tmp_path / "mydata" / "results", [{"task": "mydata", "variant": "mydata"}])
    monkeypatch.setattr(report, "PROJECT_ROOT", tmp_path)
    assert report.result_files() == [(tmp_path / "mydata" / "results" / "results.csv", "")]
    assert [c.task for c in report.build_leaderboard(published=None).columns] == ["mydata"]


def test_the_run_table_tells_stores_and_validation_rules_apart():
    from common.reporting.results import markdown_table
    rows = [{**BASE_ROW, "validation": "carve", "refit": False},
            {**BASE_ROW, "store": "mfcc.max", "validation": "carve", "refit": False},
            {**BASE_ROW, "validation": "next-fold", "refit": True},
            {**BASE_ROW, "split": "random", "validation": "carve", "refit": False}]
    lines = markdown_table(rows).splitlines()[2:]
    cells = [[c.strip() for c in line.split("|")[2:4]] for line in lines]
    assert cells == [["official", "mfcc"], ["official", "mfcc (mfcc.max)"], ["official [next-fold, refit]", "mfcc"],
                     ["official [random split]", "mfcc"]]


def test_report_command_writes_markdown_csv_and_png(runs, tmp_path):
    (tmp_path / "comparisons.csv").write_text("left,by,an,earlier,report\n1,2,3,4,5\n")
    out = subprocess.run([sys.executable, str(PROJECT_ROOT / "report.py"), "--work-dir", str(runs),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| mfcc | " in out.stdout and "leaderboard.png" in out.stdout
    assert "| mfcc | " in (tmp_path / "leaderboard.md").read_text()
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(table["encoder"]) == ["mfcc", SECOND]
    assert {"ESC-50", "ESC-50 std", "ESC-50 head", "ESC-50 linear valid", "ESC-50 three_layer test"} <= \
        set(table.columns)
    check_png(tmp_path / "leaderboard.png")
    # demo data pairs with no published number: comparisons.csv says so instead of keeping an earlier one
    comparisons = pd.read_csv(tmp_path / "comparisons.csv")
    assert comparisons.empty and {"column", "protocol", "validation", "kind", "value"} <= set(comparisons.columns)
    with pytest.raises(SystemExit, match="error: no results.csv"):
        report_main(["--work-dir", str(tmp_path / "none"), "--out", str(tmp_path)])
    bad = write_published(tmp_path / "bad.csv", [{"value": "n/a"}])
    with pytest.raises(SystemExit, match="bad.csv line 2: value"):
        report_main(["--work-dir", str(runs), "--out", str(tmp_path), "--published", str(bad)])


def check_png(path, minimum=200):
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.load()   # decodes the whole file
    assert width > minimum and height > minimum, (path, image.size)


def test_every_run_has_decodable_plots(runs):
    results = result_jsons(runs)
    protocols = sum(len(load_task(PROJECT_ROOT / t).protocols) for t in TASKS)
    assert len(results) == 2 * protocols + 2 * 2   # 2 heads per protocol, + 2 layers x 2 heads of the second store
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

    from common.reporting import plots
    check_png(plots.layer_weights_plot([0.1, 0.5, 0.4], ["layer0", "layer1", "layer2"], tmp_path / "w.png", "w"))
    classes = [f"speaker{k}" for k in range(251)]
    check_png(plots.confusion_plot(np.eye(251) * 50 + 1, classes, tmp_path / "cm.png", "251 classes"))
    x, y = np.random.default_rng(0).normal(size=(60, 16)), np.arange(60) % 30
    first = plots.tsne_plot(x, y, classes[:30], tmp_path / "t.png", "t")
    stamp = first.stat().st_mtime_ns
    assert plots.tsne_plot(x, y, classes[:30], tmp_path / "t.png", "t").stat().st_mtime_ns == stamp  # reused
    check_png(first)
