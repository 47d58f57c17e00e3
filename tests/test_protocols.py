import numpy as np
import pandas as pd
import pytest

from common.protocols import OfficialFolds, OfficialSplit, Protocol, RandomSplit, carve_validation


def table(n_classes=5, per_class=20, folds=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_classes):
        for k in range(per_class):
            fold = k % folds + 1
            rows.append({"id": f"{c}-{k}", "label": f"c{c}", "fold": fold, "src": f"src{c}-{k // 2}-{fold}",
                         "speaker": f"s{rng.integers(4)}"})
    return pd.DataFrame(rows)


def test_official_folds_leave_one_out_with_next_fold_as_validation():
    data = Protocol("p", OfficialFolds("fold"), group="src").prepare(table())
    assert [f.name for f in data.folds] == [f"fold{k}" for k in range(1, 6)]
    folds = data.items["fold"].to_numpy()
    for k, fold in enumerate(data.folds, start=1):
        assert set(folds[fold.test]) == {k}
        assert set(folds[fold.valid]) == {k % 5 + 1}
        assert len(fold.train) + len(fold.valid) + len(fold.test) == len(data.items)


def test_group_crossing_a_fold_boundary_is_refused():
    items = table()
    items.loc[items.index[0], "src"] = items.loc[items.index[1], "src"]  # same source in folds 1 and 2
    with pytest.raises(AssertionError, match="src groups on both sides"):
        Protocol("p", OfficialFolds("fold"), group="src").prepare(items)


def test_random_split_is_the_seeds_80_20_and_deterministic():
    items = table()
    protocol = Protocol("p", OfficialFolds("fold"), group="src").with_random_split()
    a, b = protocol.prepare(items), protocol.prepare(items)
    fold = a.folds[0]
    assert len(fold.test) == 20 and len(fold.train) + len(fold.valid) == 80
    np.testing.assert_array_equal(fold.test, b.folds[0].test)
    # stratified: every class keeps 4 of its 20 items in the test part
    assert set(np.bincount(a.y[fold.test])) == {4}


def test_per_speaker_split_keeps_every_test_speaker_in_training():
    items = table(n_classes=12, per_class=10)
    data = Protocol("p", RandomSplit(0.2, 42)).prepare(items)
    fold = data.folds[0]
    assert set(data.y[fold.test]) <= set(data.y[fold.train])


def test_official_split_carves_validation_by_group():
    items = table()
    items["split"] = np.where(items["fold"] == 1, "test", "train")
    data = Protocol("p", OfficialSplit("split", valid_group="speaker")).prepare(items)
    fold = data.folds[0]
    assert set(data.items["split"].iloc[fold.test]) == {"test"}
    speakers = data.items["speaker"].to_numpy()
    assert not set(speakers[fold.valid]) & set(speakers[fold.train])


def test_fixed_class_list_and_relabel():
    items = table(n_classes=3)
    protocol = Protocol("p", OfficialFolds("fold"), relabel=lambda s: "c0" if s == "c0" else "other",
                        classes=("other", "c0", "unused"))
    data = protocol.prepare(items)
    assert data.classes == ["other", "c0", "unused"]
    assert (data.y[data.items["label"].to_numpy() == "c0"] == 1).all()
    with pytest.raises(AssertionError, match="not among its classes"):
        Protocol("p", OfficialFolds("fold"), classes=("c0",)).prepare(items)


def test_carve_validation_never_shares_groups():
    train = np.arange(100)
    groups = np.repeat(np.arange(20), 5)
    keep, held = carve_validation(train, np.zeros(100), groups, size=0.2)
    assert not set(groups[keep]) & set(groups[held]) and len(held) == 20
