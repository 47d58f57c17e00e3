"""Layer-wise probing from one extraction: --layer N, all, weighted."""
import json

import numpy as np
import pytest
from toy import make_toy_task

from common.extraction.extract import extract_embeddings
from common.probing.evaluate import probe_layers, run_probes
from common.probing.training import Recipe


@pytest.fixture(scope="module")
def all_layers(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    task = make_toy_task(root / "data", per_class=9)
    store = extract_embeddings(task, "mfcc", root / "data", work_dir=root / "work", layer="all", num_workers=0,
                               progress=False, encoder_options={"n_mfcc": "64"})  # both layers 64-d
    return task, store, root / "work"


def test_layer_spec_resolution(all_layers):
    _, store, _ = all_layers
    settings = store.meta()["settings"]
    assert list(settings["layers"]) == ["logmel", "mfcc"] and settings["default_layer"] == "mfcc"
    assert probe_layers(settings, None) == (["mfcc"], ["mfcc"])
    assert probe_layers(settings, "0") == (["logmel"], ["logmel"])
    assert probe_layers(settings, "all") == (["logmel", "mfcc"], ["logmel", "mfcc"])
    assert probe_layers(settings, "weighted") == (["weighted"], ["logmel", "mfcc"])
    with pytest.raises(ValueError, match="out of range"):
        probe_layers(settings, "5")
    with pytest.raises(ValueError, match="not stored"):
        probe_layers(settings, "block6")
    with pytest.raises(ValueError, match="one width"):
        probe_layers({**settings, "layers": {"a": 40, "b": 64}}, "weighted")


def test_weighted_sum_probe_records_its_layer_weights(all_layers):
    task, store, work = all_layers
    rows = run_probes(task, [store], layer="weighted", heads=("linear",), recipe=Recipe("t", (1e-2,), 16, 20),
                      work_dir=work, progress=False, plots=False)
    assert [r["layer"] for r in rows] == ["weighted"]
    result = json.loads(open(rows[0]["result_file"]).read())
    weights = result["runs"][0]["layer_weights"]
    assert len(weights) == 2 and np.isclose(sum(weights), 1.0)
    assert float(rows[0]["mean"]) > 0.6  # three well-separated tones
