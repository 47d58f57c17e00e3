"""Probe training speed: the seeds' config (lr 1e-3, batch 8, 100 epochs, last
epoch) against the default recipe, both heads, on NSynth-sized synthetic
features (289,205 training and 12,678 validation items, 768-d, 11 classes).

    python bench/train_speed.py                      # seeds: 1 epoch timed, extrapolated to 100
    python bench/train_speed.py --seeds-epochs 3
    python bench/train_speed.py --full               # the seeds' 100 epochs (hours on CPU)
    python bench/train_speed.py --items 50000 --device cuda

The features are class sub-clusters plus anisotropic noise: learnable, not
separable (accuracy ~80-90%), and a little better with the three-layer head.
Training runs on one CPU thread, as `common.probing.evaluate` runs it. Times are wall
clock and process CPU time; the speed-up uses CPU time on CPU (robust to other
jobs on the machine) and wall time on GPUs. With --seeds-epochs K the seeds'
time is K epochs' time x 100/K, and its validation accuracy is the one after K
epochs, not after 100 (which may be lower: the seeds' config overfits; on 10,000
items, --full, it ends at 0.68 / 0.77 against the default's 0.79 / 0.79).
The last line is the key figure.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.probing.training import DEFAULT_RECIPE, SEEDS_RECIPE, Recipe, cpu_threads, train_probe  # noqa: E402


def synthetic_features(items: int, valid: int, dim: int = 768, classes: int = 11, clusters: int = 3,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each class is `clusters` Gaussian blobs in a 32-d subspace, mixed into
    `dim` dimensions, plus noise with unequal scales per dimension."""
    gen = torch.Generator().manual_seed(seed)
    sub = 32
    centers = (torch.randn(classes, 1, sub, generator=gen) * 0.26
               + torch.randn(classes, clusters, sub, generator=gen) * 0.30).reshape(classes * clusters, sub)
    mixing = torch.linalg.qr(torch.randn(dim, sub, generator=gen))[0].T * 2.0   # [sub, dim], orthonormal rows x2
    noise_scale = torch.exp(torch.randn(dim, generator=gen) * 0.5)
    offset = torch.randn(dim, generator=gen) * 3
    n = items + valid
    y = torch.randint(classes, (n,), generator=gen)
    blob = y * clusters + torch.randint(clusters, (n,), generator=gen)
    x = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 32768):
        j = slice(i, min(i + 32768, n))
        signal = (centers[blob[j]] + torch.randn(len(blob[j]), sub, generator=gen) * 0.45) @ mixing
        x[j] = (signal + torch.randn(len(blob[j]), dim, generator=gen) * noise_scale + offset).numpy()
    y = y.numpy()
    return x[:items], y[:items], x[items:], y[items:]


class Epochs:
    """A progress sink that counts updates (the tqdm contract)."""

    def __init__(self):
        self.n = 0

    def update(self, k=1):
        self.n += k


def timed(head, recipe, data, device, classes):
    x_train, y_train, x_valid, y_valid = data
    sink = Epochs()
    wall, cpu = time.perf_counter(), time.process_time()
    with cpu_threads(device):
        fit = train_probe(head, x_train, y_train, x_valid, y_valid, classes, recipe, seed=0, device=device,
                          progress=sink)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert sink.n == len(recipe.lrs) * recipe.epochs, (sink.n, recipe)
    valid_acc = fit.curves["valid_acc"][fit.epoch - 1]
    return fit, wall, cpu, valid_acc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=289_205, help="training items (NSynth train: 289,205)")
    p.add_argument("--valid", type=int, default=12_678, help="validation items (NSynth valid: 12,678)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--device", default="cpu")
    p.add_argument("--heads", nargs="+", default=["linear", "three_layer"])
    p.add_argument("--seeds-epochs", type=int, default=1,
                   help="epochs of the seeds' config to time; the time is extrapolated to 100 epochs")
    p.add_argument("--full", action="store_true", help="run the seeds' config for all its 100 epochs")
    args = p.parse_args(argv)

    t = time.perf_counter()
    data = synthetic_features(args.items, args.valid, args.dim, args.classes)
    print(f"{args.items:,} training + {args.valid:,} validation items x {args.dim} float32, {args.classes} classes "
          f"(made in {time.perf_counter() - t:.0f} s); device {args.device}, "
          f"{'1 thread' if torch.device(args.device).type == 'cpu' else 'GPU'}", flush=True)
    print(f"default recipe {DEFAULT_RECIPE.name}: {DEFAULT_RECIPE.plan(args.items)} for {args.items:,} items",
          flush=True)
    seeds_epochs = SEEDS_RECIPE.epochs if args.full else min(args.seeds_epochs, SEEDS_RECIPE.epochs)
    seeds_recipe = Recipe(**{**SEEDS_RECIPE.to_dict(), "epochs": seeds_epochs})
    use_cpu_time = torch.device(args.device).type == "cpu"
    summary = {}
    for head in args.heads:
        _, wall, cpu, seeds_acc = timed(head, seeds_recipe, data, args.device, args.classes)
        factor = SEEDS_RECIPE.epochs / seeds_epochs
        note = "" if seeds_epochs == SEEDS_RECIPE.epochs else \
            f" (extrapolated from {seeds_epochs} epoch{'s' * (seeds_epochs > 1)}: {wall:.0f} s wall, {cpu:.0f} s CPU)"
        print(f"{head:12s} seeds   100 epochs: {wall * factor:8.0f} s wall {cpu * factor:8.0f} s CPU{note}; "
              f"valid acc {seeds_acc:.4f} after {seeds_epochs} epoch{'s' * (seeds_epochs > 1)}", flush=True)
        fit, d_wall, d_cpu, default_acc = timed(head, DEFAULT_RECIPE, data, args.device, args.classes)
        runs = ", ".join(f"lr {g['lr']:g}: {g['epochs_run']} ep (best {g['best_valid_acc']:.4f} @ {g['epoch']})"
                         for g in fit.grid)
        print(f"{head:12s} default {d_wall:8.0f} s wall {d_cpu:8.0f} s CPU; valid acc {default_acc:.4f} "
              f"(lr {fit.lr:g}, epoch {fit.epoch}; {runs})", flush=True)
        speed = (cpu * factor / d_cpu) if use_cpu_time else (wall * factor / d_wall)
        summary[head] = (speed, seeds_acc, default_acc)
    bound = "" if seeds_epochs == SEEDS_RECIPE.epochs else f" (seeds after {seeds_epochs} ep)"
    print(f"speed-up {' '.join(f'{h} {s[0]:.1f}x' for h, s in summary.items())}"
          f"{' (CPU time)' if use_cpu_time else ''}, accuracy seeds "
          f"{'/'.join(f'{s[1]:.3f}' for s in summary.values())}{bound} default "
          f"{'/'.join(f'{s[2]:.3f}' for s in summary.values())}")


if __name__ == "__main__":
    main()
