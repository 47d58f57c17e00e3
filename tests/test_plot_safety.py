"""A figure can fail, or crash its plotting library, without costing the
run: results are written first and figures are drawn in child processes."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from crashing_figures import raise_error, segfault
from toy import make_toy_task

from common.extraction.extract import extract_embeddings
from common.probing.evaluate import evaluate_features
from common.probing.training import DEFAULT_RECIPE, Recipe
from common.reporting import plots

QUICK = Recipe(**{**DEFAULT_RECIPE.to_dict(), "epochs": 3})


def test_a_child_that_segfaults_is_reported_not_fatal():
    with pytest.raises(plots.PlotError, match="killed by SIGSEGV"):
        plots.draw_in_child(segfault)
    with pytest.raises(plots.PlotError, match="ValueError: no figure today"):
        plots.draw_in_child(raise_error)


@pytest.fixture(scope="module")
def toy_features(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    task = make_toy_task(root / "data")
    store = extract_embeddings(task, "mfcc", root / "data", work_dir=root / "work", progress=False, num_workers=0)
    return task, store, root / "work"


def run(task, features, work, **kw):
    return evaluate_features(task, features, "mfcc", "linear", "official", recipe=QUICK, work_dir=work,
                             store_name="mfcc", progress=False, **kw)


def test_identical_embeddings_skip_tsne_with_a_note_and_keep_the_results(toy_features, tmp_path):
    task, store, _ = toy_features
    features = store.load()
    features.embeddings["mfcc"] = np.zeros_like(features.embeddings["mfcc"])   # e.g. a dataset of silent clips
    with pytest.warns(UserWarning, match="t-SNE skipped: only 1 distinct embedding"):
        result = run(task, features, tmp_path)
    saved = json.loads(open(result["result_file"]).read())
    assert saved["plot_notes"] == result["plot_notes"] and "tsne" in saved["plots"]
    assert len(pd.read_csv(tmp_path / "results" / "results.csv")) == 1


def test_a_plotting_segfault_leaves_the_results_intact(toy_features, tmp_path, monkeypatch):
    task, store, _ = toy_features
    monkeypatch.setattr(plots, "tsne_plot", segfault)     # as scikit-learn's t-SNE once did
    with pytest.warns(UserWarning, match="tsne.png: the plotting process was killed by SIGSEGV"):
        result = run(task, store.load(), tmp_path)
    saved = json.loads(open(result["result_file"]).read())
    assert saved["summary"]["accuracy"]["n"] == 3 and set(saved["plots"]) == {"confusion", "curves"}
    assert all(os.path.exists(p) for p in saved["plots"].values())
    row = pd.read_csv(tmp_path / "results" / "results.csv").iloc[0]
    assert row["result_file"] == result["result_file"]
