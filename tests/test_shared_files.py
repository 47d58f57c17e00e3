"""Files that several runs share: results.csv appends and meta.json updates
from concurrent processes lose nothing and are never seen empty or half
written."""
import json
import multiprocessing
import time

import pandas as pd
import pytest

from common.extraction.store import FeatureStore
from common.reporting.results import append_csv, write_json

WRITERS, ROWS = 4, 25


def append_rows(path, writer):
    for k in range(ROWS):
        append_csv({"task": "toy", "writer": writer, "row": k, "note": "x" * (k % 7)}, path)


def update_meta(store_path, writer):
    store = FeatureStore(store_path)
    for k in range(ROWS):
        store.update_meta(**{f"writer{writer}": k})


def watch(path, stop, problems):
    """Read `path` over and over while writers run; record anything a reader should never see."""
    while not stop.is_set():
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        if not text.strip():
            problems.put("empty file")
        time.sleep(0.0005)  # leave the writers some CPU


def run_concurrently(target, path, reader_path):
    ctx = multiprocessing.get_context("fork")  # writers use pandas and files only: forking is safe and fast
    stop, problems = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=watch, args=(reader_path, stop, problems))
    reader.start()
    writers = [ctx.Process(target=target, args=(path, w)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
    stop.set()
    reader.join(30)
    assert all(p.exitcode == 0 for p in writers)
    seen = []
    while not problems.empty():
        seen.append(problems.get())
    return seen


def test_concurrent_appends_keep_every_row(tmp_path):
    path = tmp_path / "results" / "results.csv"
    problems = run_concurrently(append_rows, path, path)
    table = pd.read_csv(path)
    assert len(table) == WRITERS * ROWS
    assert set(zip(table["writer"], table["row"])) == {(w, k) for w in range(WRITERS) for k in range(ROWS)}
    assert problems == []
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp.csv")]


def test_concurrent_meta_updates_keep_every_field_and_never_empty_the_file(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.path.mkdir()
    store._write_meta({"settings": {"encoder": "mfcc"}, "complete": False, "num_items": 0})
    problems = run_concurrently(update_meta, store.path, store.path / "meta.json")
    meta = json.loads((store.path / "meta.json").read_text())
    assert {meta[f"writer{w}"] for w in range(WRITERS)} == {ROWS - 1}
    assert problems == []


def test_a_failed_write_leaves_the_previous_result(tmp_path):
    path = tmp_path / "run.json"
    write_json({"accuracy": 0.5}, path)
    with pytest.raises(TypeError):
        write_json({"accuracy": object()}, path)
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
