"""Batches decoded in DataLoader workers and handed over through reused
shared-memory slots: same samples as a direct read, whatever path they take."""
import threading
import time

import numpy as np
import pytest
from toy import make_toy_task

from common.data.audio import load_audio
from common.data.loading import SharedSlots, decoded_batches
from common.extraction.extract import BatchBuilder


def _items(tmp_path, corrupt=0):
    task = make_toy_task(tmp_path / "data", corrupt=corrupt)
    return task.read(tmp_path / "data").items


@pytest.mark.parametrize("num_workers, slot_seconds, through_slots", [
    (0, 0, {False}), (2, 0, {False}), (2, 60.0, {True}), (2, 1.6, {True, False})])
def test_every_batch_holds_the_items_samples_in_order(tmp_path, num_workers, slot_seconds, through_slots):
    """18 items in 9 batches of 2 through 2 workers, i.e. more batches than the
    6 slots, so slots are reused; with 1.6 s slots some batches (up to 2 s)
    do not fit and come through the pipe: the samples must be the same."""
    items = _items(tmp_path, corrupt=1)
    batches = [list(range(i, min(i + 2, len(items)))) for i in range(0, len(items), 2)][::-1]
    seen, paths = [], set()
    for position, batch in enumerate(decoded_batches(items, batches, 16000, num_workers,
                                                     slot_samples=int(slot_seconds * 16000))):
        assert batch.position == position
        assert sorted(batch.indices + list(batch.errors)) == sorted(batches[position])
        paths.add(batch.slot is not None)
        for index, audio in zip(batch.indices, batch.waveforms()):
            np.testing.assert_array_equal(audio, load_audio(items["path"][index], 16000))
        seen += batch.indices
    assert sorted(seen) == list(range(1, len(items)))
    assert paths == through_slots


def test_a_slot_is_handed_out_again_only_after_its_batch_is_released():
    slots = SharedSlots(count=2, size=100)
    assert slots.acquire(0, 100) == 0 and slots.acquire(1, 50) == 1
    assert slots.acquire(2, 10, patience=0.05) is None        # batch 0 still holds slot 0
    assert slots.acquire(0, 101) is None                      # does not fit
    slots.release(0)
    assert slots.acquire(2, 10, patience=0.05) == 0
    later = threading.Timer(0.1, slots.release, args=(1,))
    later.start()
    started = time.monotonic()
    assert slots.acquire(3, 10, patience=5) == 1              # waits for the release, no longer
    assert time.monotonic() - started < 4


def test_small_shared_memory_means_no_slots(tmp_path):
    assert SharedSlots.fitting(4, 1000, shm=str(tmp_path / "absent")) is None
    assert SharedSlots.fitting(4, 10 ** 15) is None             # far beyond any /dev/shm
    assert SharedSlots.fitting(4, 1000) is not None


def test_batches_view_adjacent_equal_windows_and_pad_the_rest_in_a_reused_buffer():
    flat = np.arange(12, dtype=np.float32)
    adjacent = [flat[0:4], flat[4:8], flat[8:12]]
    build = BatchBuilder("cpu")
    view = build(adjacent)
    assert np.shares_memory(view.numpy(), flat)
    np.testing.assert_array_equal(view.numpy(), flat.reshape(3, 4))
    gapped = [flat[0:4], flat[5:9]]
    ragged = [flat[0:4] + 1, flat[4:6]]
    batches = []
    for windows in (ragged, gapped, [w.copy() for w in adjacent], ragged):
        batch = build(windows)
        assert batch.is_contiguous() and not np.shares_memory(batch.numpy(), flat)
        assert batch.shape == (len(windows), max(len(w) for w in windows))
        for row, w in zip(batch.numpy(), windows):
            np.testing.assert_array_equal(row[: len(w)], w)
            assert not row[len(w):].any()  # padding is zero, also where a longer batch wrote before
        batches.append(batch)
    pointers = [b.data_ptr() for b in batches]  # one buffer, grown when a batch needs more, not one per batch
    assert pointers[0] == pointers[1] and pointers[2] == pointers[3]
