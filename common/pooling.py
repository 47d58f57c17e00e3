"""Pooling of frame features over time, padding excluded.

`PoolAccumulator` gathers running statistics per item, so that an item cut
into several windows (long audio, encoders with a native input length) is
pooled over the frames of all its windows exactly as if they were one."""
from __future__ import annotations

import torch

POOLINGS = ("mean", "mean+std", "max")


def pooled_dim(dim: int, method: str) -> int:
    return 2 * dim if method == "mean+std" else dim


def check_pooling(method: str) -> str:
    if method not in POOLINGS:
        raise ValueError(f"unknown pooling {method!r}; choose from {', '.join(POOLINGS)}")
    return method


class PoolAccumulator:
    """Per-item running statistics (float64) for one pooling method: sums and
    frame counts for mean, plus sums of squares for mean+std, maxima for max."""

    def __init__(self, num_items: int, dim: int, device: torch.device | str = "cpu", method: str = "mean"):
        self.method = check_pooling(method)
        self.count = torch.zeros(num_items, dtype=torch.float64, device=device)
        if method == "max":
            self.maximum = torch.full((num_items, dim), float("-inf"), dtype=torch.float64, device=device)
        else:
            self.total = torch.zeros(num_items, dim, dtype=torch.float64, device=device)
        if method == "mean+std":
            self.squares = torch.zeros_like(self.total)

    def add(self, items: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> None:
        """items [B] (which item each row belongs to), features [B, N, D], mask [B, N]."""
        items = items.to(self.count.device)
        self.count.index_add_(0, items, mask.sum(dim=1, dtype=torch.float64))
        if self.method == "max":
            masked = features.float().masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
            self.maximum.scatter_reduce_(0, items.unsqueeze(-1).expand_as(masked), masked.double(), reduce="amax")
        elif self.method == "mean":
            # one forward pass's frames are summed in float32 (float64 costs ~15x
            # on the CPU and far more on most GPUs); items accumulate in float64
            self.total.index_add_(0, items, (features.float() * mask.unsqueeze(-1)).sum(dim=1).double())
        else:  # mean+std: E[x^2] - E[x]^2 cancels, so its sums are float64 from the start
            x = features.double() * mask.unsqueeze(-1)
            self.total.index_add_(0, items, x.sum(dim=1))
            self.squares.index_add_(0, items, (x * x).sum(dim=1))

    def result(self) -> torch.Tensor:
        if self.method == "max":
            return self.maximum.float()
        count = self.count.clamp_min(1.0).unsqueeze(-1)
        mean = self.total / count
        if self.method == "mean":
            return mean.float()
        std = (self.squares / count - mean * mean).clamp_min(0).sqrt()
        return torch.cat([mean, std], dim=-1).float()


def pool(features: torch.Tensor, mask: torch.Tensor, method: str = "mean") -> torch.Tensor:
    """features [B, N, D], mask [B, N] (True = real frame) -> [B, D] ([B, 2D]
    for mean+std), in float32."""
    acc = PoolAccumulator(features.shape[0], features.shape[2], features.device, method)
    acc.add(torch.arange(features.shape[0], device=features.device), features, mask)
    return acc.result()
