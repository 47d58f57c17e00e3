import torch

from common.extraction.pooling import PoolAccumulator, pool


def test_padding_frames_never_enter_pooling():
    feats = torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    padded = feats.clone()
    padded[1, 3:] = 1e6  # garbage in padded frames must not matter
    for method in ("mean", "max", "mean+std"):
        out = pool(padded, mask, method)
        alone = pool(feats[1:, :3], mask[1:, :3], method)
        torch.testing.assert_close(out[1:], alone)
    torch.testing.assert_close(pool(feats, mask, "mean")[1], feats[1, :3].mean(0))
    torch.testing.assert_close(pool(feats, mask, "max")[1], feats[1, :3].amax(0))
    std = feats[1, :3].std(0, unbiased=False)
    torch.testing.assert_close(pool(feats, mask, "mean+std")[1], torch.cat([feats[1, :3].mean(0), std]))


def test_windows_of_one_item_pool_as_one_sequence():
    frames = torch.randn(1, 10, 3)
    whole = pool(frames, torch.ones(1, 10, dtype=torch.bool), "mean+std")
    acc = PoolAccumulator(1, 3, method="mean+std")
    acc.add(torch.tensor([0]), frames[:, :4], torch.ones(1, 4, dtype=torch.bool))
    second = torch.cat([frames[:, 4:], torch.zeros(1, 2, 3)], dim=1)  # last window padded
    acc.add(torch.tensor([0]), second, torch.tensor([[True] * 6 + [False] * 2]))
    torch.testing.assert_close(acc.result(), whole)


# ---- windows of long audio -----------------------------------------------------
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from common.encoders.base import Encoder, Layer  # noqa: E402
from common.extraction.extract import embed_batch  # noqa: E402


class ClipMean(Encoder):
    """A clip-level toy (one frame per window, like PANNs' embedding): the mean
    of the window's samples, padding included, as a real model would see it."""
    sample_rate = 1000
    window_seconds = 1.0

    def __init__(self, min_seconds: float = 0.0):
        super().__init__()
        self.min_seconds = min_seconds
        self.layers = [Layer("clip", 1)]
        self.default_layer = "clip"

    def forward(self, waveforms, lengths, layers):
        clip = waveforms.mean(dim=1, keepdim=True)[:, None, :]
        return {"clip": (clip, torch.ones(len(waveforms), 1, dtype=torch.bool))}


class FrameValues(ClipMean):
    """A frame-level toy: one frame per 10 samples, its first sample; frames
    that start in padding are masked."""
    hop = 10

    def forward(self, waveforms, lengths, layers):
        frames = waveforms[:, :: self.hop, None]
        starts = torch.arange(frames.shape[1]) * self.hop
        return {"clip": (frames, starts[None, :] < lengths[:, None])}


def one_second_and_a_tail():
    return np.concatenate([np.ones(1000), np.zeros(50)]).astype(np.float32)  # 1 s of ones + 50 ms of zeros


@pytest.mark.parametrize("encoder", [ClipMean(), ClipMean(min_seconds=0.2), FrameValues()],
                         ids=["clip-level", "clip-level, tail padded to 0.2 s", "frame-level"])
def test_a_short_tail_window_weighs_its_duration(encoder):
    audio = one_second_and_a_tail()
    share = 1000 / 1050  # duration-weighted mean; counting windows alike gave 0.5
    pooled = {method: embed_batch(encoder, [audio], ["clip"], method, torch.device("cpu"))["clip"][0]
              for method in ("mean", "mean+std", "max")}
    assert pooled["mean"][0] == pytest.approx(share, rel=0.01)
    mean, std = pooled["mean+std"]
    assert mean == pytest.approx(share, rel=0.01)
    assert std == pytest.approx(np.sqrt(share * (1 - share)), rel=0.01)  # std of the samples themselves
    # max: the elementwise maximum over every valid frame of every window;
    # weights cannot change it, and the tail takes part like any window
    assert pooled["max"][0] == pytest.approx(1.0)
    tail_only = embed_batch(encoder, [audio[1000:] + 30.0], ["clip"], "max", torch.device("cpu"))["clip"][0]
    with_tail = embed_batch(encoder, [np.concatenate([audio[:1000], audio[1000:] + 30.0])], ["clip"], "max",
                            torch.device("cpu"))["clip"][0]
    assert with_tail[0] == pytest.approx(tail_only[0])


@pytest.mark.parametrize("method", ["mean", "mean+std", "max"])
def test_windows_pool_as_if_they_were_one(method):
    """Frame-level: the windows' frames pooled together == the whole clip's
    frames in one pass. Clip-level (the mean of each window's samples): the
    weighted mean over windows == the model's output on the whole clip."""
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(2550).astype(np.float32)  # 1 s + 1 s + 0.55 s
    windowed, whole = FrameValues(), FrameValues()
    whole.window_seconds = None
    got = embed_batch(windowed, [audio], ["clip"], method, torch.device("cpu"))["clip"]
    ref = embed_batch(whole, [audio], ["clip"], method, torch.device("cpu"))["clip"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    if method == "mean":
        clip = embed_batch(ClipMean(), [audio], ["clip"], method, torch.device("cpu"))["clip"]
        np.testing.assert_allclose(clip[0, 0], audio.astype(np.float64).mean(), rtol=1e-5, atol=1e-6)


def test_without_sample_counts_every_valid_frame_weighs_one():
    feats = torch.tensor([[[1.0], [3.0]], [[5.0], [0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    acc = PoolAccumulator(1, 1)
    acc.add(torch.tensor([0, 0]), feats, mask)
    assert acc.result().item() == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    weighted = PoolAccumulator(1, 1)
    weighted.add(torch.tensor([0, 0]), feats, mask, torch.tensor([200, 50]))
    assert weighted.result().item() == pytest.approx((100 * 1 + 100 * 3 + 50 * 5) / 250)
