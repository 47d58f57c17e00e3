"""Pooling of frame features over time, padding excluded.

`PoolAccumulator` gathers running statistics per item, so that an item cut
into several windows (long audio, encoders with a native input length) is
pooled over the frames of all its windows exactly as if they were one.

Every frame is weighted by the real audio it stands for: the valid frames of
one row (one window) share the row's real samples equally. A clip-level row
(one frame: PANNs/EfficientAT embedding, AST pooled output) thus weighs its
window's real length, so a 50 ms tail window counts 50 ms, not as much as a
full window; the frames of a frame-level row weigh about one hop each, so
frames of all windows count alike, as in one long sequence. mean and mean+std
are weighted means (and weighted standard deviations); max is the elementwise
maximum over every valid frame of every window, which weights cannot change:
a short tail window takes part in it like any other."""
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
    """Per-item running statistics (float64) for one pooling method: weighted
    sums and total weight for mean, plus weighted sums of squares for
    mean+std, maxima for max."""

    def __init__(self, num_items: int, dim: int, device: torch.device | str = "cpu", method: str = "mean"):
        self.method = check_pooling(method)
        self.weight = torch.zeros(num_items, dtype=torch.float64, device=device)
        if method == "max":
            self.maximum = torch.full((num_items, dim), float("-inf"), dtype=torch.float64, device=device)
        else:
            self.total = torch.zeros(num_items, dim, dtype=torch.float64, device=device)
        if method == "mean+std":
            self.squares = torch.zeros_like(self.total)

    def add(self, items: torch.Tensor, features: torch.Tensor, mask: torch.Tensor,
            samples: torch.Tensor | None = None) -> None:
        """items [B] (which item each row belongs to), features [B, N, D], mask
        [B, N], samples [B]: the real (unpadded) samples each row was computed
        from, shared equally by its valid frames. Without `samples` every
        valid frame weighs 1."""
        items = items.to(self.weight.device)
        frames = mask.sum(dim=1, dtype=torch.float64)
        row_weight = frames if samples is None else samples.to(self.weight.device, torch.float64)
        self.weight.index_add_(0, items, row_weight)
        # the weight of each valid frame of a row (the contract keeps >= 1 valid frame)
        per_frame = (row_weight / frames.clamp_min(1.0)).unsqueeze(-1)
        if self.method == "max":
            masked = features.float().masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
            self.maximum.scatter_reduce_(0, items.unsqueeze(-1).expand_as(masked), masked.double(), reduce="amax")
        elif self.method == "mean":
            # one forward pass's frames are summed in float32 (float64 costs ~15x
            # on the CPU and far more on most GPUs); items accumulate in float64
            self.total.index_add_(0, items, (features.float() * mask.unsqueeze(-1)).sum(dim=1).double() * per_frame)
        else:  # mean+std: E[x^2] - E[x]^2 cancels, so its sums are float64 from the start
            x = features.double() * mask.unsqueeze(-1)
            self.total.index_add_(0, items, x.sum(dim=1) * per_frame)
            self.squares.index_add_(0, items, (x * x).sum(dim=1) * per_frame)

    def result(self) -> torch.Tensor:
        if self.method == "max":
            return self.maximum.float()
        weight = self.weight.clamp_min(1e-12).unsqueeze(-1)  # items never added stay zero, not NaN
        mean = self.total / weight
        if self.method == "mean":
            return mean.float()
        std = (self.squares / weight - mean * mean).clamp_min(0).sqrt()
        return torch.cat([mean, std], dim=-1).float()


def pool(features: torch.Tensor, mask: torch.Tensor, method: str = "mean") -> torch.Tensor:
    """features [B, N, D], mask [B, N] (True = real frame) -> [B, D] ([B, 2D]
    for mean+std), in float32."""
    acc = PoolAccumulator(features.shape[0], features.shape[2], features.device, method)
    acc.add(torch.arange(features.shape[0], device=features.device), features, mask)
    return acc.result()
