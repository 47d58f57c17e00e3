import numpy as np
import pandas as pd
import pytest
from toy import make_toy_task

from common.extraction.extract import extract_embeddings, plan_batches
from common.extraction.store import FeatureStore, StoreDamagedError, StoreMismatchError, find_stores


def extract(task, tmp_path, **kw):
    kw.setdefault("num_workers", 0)
    return extract_embeddings(task, "mfcc", tmp_path / "data", work_dir=tmp_path / "work", progress=False,
                              shard_size=4, **kw)


def test_store_holds_embeddings_items_and_metadata(tmp_path):
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    features = store.load()
    assert features.embeddings["mfcc"].shape == (18, 40)
    assert list(features.items["id"]) == sorted(features.items["id"], key=list(features.items["id"]).index)
    meta = store.meta()
    assert meta["complete"] and meta["num_items"] == 18 and meta["settings"]["encoder"] == "mfcc"
    assert meta["settings"]["pooling"] == "mean" and meta["settings"]["sample_rate"] == 16000
    assert meta["settings"]["dataset_root"] == str((tmp_path / "data").resolve())
    assert not any(p.suffix in (".pt", ".pkl", ".pth") for p in store.path.rglob("*"))


def test_other_settings_are_refused_not_mixed(tmp_path):
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    with pytest.raises(StoreMismatchError, match="n_mfcc.*--overwrite"):
        extract(task, tmp_path, encoder_options={"n_mfcc": "20"}, store_name=store.path.name)
    rebuilt = extract(task, tmp_path, encoder_options={"n_mfcc": "20"}, store_name=store.path.name, overwrite=True)
    assert rebuilt.load().embeddings["mfcc"].shape == (18, 20)
    # other pooling goes to its own store
    other = extract(task, tmp_path, pooling="mean+std")
    assert other.path != store.path and other.load().embeddings["mfcc"].shape == (18, 80)


def test_bad_files_are_skipped_and_listed(tmp_path):
    task = make_toy_task(tmp_path / "data", corrupt=2)
    store = extract(task, tmp_path)
    meta = store.meta()
    assert meta["num_failed"] == 2 and set(meta["failed"]) == {"c0_0.wav", "c0_1.wav"}
    assert "c0_0.wav" in meta["failed"]["c0_0.wav"]
    features = store.load()
    assert len(features.items) == 16 and "c0_0.wav" not in set(features.items["id"])


def test_resume_after_losing_shards_equals_a_clean_run(tmp_path):
    task = make_toy_task(tmp_path / "data")
    clean = extract(task, tmp_path, store_name="clean").load()
    store = extract(task, tmp_path, store_name="resumed")
    shards = sorted(store.shard_dir.glob("shard-*"))
    for shard in shards[1::2]:
        shard.unlink()
    store.update_meta(complete=False)
    resumed = extract(task, tmp_path, store_name="resumed").load()
    np.testing.assert_array_equal(resumed.embeddings["mfcc"], clean.embeddings["mfcc"])
    assert list(resumed.items["id"]) == list(clean.items["id"])


def test_worker_count_does_not_change_outputs(tmp_path):
    task = make_toy_task(tmp_path / "data")
    a = extract(task, tmp_path, store_name="w0", num_workers=0).load()
    b = extract(task, tmp_path, store_name="w2", num_workers=2).load()
    np.testing.assert_array_equal(a.embeddings["mfcc"], b.embeddings["mfcc"])


def test_batches_cover_every_item_once_within_budget():
    rng = np.random.default_rng(1)
    durations = rng.uniform(0.1, 30, 500)
    shard = np.argsort(durations, kind="stable")
    batches = plan_batches(shard, durations, max_batch_seconds=60, max_batch_items=16)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(500))
    for b in batches:
        assert len(b) <= 16 and (len(b) == 1 or len(b) * durations[b].max() <= 60)


def test_incomplete_store_is_not_loaded(tmp_path):
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    store.update_meta(complete=False)
    with pytest.raises(RuntimeError, match="incomplete"):
        FeatureStore(store.path).load()


# --------------------------------------------------------------------------- verified on reuse
def test_reordered_items_csv_is_refused_then_repaired(tmp_path):
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    clean = store.load()
    items = store.path / "items.csv"
    table = pd.read_csv(items)
    table.iloc[::-1].to_csv(items, index=False)       # labels would silently move to other embeddings
    with pytest.raises(StoreDamagedError, match="items.csv was changed since extraction"):
        store.load()
    repaired = extract(task, tmp_path).load()
    np.testing.assert_array_equal(repaired.embeddings["mfcc"], clean.embeddings["mfcc"])
    assert list(repaired.items["label"]) == list(clean.items["label"])


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "delete"])
def test_damaged_shards_are_found_and_only_they_are_extracted_again(tmp_path, damage, capsys):
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    clean = store.load()
    shards = sorted(store.shard_dir.glob("shard-*"))
    victim, others = shards[1], shards[0]
    before = others.stat().st_mtime_ns
    data = victim.read_bytes()
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * len(data)}[damage])
    assert list(store.damaged_shards()) == [1]
    with pytest.raises(StoreDamagedError, match="damaged"):
        store.load()
    store = extract_embeddings(task, "mfcc", tmp_path / "data", work_dir=tmp_path / "work", shard_size=4,
                               num_workers=0)
    assert "re-extracting 1 damaged shard" in capsys.readouterr().out
    assert others.stat().st_mtime_ns == before                     # good shards are kept as they are
    np.testing.assert_array_equal(store.load().embeddings["mfcc"], clean.embeddings["mfcc"])


def test_a_corrupt_meta_json_names_itself_and_blocks_only_its_store(tmp_path):
    task = make_toy_task(tmp_path / "data")
    good = extract(task, tmp_path)
    bad = extract(task, tmp_path, store_name="other")
    (bad.path / "meta.json").write_text('{"settings": {"enc')
    with pytest.raises(StoreDamagedError, match=r"other/meta.json is damaged.*--overwrite"):
        bad.meta()
    with pytest.warns(UserWarning, match="other/meta.json is damaged"):
        found = find_stores(tmp_path / "work" / "features")
    assert [s.path for s in found] == [good.path]
    rebuilt = extract(task, tmp_path, store_name="other", overwrite=True)
    assert rebuilt.complete


def test_a_moved_data_folder_reuses_its_store_with_new_paths(tmp_path, capsys):
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    clean = store.load()
    (tmp_path / "data").rename(tmp_path / "moved")
    task = make_toy_task.__globals__["Task"](**{**task.__dict__, "folder": tmp_path / "moved"})
    again = extract_embeddings(task, "mfcc", tmp_path / "moved", work_dir=tmp_path / "work", shard_size=4,
                               num_workers=0)
    assert "reused" in capsys.readouterr().out
    assert again.meta()["settings"]["dataset_root"] == str((tmp_path / "moved").resolve())
    assert all(p.startswith(str((tmp_path / "moved").resolve())) for p in again.items()["path"])
    np.testing.assert_array_equal(again.load().embeddings["mfcc"], clean.embeddings["mfcc"])


def test_a_copied_task_folder_never_probes_the_old_tasks_stores(tmp_path, capsys):
    # README, "Adding a task": a task folder copied with its features/ holds the old task's stores
    import dataclasses

    from common.cli import train_main
    task = make_toy_task(tmp_path / "data")
    store = extract(task, tmp_path)
    copy = dataclasses.replace(task, name="copy", title="Copy")
    features = tmp_path / "work" / "features"
    assert [s.path for s in find_stores(features, task="toy")] == [store.path]
    assert find_stores(features, task="copy") == []
    with pytest.raises(SystemExit) as end:
        train_main(copy, ["--work-dir", str(tmp_path / "work"), "--no-plots"])
    assert str(end.value).startswith("error: no complete copy features under ")
    assert "of task toy" in str(end.value) and "\n" not in str(end.value)
    assert not (tmp_path / "work" / "results").exists()  # nothing trained on the other task's features
