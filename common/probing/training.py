"""Probe training on stored features.

Features live on the device as one tensor; batches are index slices of a
random permutation, so a step costs no per-item Python work. The default
recipe picks the learning rate and the epoch on the validation part from a
small, versioned grid, by the protocol's own metric (accuracy, or e.g. the
ICBHI score: `select_by`); the seeds' recipe pins lr 1e-3, batch 8, 100
epochs and keeps the last epoch. `refit_probe` then retrains on training and
validation items together at the chosen learning rate and epoch.

All learning rates of a recipe are trained at once: one copy of the head per
learning rate, the copies' parameters stacked along a leading dimension, every
copy stepping on the same batch (the batches a separate run per learning rate
would draw, since each run starts from the same seed) with its own Adam
learning rate. A copy whose validation score stops progressing for
`patience` epochs leaves the stack. This is the grid of separate runs, computed
in one pass: the first layer of all copies is one matrix product.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn

from .probes import LinearClassifier, ThreeLayerClassifier, WeightedLayerSum, build_head


@dataclass(frozen=True)
class Recipe:
    name: str
    lrs: tuple[float, ...]
    batch_size: int
    epochs: int
    select: str = "best"          # "best": epoch and lr chosen on validation; "last": last epoch
    patience: int | None = 20     # stop a learning rate after this many epochs without progress
    weight_decay: float = 0.0
    # Large training sets (None: off). The batch grows so that an epoch has
    # about `steps_per_epoch` steps: clamp(ceil(n_train / steps_per_epoch),
    # batch_size, max_batch_size).
    steps_per_epoch: int | None = None
    max_batch_size: int | None = None
    # Each learning rate sees at most about `item_budget` training items:
    # epochs = clamp(ceil(item_budget / n_train), min_epochs, epochs), and the
    # patience shrinks in the same proportion.
    item_budget: int | None = None
    min_epochs: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def plan(self, n_train: int) -> dict:
        """Batch size, epochs and patience used for `n_train` training items."""
        batch, epochs, patience = self.batch_size, self.epochs, self.patience
        if self.steps_per_epoch:
            batch = max(batch, math.ceil(n_train / self.steps_per_epoch))
            if self.max_batch_size:
                batch = min(batch, max(self.max_batch_size, self.batch_size))
        if self.item_budget and n_train * epochs > self.item_budget:
            epochs = min(epochs, max(self.min_epochs, math.ceil(self.item_budget / max(n_train, 1))))
            if patience:
                patience = max(1, math.ceil(patience * epochs / self.epochs))
        return {"batch_size": int(batch), "epochs": int(epochs), "patience": patience}


# Changing a value here changes results: bump the version with it.
# grid-v2 = grid-v1 (lrs 1e-4/1e-3/1e-2, batch 64, 100 epochs, patience 20) on
# training sets up to 16,384 items (ESC-50, UrbanSound8K, ICBHI folds); on
# larger ones the batch grows up to 1024 (256 steps an epoch) and epochs and
# patience shrink so each learning rate sees at most ~3.2M items (NSynth:
# 12 epochs of 289k items, patience 3).
DEFAULT_RECIPE = Recipe(name="grid-v2", lrs=(1e-4, 1e-3, 1e-2), batch_size=64, epochs=100,
                        steps_per_epoch=256, max_batch_size=1024, item_budget=3_200_000, min_epochs=10)
SEEDS_RECIPE = Recipe(name="seeds", lrs=(1e-3,), batch_size=8, epochs=100, select="last", patience=None)


@dataclass
class ProbeFit:
    head: str
    model: nn.Module
    scaler_mean: np.ndarray       # [D], or [L, D] for stacked layers
    scaler_scale: np.ndarray
    lr: float
    epoch: int
    curves: dict = field(default_factory=dict)       # per epoch: train/valid loss, accuracy, valid score
    grid: list = field(default_factory=list)         # per lr: best validation score and its epoch
    plan: dict = field(default_factory=dict)         # batch size, epochs and patience used
    layer_weights: list | None = None                # softmax layer weights (stacked layers), else None
    # validation predictions of the chosen (lr, epoch), made before any refit
    valid_predictions: np.ndarray | None = None
    balanced: bool = False                           # training batches drawn class-balanced
    refit: bool = False                              # weights retrained on train + valid (refit_probe)

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


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler statistics of the training items: per dimension for
    [N, D], per layer and dimension for [N, L, D]; zero scales become 1."""
    x = np.asarray(x, dtype=np.float32)
    scaler = StandardScaler().fit(x.reshape(len(x), -1))
    mean = scaler.mean_.astype(np.float32).reshape(x.shape[1:])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0).astype(np.float32).reshape(x.shape[1:])
    return mean, scale


def _scaled_tensor(x, mean: np.ndarray, scale: np.ndarray, device) -> torch.Tensor:
    out = np.subtract(np.asarray(x, dtype=np.float32), mean, dtype=np.float32)
    np.divide(out, scale, out=out)
    return torch.from_numpy(out).to(device)


# ---------------------------------------------------------------- stacked heads

_WRAPPERS = {LinearClassifier: "fc", ThreeLayerClassifier: "net"}


def _stacked_forward(module: nn.Module, p: dict, x: torch.Tensor, shared: bool, prefix: str = ""):
    """Run K copies of `module`, whose parameters are p[prefix + name] with a
    leading dimension K, on x: [B, ...] seen by all copies (shared) or
    [K, B, ...]. Returns (output, shared)."""
    if isinstance(module, nn.Linear):
        w, b = p[prefix + "weight"], p[prefix + "bias"]                    # [K, O, I], [K, O]
        k, o, i = w.shape
        if shared:  # one matrix product for all copies
            return torch.addmm(b.reshape(-1), x, w.reshape(k * o, i).T).view(len(x), k, o).transpose(0, 1), False
        return torch.baddbmm(b[:, None], x, w.transpose(1, 2)), False
    if isinstance(module, nn.ReLU):
        return torch.relu(x), shared
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            x, shared = _stacked_forward(child, p, x, shared, f"{prefix}{name}.")
        return x, shared
    if type(module) in _WRAPPERS:
        name = _WRAPPERS[type(module)]
        return _stacked_forward(getattr(module, name), p, x, shared, f"{prefix}{name}.")
    if isinstance(module, WeightedLayerSum):
        w = torch.softmax(p[prefix + "weights"], -1)                       # [K, L]
        x = torch.einsum("kl,bld->kbd", w, x) if shared else torch.einsum("kl,kbld->kbd", w, x)
        return _stacked_forward(module.head, p, x, False, prefix + "head.")
    # any other module: vmap over the copies
    from torch.func import functional_call, vmap
    own = {name[len(prefix):]: v for name, v in p.items() if name.startswith(prefix)}
    if not own:
        return (module(x), True) if shared else (vmap(module)(x), False)
    return vmap(lambda q, xx: functional_call(module, q, (xx,)), in_dims=(0, None if shared else 0))(own, x), False


class _Stack:
    """K copies of one initialised head, trained with Adam (torch.optim.Adam's
    update, one learning rate per copy)."""

    def __init__(self, template: nn.Module, lrs: list[float], weight_decay: float, device):
        self.template = template
        self.names = [name for name, _ in template.named_parameters()]
        k = len(lrs)
        self.params = [p.detach().to(device).unsqueeze(0).repeat(k, *[1] * p.dim()).requires_grad_()
                       for _, p in template.named_parameters()]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.lrs = torch.tensor(lrs, dtype=torch.float32, device=device)
        self.weight_decay, self.t = weight_decay, 0
        self.betas, self.eps = (0.9, 0.999), 1e-8

    def __len__(self):
        return len(self.lrs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _stacked_forward(self.template, dict(zip(self.names, self.params)), x, True)[0]

    @torch.no_grad()
    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lrs / (1 - b1 ** self.t)
        bc2 = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2).add_(self.eps)
            p.sub_(step_size.view(-1, *[1] * (p.dim() - 1)) * m / denom)

    def keep(self, positions: list[int]):
        index = torch.tensor(positions, device=self.lrs.device)
        self.params = [p.detach().index_select(0, index).requires_grad_() for p in self.params]
        self.m = [m.index_select(0, index) for m in self.m]
        self.v = [v.index_select(0, index) for v in self.v]
        self.lrs = self.lrs.index_select(0, index)

    def state(self, position: int) -> dict:
        return {name: p[position].detach().clone() for name, p in zip(self.names, self.params)}


@torch.no_grad()
def _evaluate_stacked(stack: _Stack, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192):
    """Per copy: mean loss, accuracy and the predicted classes [K, N]."""
    loss = torch.zeros(len(stack), device=x.device)
    predicted = []
    for i in range(0, len(x), chunk):
        logits, target = stack.forward(x[i:i + chunk]), y[i:i + chunk]
        loss += nn.functional.cross_entropy(logits.flatten(0, 1), target.repeat(len(stack)),
                                            reduction="none").view(len(stack), -1).sum(1)
        predicted.append(logits.argmax(-1))
    predicted = torch.cat(predicted, 1)
    return (loss / len(x)).tolist(), (predicted == y).float().mean(1).tolist(), predicted.cpu().numpy()


def class_balanced_weights(y: np.ndarray) -> np.ndarray:
    """Sampling weight of each item: 1 / its class's count, so that every class
    is drawn equally often (SUPERB's WeightedRandomSampler)."""
    counts = np.bincount(y)
    return 1.0 / counts[y]


def train_probe(head: str, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
                num_classes: int, recipe: Recipe = DEFAULT_RECIPE, seed: int = 0,
                device: torch.device | str = "cpu", progress=None,
                select_by: Callable[[np.ndarray, np.ndarray], float] | None = None,
                balanced: bool = False) -> ProbeFit:
    """Fit a StandardScaler on the training items only, then train `head` for
    every learning rate of the recipe and keep the best (lr, epoch) on the
    validation items (or the last epoch with `select="last"`).

    `select_by(y_true, y_pred)` scores validation predictions for that choice
    and for early stopping (default: accuracy; see common.probing.metrics.scorer);
    ties go to the lower validation loss. `balanced`: each epoch draws as many
    training items as there are, with replacement, class-balanced, instead of
    a permutation.

    x: [N, D] features, or [N, L, D] stacked layers: the head then reads a
    learned softmax-weighted sum of the L layers (WeightedLayerSum), and the
    scaler is fitted per layer. `progress` (e.g. a tqdm bar) gets
    len(recipe.lrs) * recipe.epochs updates in all, one per epoch and learning
    rate (a learning rate that stops early gets its remaining epochs at once).
    """
    x_train = np.asarray(x_train, dtype=np.float32)
    if x_train.ndim not in (2, 3):
        raise ValueError(f"features must be [N, D] or [N, layers, D], got shape {x_train.shape}")
    mean, scale = fit_scaler(x_train)
    xt = _scaled_tensor(x_train, mean, scale, device)
    xv = _scaled_tensor(np.asarray(x_valid, dtype=np.float32).reshape(-1, *x_train.shape[1:]), mean, scale, device)
    yt = torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=device)
    yv = torch.as_tensor(np.asarray(y_valid), dtype=torch.long, device=device)
    y_valid = np.asarray(y_valid)
    plan = recipe.plan(len(xt))
    batch_size, epochs, patience = plan["batch_size"], plan["epochs"], plan["patience"]
    selecting = recipe.select == "best" and len(xv) > 0

    torch.manual_seed(seed)  # every learning rate starts from this initialisation
    num_layers = x_train.shape[1] if x_train.ndim == 3 else None
    template = build_head(head, x_train.shape[-1], num_classes, num_layers).to(device)
    stack = _Stack(template, list(recipe.lrs), recipe.weight_decay, device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weights = torch.as_tensor(class_balanced_weights(np.asarray(y_train)), dtype=torch.double) if balanced else None

    count = len(recipe.lrs)
    active = list(range(count))                        # lr index of each stack position
    curves = [{k: [] for k in ("train_loss", "train_acc", "valid_loss", "valid_acc", "valid_score")}
              for _ in range(count)]
    best_key, best_epoch, best_state = [None] * count, [epochs] * count, [None] * count
    best_acc, best_predicted = [None] * count, [None] * count
    since = [0] * count
    for epoch in range(1, epochs + 1):
        if weights is None:
            order = torch.randperm(len(xt), generator=generator).to(device)
        else:
            order = torch.multinomial(weights, len(xt), replacement=True, generator=generator).to(device)
        loss_sum = torch.zeros(len(stack), device=device)
        correct = torch.zeros(len(stack), device=device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            xb, yb = xt.index_select(0, index), yt.index_select(0, index)
            logits = stack.forward(xb)                                   # [K, B, C]
            losses = nn.functional.cross_entropy(logits.flatten(0, 1), yb.repeat(len(stack)),
                                                 reduction="none").view(len(stack), -1).mean(1)
            stack.step(torch.autograd.grad(losses.sum(), stack.params))
            with torch.no_grad():
                loss_sum += losses * len(index)
                correct += (logits.argmax(-1) == yb).sum(1)
        train_loss, train_acc = (loss_sum / len(xt)).tolist(), (correct / len(xt)).tolist()
        valid = _evaluate_stacked(stack, xv, yv) if len(xv) else None
        stopped = []
        for pos, i in enumerate(active):
            curves[i]["train_loss"].append(train_loss[pos])
            curves[i]["train_acc"].append(train_acc[pos])
            if valid:
                score = select_by(y_valid, valid[2][pos]) if select_by else valid[1][pos]
                curves[i]["valid_loss"].append(valid[0][pos])
                curves[i]["valid_acc"].append(valid[1][pos])
                curves[i]["valid_score"].append(score)
            if selecting:
                key = (score, -valid[0][pos])
                if best_key[i] is None or key > best_key[i]:
                    best_key[i], best_epoch[i], best_state[i], since[i] = key, epoch, stack.state(pos), 0
                    best_acc[i], best_predicted[i] = valid[1][pos], valid[2][pos]
                else:
                    since[i] += 1
                    if patience and since[i] >= patience:
                        stopped.append(pos)
        if progress is not None:
            progress.update(len(active) + len(stopped) * (recipe.epochs - epoch))
        if stopped:
            active = [i for pos, i in enumerate(active) if pos not in stopped]
            if not active:
                break
            stack.keep([pos for pos in range(len(stack)) if pos not in stopped])
    if active and progress is not None:
        progress.update(len(active) * (recipe.epochs - epochs))
    if not selecting:
        for pos, i in enumerate(active):
            best_key[i], best_epoch[i], best_state[i] = (0.0, 0.0), epochs, stack.state(pos)

    grid = [{"lr": lr, "best_valid_score": best_key[i][0] if selecting else None,
             "best_valid_acc": best_acc[i] if selecting else None, "epoch": best_epoch[i],
             "epochs_run": len(curves[i]["train_loss"])} for i, lr in enumerate(recipe.lrs)]
    chosen = 0
    for i in range(1, count):
        if best_key[i] > best_key[chosen]:
            chosen = i
    model = build_head(head, x_train.shape[-1], num_classes, num_layers)
    model.load_state_dict({name: value.cpu() for name, value in best_state[chosen].items()})
    model.eval()
    weights = model.layer_weights() if isinstance(model, WeightedLayerSum) else None
    if not selecting and len(xv):  # the last epoch's validation predictions
        best_predicted[chosen] = _evaluate_stacked(stack, xv, yv)[2][active.index(chosen)]
    return ProbeFit(head, model, mean, scale, recipe.lrs[chosen], best_epoch[chosen], curves[chosen], grid,
                    plan, weights, best_predicted[chosen], balanced)


def refit_probe(fit: ProbeFit, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
                y_valid: np.ndarray, num_classes: int, recipe: Recipe = DEFAULT_RECIPE, seed: int = 0,
                device: torch.device | str = "cpu") -> ProbeFit:
    """Retrain `fit`'s head on training and validation items together (a new
    scaler on both) at the chosen learning rate for the chosen number of
    epochs, with the batch size and sampling of the selection run. The chosen
    (lr, epoch), grid, curves and validation predictions stay those measured
    before the refit: validation numbers never come from a probe that saw the
    validation items."""
    x_all = np.concatenate([np.asarray(x_train, dtype=np.float32),
                            np.asarray(x_valid, dtype=np.float32).reshape(-1, *np.shape(x_train)[1:])])
    y_all = np.concatenate([np.asarray(y_train), np.asarray(y_valid)])
    fixed = replace(recipe, name=recipe.name + "+refit", lrs=(fit.lr,), epochs=fit.epoch, select="last",
                    patience=None, batch_size=fit.plan["batch_size"], steps_per_epoch=None, item_budget=None,
                    min_epochs=1)
    again = train_probe(fit.head, x_all, y_all, x_all[:0], y_all[:0], num_classes, fixed, seed=seed,
                        device=device, balanced=fit.balanced)
    return replace(fit, model=again.model, scaler_mean=again.scaler_mean, scaler_scale=again.scaler_scale,
                   layer_weights=again.layer_weights, refit=True)
