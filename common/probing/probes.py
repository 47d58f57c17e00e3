"""The two probe heads, exactly as the seeds define them, and SUPERB's
learnable weighted sum of layers as an optional input stage."""
from __future__ import annotations

import torch
from torch import nn


class LinearClassifier(nn.Module):
    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ThreeLayerClassifier(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WeightedLayerSum(nn.Module):
    """SUPERB's featurizer: x [N, L, D] -> sum_l softmax(w)_l x[:, l] -> head.
    The weights start at zero (a plain mean over the layers) and are learned
    with the head."""

    def __init__(self, num_layers: int, head: nn.Module):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.einsum("l,nld->nd", torch.softmax(self.weights, 0), x))

    def layer_weights(self) -> list[float]:
        return torch.softmax(self.weights.detach(), 0).cpu().tolist()


HEADS = {"linear": LinearClassifier, "three_layer": ThreeLayerClassifier}


def build_head(name: str, in_dim: int, num_classes: int, num_layers: int | None = None) -> nn.Module:
    """`num_layers`: inputs are [N, num_layers, in_dim] stacked layers, summed
    with learned softmax weights before the head (None: inputs are [N, in_dim])."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose from {', '.join(HEADS)}")
    head = HEADS[name](in_dim, num_classes)
    return head if num_layers is None else WeightedLayerSum(num_layers, head)
