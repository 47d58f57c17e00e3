"""Probe training on stored features.

Features live on the device as one tensor; batches are index slices of a
random permutation, so a step costs no per-item Python work. The default
recipe picks the learning rate and the epoch on the validation part from a
small, versioned grid; the seeds' recipe pins lr 1e-3, batch 8, 100 epochs and
keeps the last epoch.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn

from .probes import build_head


@dataclass(frozen=True)
class Recipe:
    name: str
    lrs: tuple[float, ...]
    batch_size: int
    epochs: int
    select: str = "best"          # "best": epoch and lr chosen on validation; "last": last epoch
    patience: int | None = 20     # stop a learning rate after this many epochs without progress
    weight_decay: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# Changing a value here changes results: bump the version with it.
DEFAULT_RECIPE = Recipe(name="grid-v1", lrs=(1e-4, 1e-3, 1e-2), batch_size=64, epochs=100)
SEEDS_RECIPE = Recipe(name="seeds", lrs=(1e-3,), batch_size=8, epochs=100, select="last", patience=None)


@dataclass
class ProbeFit:
    head: str
    model: nn.Module
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    lr: float
    epoch: int
    curves: dict = field(default_factory=dict)       # per epoch: train/valid loss and accuracy
    grid: list = field(default_factory=list)         # per lr: best validation accuracy and its epoch

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
        scaled = (np.asarray(x, dtype=np.float32) - self.scaler_mean) / self.scaler_scale
        self.model.to(device).eval()
        logits = _forward_chunked(self.model, torch.as_tensor(scaled, dtype=torch.float32, device=device))
        return torch.softmax(logits, dim=-1).cpu().numpy()


@contextmanager
def cpu_threads(device, threads: int = 1):
    """Small probe steps run fastest on one CPU thread (intra-op threads only
    add synchronisation at these sizes); GPUs are unaffected."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _forward_chunked(model: nn.Module, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    return torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)]) if len(x) else model(x)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = _forward_chunked(model, x)
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(-1) == y).float().mean().item()


def train_probe(head: str, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
                num_classes: int, recipe: Recipe = DEFAULT_RECIPE, seed: int = 0,
                device: torch.device | str = "cpu", progress=None) -> ProbeFit:
    """Fit a StandardScaler on the training items only, then train `head` for
    every learning rate of the recipe and keep the best (lr, epoch) on the
    validation items (or the last epoch with `select="last"`)."""
    scaler = StandardScaler().fit(x_train)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0).astype(np.float32)
    mean = scaler.mean_.astype(np.float32)

    def to_device(x, y):
        return (torch.as_tensor((np.asarray(x, np.float32) - mean) / scale, device=device),
                torch.as_tensor(np.asarray(y), dtype=torch.long, device=device))

    xt, yt = to_device(x_train, y_train)
    xv, yv = to_device(x_valid, y_valid)
    selecting = recipe.select == "best" and len(xv) > 0
    best = None  # (valid acc, -valid loss, lr, epoch, state, curves)
    grid = []
    for lr in recipe.lrs:
        torch.manual_seed(seed)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        model = build_head(head, xt.shape[1], num_classes).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
        curves = {k: [] for k in ("train_loss", "train_acc", "valid_loss", "valid_acc")}
        lr_best, since = None, 0
        for epoch in range(1, recipe.epochs + 1):
            model.train()
            order = torch.randperm(len(xt), generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            for start in range(0, len(order), recipe.batch_size):
                index = order[start:start + recipe.batch_size]
                logits = model(xt[index])
                loss = nn.functional.cross_entropy(logits, yt[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(index)
                correct += (logits.argmax(-1) == yt[index]).sum()
            curves["train_loss"].append(loss_sum.item() / len(xt))
            curves["train_acc"].append(correct.item() / len(xt))
            if len(xv):
                valid_loss, valid_acc = _evaluate(model, xv, yv)
                curves["valid_loss"].append(valid_loss)
                curves["valid_acc"].append(valid_acc)
            if progress is not None:
                progress.update(1)
            if selecting:
                key = (curves["valid_acc"][-1], -curves["valid_loss"][-1])
                if lr_best is None or key > lr_best[0]:
                    lr_best, since = (key, epoch, copy.deepcopy(model.state_dict())), 0
                else:
                    since += 1
                    if recipe.patience and since >= recipe.patience:
                        if progress is not None:
                            progress.update(recipe.epochs - epoch)
                        break
        if not selecting:
            lr_best = ((0.0, 0.0), recipe.epochs, copy.deepcopy(model.state_dict()))
        grid.append({"lr": lr, "best_valid_acc": lr_best[0][0] if selecting else None, "epoch": lr_best[1],
                     "epochs_run": len(curves["train_loss"])})
        if best is None or lr_best[0] > best[0]:
            best = (lr_best[0], lr, lr_best[1], lr_best[2], curves)
    _, lr, epoch, state, curves = best
    model = build_head(head, xt.shape[1], num_classes)
    model.load_state_dict(state)
    return ProbeFit(head, model.cpu().eval(), mean, scale, lr, epoch, curves, grid)
