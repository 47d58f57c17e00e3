"""Pooling of frame features over time, padding excluded."""
from __future__ import annotations

import torch

POOLINGS = ("mean", "mean+std", "max")


def pooled_dim(dim: int, method: str) -> int:
    return 2 * dim if method == "mean+std" else dim


def pool(features: torch.Tensor, mask: torch.Tensor, method: str = "mean") -> torch.Tensor:
    """features [B, N, D], mask [B, N] (True = real frame) -> [B, D] ([B, 2D]
    for mean+std). Computed in float32 whatever the features' dtype."""
    if method not in POOLINGS:
        raise ValueError(f"unknown pooling {method!r}; choose from {', '.join(POOLINGS)}")
    x = features.float()
    m = mask.to(x.dtype).unsqueeze(-1)
    count = m.sum(dim=1).clamp_min(1.0)
    if method == "max":
        return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    mean = (x * m).sum(dim=1) / count
    if method == "mean":
        return mean
    var = (((x - mean.unsqueeze(1)) ** 2) * m).sum(dim=1) / count
    return torch.cat([mean, var.clamp_min(0).sqrt()], dim=-1)
