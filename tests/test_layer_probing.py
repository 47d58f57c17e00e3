"""Layer-wise probing from one extraction: --layer N, all, weighted."""
import json

import numpy as np
import pytest
from toy import make_toy_task

from common.extraction.extract import extract_embeddings
from common.errors import UserError
from common.probing.evaluate import LayerError, probe_layers, run_probes
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


def test_a_layer_choice_is_served_by_the_stores_that_hold_it(all_layers, capsys):
    # README, "Comparing": extract with --layer all beside an earlier default-layer store, then --layer weighted
    task, multi, work = all_layers
    single = extract_embeddings(task, "mfcc", task.folder, work_dir=work, num_workers=0, progress=False,
                                encoder_options={"n_mfcc": "64"})
    assert single.path != multi.path and list(single.meta()["settings"]["layers"]) == ["mfcc"]
    rows = run_probes(task, [single, multi], layer="weighted", heads=("linear",), recipe=Recipe("t", (1e-2,), 16, 5),
                      work_dir=work, progress=True, plots=False)
    assert [(r["store"], r["layer"]) for r in rows] == [(multi.path.name, "weighted")]
    assert f"skipping store {single.path.name}: --layer weighted needs features of several layers" \
        in capsys.readouterr().out
    with pytest.raises(LayerError, match="needs features of several layers") as err:   # no store can: one line
        run_probes(task, [single], layer="weighted", work_dir=work, progress=False, plots=False)
    assert isinstance(err.value, UserError)
