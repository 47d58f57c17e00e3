"""Decoding for extraction: whole batches decoded and resampled in DataLoader
worker processes, handed to the main process through reused shared memory.

Each batch is decoded into one of a few fixed shared-memory slots, so the main
process reads the samples in place: no pickling through a pipe (~0.4 ms per
4 s clip) and no fresh shared block to map, fault in and unmap per batch
(~5% of an mfcc run). A slot is reused only once the main process has
released the batch that held it; a batch that does not fit its slot, or finds
it still busy, travels through the pipe instead, so nothing depends on timing.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .audio import AudioReadError, load_audio
from .base import REFUSED

PREFETCH = 2   # batches decoded ahead per worker (the DataLoader's prefetch_factor)


@dataclass
class DecodedBatch:
    """One batch of decoded items: the waveforms end to end in one flat float32
    buffer, and the items that could not be read, with why."""
    position: int              # the batch's place in the job's batch list
    indices: list[int]         # items decoded, in order
    offsets: np.ndarray        # waveform k is samples[offsets[k]:offsets[k + 1]]
    errors: dict[int, str]
    slot: int | None = None    # where the samples are when they came through shared memory
    samples: np.ndarray | None = None

    def waveforms(self) -> list[np.ndarray]:
        """Views into the batch's buffer: valid until the next batch is asked for."""
        return [self.samples[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


class SharedSlots:
    """`count` shared float32 buffers of `size` samples, and for each the last
    batch position the main process is done with."""

    def __init__(self, count: int, size: int):
        self.buffers = torch.empty(count, size).share_memory_()
        self.released = torch.full((count,), -1, dtype=torch.int64).share_memory_()

    @classmethod
    def fitting(cls, count: int, size: int, shm: str = "/dev/shm") -> "SharedSlots | None":
        """Slots, or None where shared memory is too small to hold them with
        room to spare (Docker's default /dev/shm is 64 MB): then every batch
        goes through the pipe, slower but sure."""
        try:
            stat = os.statvfs(shm)
            if 2 * count * size * 4 > stat.f_bavail * stat.f_frsize:
                return None
            return cls(count, size)
        except (OSError, RuntimeError):  # no /dev/shm, or torch could not share the memory
            return None

    def acquire(self, position: int, samples: int, patience: float = 1.0) -> int | None:
        """The slot for batch `position`, once its previous batch is released;
        None if the samples do not fit or it stays busy for `patience` s."""
        count, size = self.buffers.shape
        if samples > size:
            return None
        slot, previous = position % count, position - count
        deadline = time.monotonic() + patience
        while int(self.released[slot]) < previous:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.001)
        return slot

    def release(self, position: int) -> None:
        self.released[position % len(self.released)] = position


class BatchDecoder(torch.utils.data.Dataset):
    """Decodes the batch `(position, item indices)` in a DataLoader worker; a
    bad file becomes an entry in `errors`, never an exception that stops the run."""

    def __init__(self, items: pd.DataFrame, sample_rate: int, slots: SharedSlots | None):
        self.paths = items["path"].tolist()
        # the reader's refusals (file outside the data root, dangling link, ...): failed unread
        self.refused = items[REFUSED].fillna("").astype(str).tolist() if REFUSED in items else [""] * len(items)
        self.starts = items["clip_start"].to_numpy(dtype=float)
        self.ends = items["clip_end"].to_numpy(dtype=float)
        self.sample_rate = sample_rate
        self.slots = slots

    def decode(self, index: int) -> np.ndarray:
        if self.refused[index]:
            raise AudioReadError(f"not read: {self.refused[index]}")
        end = None if math.isnan(self.ends[index]) else self.ends[index]
        audio = load_audio(self.paths[index], self.sample_rate, self.starts[index], end)
        if len(audio) == 0:
            raise AudioReadError(f"{self.paths[index]}: no samples in [{self.starts[index]}, {end}] s")
        return audio

    def __getitem__(self, task: tuple[int, list[int]]) -> DecodedBatch:
        position, indices = task
        good, audios, errors = [], [], {}
        for index in indices:
            try:
                audios.append(self.decode(index))
                good.append(index)
            except AudioReadError as err:
                errors[index] = str(err)
        offsets = np.cumsum([0] + [len(a) for a in audios])
        batch = DecodedBatch(position, good, offsets, errors)
        slot = self.slots.acquire(position, int(offsets[-1])) if self.slots is not None else None
        if slot is None:
            batch.samples = np.concatenate(audios) if audios else np.zeros(0, np.float32)
        else:
            batch.slot = slot
            buffer = self.slots.buffers[slot].numpy()
            for a, start in zip(audios, offsets):
                buffer[start:start + len(a)] = a
        return batch


def _as_is(batch):
    return batch


def _single_threaded_worker(_):
    """Decoding workers use one thread each: on few cores, intra-op threads in
    workers only spin against the encoder's threads in the main process."""
    torch.set_num_threads(1)


def default_num_workers() -> int:
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def decoded_batches(items: pd.DataFrame, batches: list[list[int]], sample_rate: int,
                    num_workers: int | None = None, slot_samples: int = 0) -> Iterator[DecodedBatch]:
    """The batches of `items`, decoded at `sample_rate`, in order. With workers,
    batches of up to `slot_samples` samples come through shared-memory slots."""
    num_workers = default_num_workers() if num_workers is None else num_workers
    slots = SharedSlots.fitting(num_workers * PREFETCH + 2, slot_samples) if num_workers and slot_samples else None
    loader = torch.utils.data.DataLoader(
        BatchDecoder(items, sample_rate, slots), sampler=list(enumerate(batches)), batch_size=None,
        collate_fn=_as_is, num_workers=num_workers, worker_init_fn=_single_threaded_worker,
        prefetch_factor=PREFETCH if num_workers else None)
    for batch in loader:
        if batch.slot is not None:
            batch.samples = slots.buffers[batch.slot].numpy()
        yield batch
        if slots is not None:  # the consumer asked for the next batch: it is done with this one
            slots.release(batch.position)
