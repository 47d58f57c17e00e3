import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT

from common.errors import ProtocolError
from common.probing.protocols import (
    GroupsPerClassSplit,
    OfficialFolds,
    OfficialSplit,
    Protocol,
    RandomSplit,
    carve_validation,
)


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
    data = Protocol("p", OfficialFolds("fold", validation="next-fold"), group="src").prepare(table())
    assert data.protocol.validation == "next-fold"
    assert [f.name for f in data.folds] == [f"fold{k}" for k in range(1, 6)]
    folds = data.items["fold"].to_numpy()
    for k, fold in enumerate(data.folds, start=1):
        assert set(folds[fold.test]) == {k}
        assert set(folds[fold.valid]) == {k % 5 + 1}
        assert len(fold.train) + len(fold.valid) + len(fold.test) == len(data.items)


def test_group_crossing_a_fold_boundary_is_refused():
    items = table()
    items.loc[items.index[0], "src"] = items.loc[items.index[1], "src"]  # same source in folds 1 and 2
    for rule in ("carve", "next-fold"):
        with pytest.raises(ProtocolError, match="src groups on both sides"):
            Protocol("p", OfficialFolds("fold", validation=rule), group="src").prepare(items)


def test_carve_validates_on_a_stratified_group_safe_tenth_of_the_training_folds():
    items = table(n_classes=5, per_class=40)
    protocol = Protocol("p", OfficialFolds("fold"), group="src")
    assert protocol.validation == "carve"  # the default: 4 training folds, as EVAR
    data = protocol.prepare(items)
    folds, src = data.items["fold"].to_numpy(), data.items["src"].to_numpy()
    for k, fold in enumerate(data.folds, start=1):
        assert set(folds[fold.test]) == {k}
        assert set(folds[fold.train]) == set(folds[fold.valid]) == {1, 2, 3, 4, 5} - {k}
        assert len(fold.train) + len(fold.valid) + len(fold.test) == len(items)
        assert len(fold.valid) == pytest.approx(0.1 * (len(items) - len(fold.test)), abs=10)
        assert set(np.bincount(data.y[fold.valid], minlength=5)) <= {2, 3, 4, 5, 6, 7, 8}  # every class
        assert not set(src[fold.valid]) & set(src[fold.train])
    # the rule is a name, switched per run
    assert protocol.with_validation("next-fold").split.validation == "next-fold"
    with pytest.raises(ProtocolError, match="validation rule"):
        protocol.with_validation("every-other-fold")
    with pytest.raises(ProtocolError, match="not a fold protocol"):
        Protocol("p", OfficialSplit("split")).with_validation("carve")


def test_group_on_both_sides_of_validation_is_refused():
    items = table()
    protocol = Protocol("p", OfficialSplit("split", valid="valid"), group="src")
    items["split"] = np.where(items["fold"] == 1, "test", np.where(items["fold"] == 2, "valid", "train"))
    protocol.prepare(items)
    items.loc[items["fold"] == 2, "src"] = items.loc[items["fold"] == 3, "src"].to_numpy()[:(items["fold"] == 2).sum()]
    with pytest.raises(ProtocolError, match=r"src groups on both sides of the split \(valid and train\)"):
        protocol.prepare(items)


LEAK = """
import numpy as np, pandas as pd
from common.errors import ProtocolError
from common.probing.protocols import OfficialFolds, Protocol
items = pd.DataFrame({"id": [str(i) for i in range(12)], "label": ["a", "b"] * 6,
                      "fold": [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3], "src": [str(i) for i in range(12)]})
items.loc[0, "src"] = items.loc[4, "src"]  # one source recording in folds 1 and 2
try:
    Protocol("p", OfficialFolds("fold", validation="next-fold"), group="src").prepare(items)
except ProtocolError as err:
    print("refused:", err)
else:
    print("accepted")
"""


def test_leaking_split_is_refused_under_python_O():
    out = subprocess.run([sys.executable, "-O", "-c", LEAK], capture_output=True, text=True, timeout=120,
                         cwd=PROJECT_ROOT, env={**__import__("os").environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: fold fold1: 1 src groups on both sides"), out.stdout


def test_chapter_disjoint_split_keeps_speakers_on_both_sides_and_chapters_on_one():
    rows = []
    for speaker in range(6):
        chapters = 1 if speaker == 5 else 2 + speaker % 3        # speaker 5 has a single chapter
        for chapter in range(chapters):
            for utt in range(5 + chapter):
                rows.append({"id": f"{speaker}-{chapter}-{utt}", "label": f"s{speaker}",
                             "chapter": f"{speaker}{chapter}"})
    items = pd.DataFrame(rows)
    protocol = Protocol("chapters", GroupsPerClassSplit("chapter"), group="chapter")
    data = protocol.prepare(items)
    fold = data.folds[0]
    chapter, speaker = data.items["chapter"].to_numpy(), data.items["label"].to_numpy()
    for a, b in ((fold.train, fold.test), (fold.train, fold.valid), (fold.valid, fold.test)):
        assert not set(chapter[a]) & set(chapter[b])
    assert set(speaker[fold.test]) == set(speaker[fold.train]) == {f"s{k}" for k in range(5)}
    assert "s5" not in set(speaker[np.concatenate([fold.train, fold.valid, fold.test])])
    assert set(speaker[fold.valid]) == {"s1", "s2", "s4"}              # speakers with 3 or 4 chapters
    assert len(fold.test) >= 0.2 * len(fold.train)
    # a leaking chapter (ids shared by two speakers' chapters) is caught
    leaky = items.assign(chapter=items["chapter"].str[-1])
    with pytest.raises(ProtocolError, match="chapter groups on both sides"):
        protocol.prepare(leaky)


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
    with pytest.raises(ProtocolError, match="not among its classes"):
        Protocol("p", OfficialFolds("fold"), classes=("c0",)).prepare(items)


def test_carve_validation_never_shares_groups():
    train = np.arange(100)
    groups = np.repeat(np.arange(20), 5)
    keep, held = carve_validation(train, np.zeros(100), groups, size=0.2)
    assert not set(groups[keep]) & set(groups[held]) and len(held) == 20
