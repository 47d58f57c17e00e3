"""extract_embeddings: dataset on disk -> pooled embeddings in a FeatureStore.

The pipeline, in order:
1. the task's reader lists the items; their durations come from file headers
   (cached in the store) and items are sorted by duration;
2. sorted items are cut into shards (the unit of resumption and of work per
   rank under torchrun), shards into batches under a total-duration budget, so
   that little compute is spent on padding;
3. DataLoader workers decode and resample whole batches and hand them over
   through reused shared memory (`common.data.loading`);
4. each batch is cut into windows at the encoder's native length, windows are
   grouped (by exact length when the encoder is not padding-invariant),
   encoded, and pooled per item over all its windows' valid frames, each
   window weighted by the real samples it holds (`common.extraction.pooling`);
5. every finished shard is written atomically; the store is marked complete
   when all shards exist.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.audio import AudioReadError, audio_duration
from ..data.base import REFUSED
from ..data.loading import decoded_batches
from ..encoders import build_encoder
from ..encoders.base import Encoder
from ..task import Task
from .distributed import barrier, dist_info
from .pooling import PoolAccumulator, check_pooling, pooled_dim
from .store import FeatureStore, items_digest


# --------------------------------------------------------------------------- devices
def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device auto or cpu")
        return torch.device(f"cuda:{local_rank}")
    return torch.device(device)


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- planning
def item_durations(items: pd.DataFrame, cache: Path | None = None, threads: int = 8) -> np.ndarray:
    """Seconds per item: segment length where the item is a segment, else the
    file's duration from its header (unreadable files get 0 and fail later)."""
    if cache is not None and cache.exists():
        try:
            durations = np.load(cache)
        except (OSError, ValueError, EOFError):  # cut short by a kill: recompute
            durations = None
        if durations is not None and len(durations) == len(items):
            return durations

    def one(row) -> float:
        if getattr(row, REFUSED, ""):  # never opened: the reader refused it
            return 0.0
        if not math.isnan(row.clip_end):
            return max(0.0, row.clip_end - row.clip_start)
        try:
            return max(0.0, audio_duration(row.path) - row.clip_start)
        except AudioReadError:
            return 0.0

    def chunk(rows: pd.DataFrame) -> list[float]:
        return [one(row) for row in rows.itertuples(index=False)]

    # threads hide file-system latency (network storage); chunks of items, not
    # one future per item, because per-item futures cost more than a header read
    chunks = [items.iloc[i:i + 512] for i in range(0, len(items), 512)]
    with ThreadPoolExecutor(threads) as pool:
        durations = np.array([d for part in pool.map(chunk, chunks) for d in part], dtype=np.float64)
    if cache is not None:  # atomic, like the shards: a killed run never leaves half a cache
        tmp = cache.with_name(f".tmp-{os.getpid()}-{cache.name}")
        with open(tmp, "wb") as f:
            np.save(f, durations)
        os.replace(tmp, cache)
    return durations


def plan_shards(durations: np.ndarray, shard_size: int) -> list[np.ndarray]:
    """Items sorted by duration (stable), cut into shards of `shard_size`."""
    order = np.argsort(durations, kind="stable")
    return [order[i:i + shard_size] for i in range(0, len(order), shard_size)]


def plan_batches(shard: np.ndarray, durations: np.ndarray, max_batch_seconds: float,
                 max_batch_items: int) -> list[np.ndarray]:
    """Consecutive items of a duration-sorted shard, as many as fit in the
    padded-duration budget (items x longest item), at least one per batch."""
    batches, start = [], 0
    while start < len(shard):
        end = start + 1
        while (end < len(shard) and end - start < max_batch_items
               and (end - start + 1) * durations[shard[end]] <= max_batch_seconds):
            end += 1
        batches.append(shard[start:end])
        start = end
    return batches


# --------------------------------------------------------------------------- encoding
@dataclass
class BatchStats:
    samples: int = 0        # real samples encoded
    padded: int = 0         # samples in the padded tensors

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.samples / self.padded if self.padded else 0.0


def windows_of(audio: np.ndarray, window: int | None, minimum: int) -> list[np.ndarray]:
    """Cut at the encoder's native length; zero-pad anything below its minimum."""
    pieces = [audio] if not window or len(audio) <= window else \
        [audio[i:i + window] for i in range(0, len(audio), window)]
    return [np.pad(p, (0, minimum - len(p))) if len(p) < minimum else p for p in pieces]


def real_samples(pieces: list[np.ndarray], total: int) -> list[int]:
    """Samples of the item in each of its windows: the pieces' lengths, less
    the zeros `windows_of` appended to a piece below the minimum (the last).
    Pooling weights each window by these."""
    counts = [len(p) for p in pieces]
    counts[-1] = max(1, total - sum(counts[:-1]))  # an empty item still weighs something
    return counts


def adjacent_view(windows: list[np.ndarray]) -> torch.Tensor | None:
    """[len(windows), length] view of equal-length float32 windows that lie end
    to end in one buffer (fixed-length clips of one DecodedBatch, the windows
    of one long item), else None."""
    first, size = windows[0], len(windows[0])
    if first.base is None or first.dtype != np.float32 or first.strides != (first.itemsize,):
        return None
    step, start = size * first.itemsize, first.__array_interface__["data"][0]
    if all(len(w) == size and w.base is first.base and w.strides == first.strides
           and w.__array_interface__["data"][0] == start + k * step for k, w in enumerate(windows)):
        return torch.from_numpy(np.lib.stride_tricks.as_strided(first, (len(windows), size), (step, first.itemsize)))
    return None


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A small host array on the device without waiting for the GPU (a blocking
    copy from pageable memory waits for every kernel queued before it)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class BatchBuilder:
    """Zero-padded [B, T] float32 batches of windows, on the device.

    Adjacent equal-length windows are viewed, not copied. Others are copied
    into one buffer reused from batch to batch (a fresh 10 MB tensor costs
    ~4 ms of page faults every time); for CUDA, into pinned memory from
    torch's caching host allocator, then copied to the GPU without blocking."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.buffer = torch.empty(0)

    def __call__(self, windows: list[np.ndarray]) -> torch.Tensor:
        batch = adjacent_view(windows)
        if batch is None:
            shape = (len(windows), max(len(w) for w in windows))
            if self.device.type == "cuda":
                batch = torch.empty(shape, pin_memory=True)
            else:  # the previous batch is pooled and gone by now: its buffer is free
                if self.buffer.numel() < shape[0] * shape[1]:
                    self.buffer = torch.empty(shape[0] * shape[1])
                batch = self.buffer[: shape[0] * shape[1]].view(shape)
            for row, w in enumerate(windows):
                batch[row, : len(w)] = torch.from_numpy(w)
                batch[row, len(w):] = 0
        elif self.device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)


def embed_batch(encoder: Encoder, audios: list[np.ndarray], layers: list[str], pooling: str,
                device: torch.device, precision: str = "fp32", max_batch_seconds: float = 160.0,
                stats: BatchStats | None = None, builder: BatchBuilder | None = None,
                on_device: bool = False) -> dict[str, np.ndarray | torch.Tensor]:
    """Pooled embeddings [len(audios), D] per layer for a list of waveforms at
    the encoder's rate. Windows of one item may land in different forward
    passes; their frames are pooled together, weighted by the real samples of
    their window (a 50 ms tail counts 50 ms). Pass the same `builder` for
    every batch of a job to reuse its buffer. `on_device`: float32 tensors left
    on the device, so that the CPU prepares the next batch while the GPU works
    (numpy would wait for the GPU after every batch)."""
    builder = builder or BatchBuilder(device)
    sr = encoder.sample_rate
    window = int(encoder.window_seconds * sr) if encoder.window_seconds else None
    windows, owner, real = [], [], []
    for i, audio in enumerate(audios):
        pieces = windows_of(audio, window, int(encoder.min_seconds * sr))
        windows += pieces
        owner += [i] * len(pieces)
        real += real_samples(pieces, len(audio))
    lengths = np.array([len(w) for w in windows])
    real = np.asarray(real, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    budget = max(1, int(max_batch_seconds * sr))
    if encoder.padding_invariant:
        groups = plan_batches(order, lengths, budget, len(order))
    else:  # padding would change the outputs: only equal lengths share a pass
        groups = [batch for n in np.unique(lengths)
                  for batch in plan_batches(order[lengths[order] == n], lengths, budget, len(order))]
    dims = encoder.layer_dims()
    accumulators = {name: PoolAccumulator(len(audios), dims[name], device, pooling) for name in layers}
    for group in groups:
        batch = builder([windows[w] for w in group])
        batch_lengths = host_to_device(lengths[group], device)
        with torch.inference_mode(), autocast_for(device, precision):
            frames = encoder(batch, batch_lengths, layers)
        owners = host_to_device(np.asarray(owner)[group], device)
        samples = host_to_device(real[group], device)
        for name in layers:
            accumulators[name].add(owners, *frames[name], samples)
        if stats is not None:
            stats.samples += int(lengths[group].sum())
            stats.padded += batch.numel()
    pooled = {name: acc.result() for name, acc in accumulators.items()}
    return pooled if on_device else {name: x.cpu().numpy() for name, x in pooled.items()}


# --------------------------------------------------------------------------- the job
def store_name_for(encoder: str, layer: str | None, pooling: str) -> str:
    name = encoder
    if layer not in (None, "default"):
        name += f".{layer.replace(',', '+')}"
    if pooling != "mean":
        name += f".{pooling}"
    return name


def extract_embeddings(task: Task, encoder_name: str, data_root: str | Path | None = None, *,
                       work_dir: str | Path | None = None, store_name: str | None = None,
                       layer: str | None = None, pooling: str = "mean", device: str = "auto",
                       precision: str = "fp32", max_batch_seconds: float = 160.0, batch_size: int = 64,
                       num_workers: int | None = None, shard_size: int = 1024, overwrite: bool = False,
                       encoder_options: dict | None = None, pretrained_dir: str | Path | None = None,
                       progress: bool = True) -> FeatureStore:
    check_pooling(pooling)
    rank, world, local_rank = dist_info()
    listing = task.read(task.data_root(data_root))
    items = listing.items
    torch_device = resolve_device(device, local_rank)
    if torch_device.type == "cpu" and precision == "fp16":
        raise ValueError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    encoder = build_encoder(encoder_name, pretrained_dir, **(encoder_options or {})).to(torch_device)
    layers = encoder.resolve_layers(layer)
    dims = encoder.layer_dims()
    settings = {
        "encoder": encoder_name, "encoder_config": encoder.config(), "encoder_options": encoder_options or {},
        "layers": {name: pooled_dim(dims[name], pooling) for name in layers},
        "default_layer": encoder.default_layer if encoder.default_layer in layers else layers[-1],
        "pooling": pooling, "sample_rate": encoder.sample_rate, "precision": precision,
        "window_seconds": encoder.window_seconds, "task": task.name, "variant": listing.variant,
        "dataset_root": str(listing.root), "items_sha1": items_digest(items), "shard_size": shard_size,
    }
    if encoder.window_seconds:  # earlier versions counted every window alike: their stores are not reused
        settings["window_weights"] = "real samples"
    work_dir = Path(work_dir or task.folder)
    path = work_dir / "features" / listing.variant / (store_name or store_name_for(encoder_name, layer, pooling))
    if rank == 0:
        store = FeatureStore.open(path, settings, items, overwrite=overwrite)
        store.update_meta(dataset_complete=listing.complete, dataset_notes=listing.notes)
        was_complete = store.complete
        damaged = store.discard_damaged_shards()  # verified on every reuse; only these are made again
        if damaged and was_complete and progress:
            print(f"re-extracting {len(damaged)} damaged shard(s) of {store.path}: "
                  + "; ".join(list(damaged.values())[:3]))
        if not store.complete:  # read every header once; the other ranks load the cache
            item_durations(items, store.path / "durations.npy")
    barrier()
    store = FeatureStore.open(path, settings, items) if rank else store
    if store.complete:
        if progress and rank == 0:
            print(f"features already complete in {store.path} (reused; --overwrite rebuilds them)")
        return store

    durations = item_durations(items, store.path / "durations.npy")
    shards = plan_shards(durations, shard_size)
    mine = [k for k in range(len(shards)) if k % world == rank and not store.has_shard(k)]
    batches, batch_shard = [], []
    for k in mine:
        for batch in plan_batches(shards[k], durations, max_batch_seconds, batch_size):
            batches.append(batch.tolist())
            batch_shard.append(k)
    budget = int(max_batch_seconds * encoder.sample_rate)
    loader = decoded_batches(items, batches, encoder.sample_rate, num_workers,
                             slot_samples=budget + encoder.sample_rate)  # 1 s slack: headers vs resampled lengths
    remaining = {k: len(shards[k]) for k in mine}
    pending: dict[int, dict] = {k: {"index": [], "emb": {n: [] for n in layers}, "failed": {}} for k in mine}
    stats, builder, failures = BatchStats(), BatchBuilder(torch_device), 0
    bar = tqdm(total=sum(remaining.values()), unit="clip", disable=not progress,
               desc=f"{task.name} {encoder_name}" + (f" rank {rank}" if world > 1 else ""))
    try:
        for batch in loader:
            shard_id = batch_shard[batch.position]
            part = pending[shard_id]
            part["failed"].update(batch.errors)
            if batch.indices:
                pooled = embed_batch(encoder, batch.waveforms(), layers, pooling, torch_device, precision,
                                     max_batch_seconds, stats, builder, on_device=True)
                part["index"] += batch.indices
                for name in layers:
                    part["emb"][name].append(pooled[name])
            done, failures = len(batch.indices) + len(batch.errors), failures + len(batch.errors)
            remaining[shard_id] -= done
            bar.update(done)
            bar.set_postfix(padding=f"{stats.padding_fraction:.1%}", failed=failures)
            if remaining[shard_id] == 0:
                emb = {n: torch.cat(x).cpu().numpy() if x else np.zeros((0, settings["layers"][n]), np.float32)
                       for n, x in part["emb"].items()}
                store.write_shard(shard_id, np.asarray(part["index"], dtype=np.int64), emb, part["failed"])
                del pending[shard_id]
    except KeyboardInterrupt:
        bar.close()
        raise SystemExit(f"interrupted: {len(shards) - len(pending)} of {len(shards)} shards are saved in "
                         f"{store.path}; run the same command again to continue from there")
    bar.close()
    barrier()
    if rank == 0:
        missing = [k for k in range(len(shards)) if not store.has_shard(k)]
        if missing:
            raise RuntimeError(f"shards {missing[:5]} are missing after extraction; run again to finish them")
        failed = store.failed()
        store.update_meta(complete=True, failed={items['id'][i]: err for i, err in failed.items()},
                          num_failed=len(failed), padding_fraction=round(stats.padding_fraction, 4))
        if progress:
            print(f"wrote {len(items) - len(failed):,} embeddings ({', '.join(layers)}) to {store.path}"
                  + (f"; {len(failed)} unreadable items skipped and listed in meta.json" if failed else ""))
    barrier()
    return store
