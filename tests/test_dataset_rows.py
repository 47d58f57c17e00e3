"""Metadata rows checked by the shared reader machinery: files outside the data
root, broken links, folds outside the official set, missing labels,
duplicates, empty tables, lists naming absent files; and generated metadata
CSVs give a valid split or a one-line error."""
import os
import string

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st
from toy import make_toy_task

from common.data import ESC50, CsvDataset, DatasetError, DatasetWarning, read_speech_commands
from common.data.base import path_problems
from common.errors import UserError
from common.extraction.extract import extract_embeddings
from common.probing.protocols import OfficialFolds, Protocol
from common.task import Task


def toy_rows(root, names):
    """A toy dataset whose metadata names `names` (3 folds, 2 classes)."""
    reader = CsvDataset(name="Toy", metadata="meta.csv", audio="audio/{file}", label="label", id="file",
                        columns=("file", "fold", "label"), subdirs=(), download="-", folds=(1, 2, 3))
    task = make_toy_task(root, per_class=3, classes=2)
    meta = pd.read_csv(root / "meta.csv")
    extra = pd.DataFrame({"file": names, "fold": 1, "label": "class0"})
    pd.concat([meta, extra]).to_csv(root / "meta.csv", index=False)
    return Task(name="toy", title="Toy", read=reader, folder=root, data_env="TOY_ROOT", download="-",
                protocols=task.protocols)


def test_files_leaving_the_root_and_broken_links_are_failed_unread(tmp_path):
    root = tmp_path / "data"
    outside = tmp_path / "secret.wav"
    sf.write(outside, np.zeros(1600), 16000)
    task = toy_rows(root, ["../../secret.wav", "link_out.wav", "dangling.wav", "loop.wav"])
    audio = root / "audio"
    os.symlink(outside, audio / "link_out.wav")
    os.symlink(audio / "gone.wav", audio / "dangling.wav")
    os.symlink(audio / "loop.wav", audio / "loop.wav")
    with pytest.warns(DatasetWarning, match="4 items are refused"):
        listing = task.read(root)
    reasons = dict(zip(listing.items["id"], listing.items["refused"]))
    assert "outside the data root" in reasons["../../secret.wav"]
    assert "outside the data root" in path_problems([str(outside)], root)[0]   # an absolute path
    assert "symbolic link to" in reasons["link_out.wav"]
    assert "dangling symbolic link" in reasons["dangling.wav"]
    assert "symbolic link loop" in reasons["loop.wav"]
    assert not any(reasons[f"c{c}_{k}.wav"] for c in range(2) for k in range(3))

    with pytest.warns(DatasetWarning):
        store = extract_embeddings(task, "mfcc", root, work_dir=tmp_path / "work", progress=False, num_workers=0)
    failed = store.meta()["failed"]
    assert set(failed) == set(reasons) - {f"c{c}_{k}.wav" for c in range(2) for k in range(3)}
    assert all(why.startswith("not read: ") for why in failed.values())
    assert len(store.load().items) == 6


def write_esc50(root, rows):
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    columns = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.to_csv(root / "meta" / "esc50.csv", index=False)
    for name in frame["filename"]:
        sf.write(root / "audio" / str(name), np.zeros(800), 16000)


def esc_row(k, fold, category="dog"):
    return [f"{fold}-{k}-A-0.wav", fold, 0, category, False, str(k), "A"]


@pytest.mark.parametrize("fold", [0, 6])
def test_folds_outside_the_official_set_are_an_error(tmp_path, fold):
    write_esc50(tmp_path, [esc_row(k, 1 + k % 5) for k in range(10)] + [esc_row(99, fold)])
    with pytest.raises(DatasetError, match=f"1 rows have fold values {fold} outside the official ESC-50 folds 1-5"):
        ESC50(tmp_path)


def test_missing_labels_duplicates_and_empty_tables(tmp_path):
    rows = [esc_row(k, 1 + k % 5) for k in range(10)]
    write_esc50(tmp_path, rows + [esc_row(50, 1, category=float("nan"))])
    with pytest.raises(DatasetError, match="1 items have no label"):
        ESC50(tmp_path)
    write_esc50(tmp_path, rows + rows[:2])
    with pytest.warns(DatasetWarning, match="2 duplicated rows were dropped"):
        assert len(ESC50(tmp_path).items) == 10
    clash = list(rows[0])
    clash[3] = "cat"
    write_esc50(tmp_path, rows + [clash])
    with pytest.raises(DatasetError, match="2 rows share an id"):
        ESC50(tmp_path)
    write_esc50(tmp_path, [])
    with pytest.raises(DatasetError, match="lists no items"):
        ESC50(tmp_path)


def test_official_lists_naming_absent_files_are_counted(tmp_path):
    (tmp_path / "yes").mkdir()
    sf.write(tmp_path / "yes" / "a_nohash_0.wav", np.zeros(1600), 16000)
    (tmp_path / "validation_list.txt").write_text("yes/a_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/b_nohash_0.wav\nyes/c_nohash_0.wav\n")
    with pytest.warns(DatasetWarning, match="the test list names 2 files that are not there"):
        listing = read_speech_commands(tmp_path)
    assert any("names 2 files" in note for note in listing.notes)


# --------------------------------------------------------------------------- properties
names = st.sampled_from(["c0_0.wav", "c0_1.wav", "c1_0.wav", "c1_1.wav", "c1_2.wav", "c0_2.wav", "../x.wav",
                         "/abs.wav", "absent.wav", "sub/../c0_0.wav"])
labels = st.one_of(st.sampled_from(["class0", "class1", "", "nan"]), st.text(string.ascii_letters, max_size=3))
folds = st.one_of(st.integers(-1, 5), st.just(float("nan")), st.just("x"))
rows = st.lists(st.tuples(names, folds, labels), max_size=14)


@given(rows=rows, drop=st.sampled_from([None, "fold", "label"]))
def test_generated_metadata_gives_a_valid_split_or_one_line_error(tmp_path_factory, rows, drop):
    root = tmp_path_factory.mktemp("meta")
    (root / "audio").mkdir()
    for c in range(2):
        for k in range(3):
            sf.write(root / "audio" / f"c{c}_{k}.wav", np.zeros(400), 16000)
    table = pd.DataFrame(rows, columns=["file", "fold", "label"])
    table.drop(columns=[drop] if drop else []).to_csv(root / "meta.csv", index=False)
    reader = CsvDataset(name="Gen", metadata="meta.csv", audio="audio/{file}", label="label", id="file",
                        columns=("file", "fold", "label"), subdirs=(), download="-", folds=(1, 2, 3))
    protocol = Protocol("official", OfficialFolds("fold"))
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            listing = reader(root)
        usable = listing.items[listing.items["refused"] == ""].reset_index(drop=True)
        data = protocol.prepare(usable)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert set(listing.items["fold"].astype(int)) <= {1, 2, 3}
    assert not listing.items["label"].isin(["", "nan"]).any() and listing.items["id"].is_unique
    for fold in data.folds:
        assert not set(fold.train) & set(fold.test)


def test_declared_folders_beside_the_root_are_read_and_nothing_else(tmp_path):
    """Speech Commands' test archives sit beside the main archive: files in a
    folder the reader declares are read, files elsewhere beside the root are
    still refused, and a link out of the declared folder is still refused."""
    root, archive, other = tmp_path / "main", tmp_path / "test_set", tmp_path / "elsewhere"
    for folder in (root, archive, other):
        folder.mkdir()
        (folder / "a.wav").write_bytes(b"x")
    os.symlink(other / "a.wav", archive / "link.wav")
    paths = [str(archive / "a.wav"), str(other / "a.wav"), str(archive / "link.wav"), "a.wav"]
    problems = path_problems(paths, root, [archive])
    assert problems[0] == "" and problems[3] == ""
    assert "outside the data root" in problems[1]
    assert "symbolic link to" in problems[2]
    assert "outside the data root" in path_problems(paths, root)[0]   # not declared: refused
