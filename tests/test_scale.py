"""Extraction at scale: resume after a real SIGKILL, torchrun with two CPU
processes (gloo), and bucketing / windowing that never drops, duplicates or
mixes anything. Timings and peak memory are measured by `bench/`, not here."""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from common.data import CsvDataset
from common.encoders.base import Encoder, Layer
from common.extraction.extract import BatchStats, embed_batch, extract_embeddings, plan_batches, plan_shards, windows_of
from common.extraction.store import FeatureStore
from common.probing.protocols import OfficialFolds, Protocol
from common.task import Task

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent


# --------------------------------------------------------------------------- data
def clip_task(root: Path) -> Task:
    """Declaration only (the child processes rebuild it from here)."""
    reader = CsvDataset(name="Clips", metadata="meta.csv", audio="audio/{file}", label="label", id="file",
                        columns=("file", "fold", "label"), subdirs=(), download="(made by the tests)")
    return Task(name="clips", title="Clips", read=reader, folder=root, data_env="CLIPS_ROOT", download="-",
                protocols={"official": Protocol("official", OfficialFolds("fold"))})


def write_clips(root: Path, n: int, seed: int = 0) -> Task:
    """`n` clips of 0.1-1.2 s (some of equal length, so ties are sorted too)."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        seconds = float(rng.choice([0.1, 0.25, 0.5, 0.5, rng.uniform(0.1, 1.2)]))
        x = 0.1 * rng.standard_normal(int(16000 * seconds))
        name = f"clip{k:04d}.wav"
        sf.write(audio / name, x, 16000, subtype="FLOAT")
        rows.append({"file": name, "fold": k % 3 + 1, "label": f"c{k % 4}"})
    pd.DataFrame(rows).to_csv(root / "meta.csv", index=False)
    return clip_task(root)


def extract(root: Path, work: Path, store: str, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("shard_size", 2)
    return extract_embeddings(clip_task(root), "mfcc", root, work_dir=work, store_name=store,
                              progress=False, **kw)


def shard_tensors(store) -> dict[str, dict[str, np.ndarray]]:
    from safetensors import safe_open
    out = {}
    for path in sorted(store.shard_dir.glob("shard-*.safetensors")):
        with safe_open(str(path), "np") as f:
            out[path.name] = {key: f.get_tensor(key) for key in f.keys()}
    return out


def child_env(**extra) -> dict:
    env = dict(os.environ, **extra, PYTHONPATH=os.pathsep.join(
        [str(PROJECT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.pop("WORLD_SIZE", None)
    return env


# --------------------------------------------------------------------------- resume after kill -9
KILLED_CHILD = """
import sys, time
import common.extraction.extract as ex
from test_scale import clip_task
from pathlib import Path

real = ex.embed_batch
def slow(*args, **kwargs):  # so that the kill lands mid-run
    time.sleep(0.15)
    return real(*args, **kwargs)
ex.embed_batch = slow
root, work = Path(sys.argv[1]), Path(sys.argv[2])
ex.extract_embeddings(clip_task(root), "mfcc", root, work_dir=work, store_name="killed", shard_size=2,
                      num_workers=1, progress=False)  # killed with a decoding worker and its shared slots live
"""


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    root, work = tmp_path / "data", tmp_path / "work"
    write_clips(root, 40)
    shard_dir = work / "features" / "clips" / "killed" / "shards"
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(root), str(work)], env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not list(shard_dir.glob("shard-*.safetensors")):
            assert child.poll() is None, f"child ended before writing a shard:\n{child.stdout.read().decode()}"
            assert time.monotonic() < deadline, "no shard written within 60 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    survivors = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*.safetensors")}
    meta = json.loads((shard_dir.parent / "meta.json").read_text())
    assert not meta["complete"] and 1 <= len(survivors) < 20, f"{len(survivors)} of 20 shards at the kill"

    resumed = extract(root, work, "killed")
    # shards saved before the kill are kept as they are, not recomputed
    assert survivors == {n: (shard_dir / n).stat().st_mtime_ns for n in survivors}
    assert not list(shard_dir.glob(f".tmp-*-{os.getpid()}.*"))  # nothing half-written left by the rerun
    clean = extract(root, work, "clean")
    a, b = resumed.load(), clean.load()
    assert list(a.items["id"]) == list(b.items["id"]) == [f"clip{k:04d}.wav" for k in range(40)]
    assert np.array_equal(a.embeddings["mfcc"], b.embeddings["mfcc"])
    assert a.embeddings["mfcc"].shape == (40, 40)
    # same item -> shard assignment and order inside shards
    sa, sb = shard_tensors(resumed), shard_tensors(clean)
    assert sa.keys() == sb.keys() and len(sa) == 20
    for name in sa:
        assert all(np.array_equal(sa[name][k], sb[name][k]) for k in sb[name]), name


def test_a_durations_cache_cut_short_by_a_kill_is_recomputed(tmp_path):
    root, work = tmp_path / "data", tmp_path / "work"
    write_clips(root, 8)
    clean = extract(root, work, "x").load()
    store = FeatureStore(work / "features" / "clips" / "x")
    for shard in sorted(store.shard_dir.glob("shard-*"))[1:]:
        shard.unlink()
    store.update_meta(complete=False)
    cache = store.path / "durations.npy"
    cache.write_bytes(cache.read_bytes()[:100])  # as np.save killed mid-write
    resumed = extract(root, work, "x").load()
    assert np.array_equal(resumed.embeddings["mfcc"], clean.embeddings["mfcc"])
    assert len(np.load(cache)) == 8
    cache.write_bytes(b"")
    extract(root, work, "x", overwrite=True)  # --overwrite starts from scratch, cache included
    assert len(np.load(cache)) == 8


# --------------------------------------------------------------------------- torchrun, 2 CPU processes
TORCHRUN_SCRIPT = """
import json, sys
from pathlib import Path
import torch.distributed as dist
import common.extraction.extract as ex
from common.extraction.store import FeatureStore
from test_scale import clip_task

root, work = Path(sys.argv[1]), Path(sys.argv[2])
written = []
real_write = FeatureStore.write_shard
def write_shard(self, shard, *args, **kwargs):
    written.append(shard)
    return real_write(self, shard, *args, **kwargs)
FeatureStore.write_shard = write_shard
store = ex.extract_embeddings(clip_task(root), "mfcc", root, work_dir=work, store_name="ddp", shard_size=3,
                              num_workers=1, progress=False)  # each rank with its own decoding worker and slots
rank, world, _ = ex.dist_info()
info = {"rank": rank, "world": world, "backend": dist.get_backend(), "written": written,
        "complete": store.complete}
(work / f"rank{rank}.json").write_text(json.dumps(info))
dist.destroy_process_group()
"""


def test_torchrun_two_cpu_processes_equal_one_process(tmp_path):
    root, work = tmp_path / "data", tmp_path / "work"
    write_clips(root, 23, seed=1)  # 8 shards of 3 (the last one short)
    script = tmp_path / "run_extract.py"
    script.write_text(TORCHRUN_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(script), str(root), str(work)]
    # MFCCs differ in the last bits with numpy's BLAS thread count: torchrun's
    # default (OMP_NUM_THREADS=1) for both runs, so that stores are bitwise equal
    env = child_env(OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((work / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and {r["backend"] for r in ranks} == {"gloo"}
    assert all(r["complete"] for r in ranks)
    # shard k is done by rank k % 2, each exactly once
    assert sorted(ranks[0]["written"]) == [0, 2, 4, 6] and sorted(ranks[1]["written"]) == [1, 3, 5, 7]

    with threadpool_limits(1):  # as the torchrun children
        single = extract(root, work, "single", shard_size=3)
    ddp = FeatureStore(work / "features" / "clips" / "ddp")
    sa, sb = shard_tensors(ddp), shard_tensors(single)
    assert sa.keys() == sb.keys() and len(sa) == 8
    for name in sa:
        assert sa[name].keys() == sb[name].keys()
        assert all(np.array_equal(sa[name][k], sb[name][k]) for k in sb[name]), name
        assert (ddp.shard_dir / name).read_bytes() == (single.shard_dir / name).read_bytes()
    a, b = ddp.load(), single.load()
    assert list(a.items["id"]) == list(b.items["id"])
    assert np.array_equal(a.embeddings["mfcc"], b.embeddings["mfcc"])
    assert ddp.meta()["settings"] == single.meta()["settings"]


# --------------------------------------------------------------------------- bucketing
@pytest.mark.parametrize("shard_size,budget,max_items", [(1, 10.0, 64), (7, 3.0, 4), (64, 60.0, 16), (1000, 1.0, 8)])
def test_shards_and_batches_hold_every_item_exactly_once(shard_size, budget, max_items):
    rng = np.random.default_rng(shard_size)
    durations = np.concatenate([rng.uniform(0, 30, 300), np.zeros(5), np.full(20, 1.0), [120.0, 0.01]])
    rng.shuffle(durations)
    shards = plan_shards(durations, shard_size)
    assert np.array_equal(np.concatenate(shards), np.argsort(durations, kind="stable"))
    assert all(len(s) == shard_size for s in shards[:-1]) and 0 < len(shards[-1]) <= shard_size
    seen = []
    for shard in shards:
        batches = plan_batches(shard, durations, budget, max_items)
        assert np.array_equal(np.concatenate(batches), shard)  # consecutive, in order, nothing lost
        for b in batches:
            assert 1 <= len(b) <= max_items
            assert len(b) == 1 or len(b) * durations[b].max() <= budget
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(len(durations)))


class FakeEncoder(Encoder):
    """Frames of 10 samples -> [mean, first sample, sample index of the frame];
    each item's frames come from its own valid samples only (so the output of
    a row never depends on the rest of the batch). Records every call."""
    sample_rate = 1000
    window_seconds = 0.5
    min_seconds = 0.03
    hop = 10

    def __init__(self, padding_invariant: bool):
        super().__init__()
        self.padding_invariant = padding_invariant
        self.layers = [Layer("frames", 3)]
        self.default_layer = "frames"
        self.calls: list[tuple[int, list[int]]] = []     # (padded length, row lengths)
        self.rows: collections.Counter = collections.Counter()

    def forward(self, waveforms, lengths, layers):
        self.calls.append((waveforms.shape[1], lengths.tolist()))
        num = -(-waveforms.shape[1] // self.hop)
        feats = torch.zeros(len(waveforms), num, 3)
        mask = torch.zeros(len(waveforms), num, dtype=torch.bool)
        for b, (w, n) in enumerate(zip(waveforms, lengths.tolist())):
            self.rows[w[:n].numpy().tobytes()] += 1
            chunks = w[:n].split(self.hop)
            for f, chunk in enumerate(chunks):
                feats[b, f] = torch.stack([chunk.mean(), chunk[0], torch.tensor(float(f * self.hop))])
            mask[b, : len(chunks)] = True
        return {"frames": (feats, mask)}


def fake_audios(seed: int = 0, n: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # shorter than the minimum, one window, exactly k windows, k windows + a remainder
    lengths = [5, 29, 30, 499, 500, 1000, 1001, 1500, 1729, 2010] + list(rng.integers(1, 2600, n))
    return [rng.standard_normal(int(k)).astype(np.float32) for k in lengths]


@pytest.mark.parametrize("padding_invariant", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "mean+std", "max"])
def test_windows_of_long_items_are_pooled_together_once_each(padding_invariant, pooling):
    audios = fake_audios()
    encoder = FakeEncoder(padding_invariant)
    got = embed_batch(encoder, audios, ["frames"], pooling, torch.device("cpu"), max_batch_seconds=1.3)
    assert got["frames"].shape == (len(audios), 6 if pooling == "mean+std" else 3)
    window, minimum = 500, 30
    expected_rows = collections.Counter()
    for i, audio in enumerate(audios):
        pieces = windows_of(audio, window, minimum)
        assert np.array_equal(np.concatenate(pieces)[: len(audio)], audio)
        expected_rows.update(p.tobytes() for p in pieces)
        # reference: each window alone, frames of all windows pooled as one
        # sequence, each frame weighted by its window's real samples / frames
        alone = FakeEncoder(True)
        feats, weights = [], []
        for k, p in enumerate(pieces):
            f, m = alone(torch.from_numpy(p)[None], torch.tensor([len(p)]), ["frames"])["frames"]
            real = min(len(p), len(audio) - k * window)
            feats.append(f[0][m[0]].double().numpy())
            weights += [real / int(m.sum())] * int(m.sum())
        feats, weights = np.concatenate(feats), np.array(weights)[:, None]
        mean = (weights * feats).sum(0) / weights.sum()
        std = np.sqrt(np.maximum((weights * feats ** 2).sum(0) / weights.sum() - mean ** 2, 0))
        ref = {"mean": mean, "mean+std": np.concatenate([mean, std]), "max": feats.max(0)}[pooling]
        np.testing.assert_allclose(got["frames"][i], ref, rtol=1e-5, atol=1e-5, err_msg=f"item {i}")
    # every window encoded exactly once: nothing dropped, nothing duplicated
    assert encoder.rows == expected_rows
    # and forward passes stay within the budget (one window may exceed it alone)
    assert all(len(rows) == 1 or len(rows) * padded <= 1300 for padded, rows in encoder.calls)


def test_encoders_that_are_not_padding_invariant_only_see_equal_lengths():
    audios = fake_audios(seed=3, n=120)
    encoder = FakeEncoder(padding_invariant=False)
    stats = BatchStats()
    embed_batch(encoder, audios, ["frames"], "mean", torch.device("cpu"), max_batch_seconds=2.0, stats=stats)
    assert encoder.calls
    for padded, rows in encoder.calls:
        assert set(rows) == {padded}, f"a pass mixed lengths {sorted(set(rows))}"
    assert stats.padding_fraction == 0.0
    # grouping by length still batches windows of equal length together
    assert max(len(rows) for _, rows in encoder.calls) > 1
    invariant = FakeEncoder(padding_invariant=True)
    embed_batch(invariant, audios, ["frames"], "mean", torch.device("cpu"), max_batch_seconds=2.0)
    assert len(invariant.calls) < len(encoder.calls)  # padding-invariant encoders share passes across lengths
