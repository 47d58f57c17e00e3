import torch

from common.pooling import PoolAccumulator, pool


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
