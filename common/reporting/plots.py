"""PNG figures of a run (confusion matrix, t-SNE, training curves, layer
weights), of layer-wise probing, and of the leaderboard.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot,
no display, no global backend switch), so plotting works on headless machines
and inside tests. Every function writes one PNG (atomically) and returns its
path. `draw_in_child` runs one in a child process, so that a crash inside a
plotting library (scikit-learn's t-SNE has segfaulted on identical
embeddings) costs that figure only, never the run that asked for it.
"""
from __future__ import annotations

import hashlib
import inspect
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..files import atomic_path

DPI = 100
TSNE_POINTS = 2000
CHILD_TIMEOUT = 900.0   # seconds a figure may take before its child is stopped


class PlotError(RuntimeError):
    """A figure that could not be drawn (the run's results are unaffected)."""


def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # children fork from a server that has matplotlib loaded once, and no
    # threads (forking a process that runs torch's thread pools is unsafe)
    ctx.set_forkserver_preload(["common.reporting.plots"])
    return ctx


# One plotting worker serves every figure of a process: starting a child
# re-imports the entry script's module (and torch with it), about 3 s each, so
# a fresh child per figure cost the demo more than its probes. A worker that
# dies (a segfault) or hangs is replaced for the next figure.
_worker: ProcessPoolExecutor | None = None


def _stop_worker(kill: bool) -> None:
    global _worker
    if _worker is None:
        return
    if kill:
        for process in list(getattr(_worker, "_processes", {}).values()):
            process.kill()
    _worker.shutdown(wait=not kill, cancel_futures=True)
    _worker = None


def draw_in_child(function: Callable, *args, timeout: float = CHILD_TIMEOUT, **kwargs) -> Path:
    """`function(*args, **kwargs)` (a figure function: picklable, returns the
    PNG path) in the plotting worker process; PlotError saying why when it
    raises, its process is killed by a signal (a segfault) or it runs past
    `timeout`."""
    global _worker
    if _worker is None:
        _worker = ProcessPoolExecutor(max_workers=1, mp_context=_context())
    future = _worker.submit(function, *args, **kwargs)
    processes = list(getattr(_worker, "_processes", {}).values())
    try:
        return Path(future.result(timeout=timeout))
    except BrokenProcessPool:
        _stop_worker(kill=True)
        for process in processes:
            process.join(5)
        codes = [p.exitcode for p in processes if p.exitcode is not None]
        if codes and codes[0] < 0:
            raise PlotError(f"the plotting process was killed by {signal.Signals(-codes[0]).name}") from None
        raise PlotError(f"the plotting process exited with status {codes[0] if codes else 'unknown'}") from None
    except FuturesTimeout:
        _stop_worker(kill=True)
        raise PlotError(f"gave up after {timeout:.0f} s") from None
    except Exception as err:  # noqa: BLE001: the figure's own error, reported by the caller
        raise PlotError(f"{type(err).__name__}: {err}") from None


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, metadata: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=metadata, bbox_inches="tight", pad_inches=0.1)
    return path


def tsne_degenerate(x: np.ndarray) -> str | None:
    """Why t-SNE cannot map these embeddings (None when it can): non-finite
    values, or fewer than 5 distinct points (identical embeddings, e.g. of a
    dataset of silent clips, have crashed scikit-learn's t-SNE)."""
    if not np.all(np.isfinite(x)):
        return "the embeddings hold NaN or infinite values"
    distinct = len(np.unique(np.round(x, 6), axis=0)) if len(x) else 0
    if distinct < 5:
        return f"only {distinct} distinct embedding(s) among {len(x)} items"
    return None


def class_colors(n: int) -> np.ndarray:
    """n distinguishable RGBA colours (tab10/tab20, then a hue wheel)."""
    from matplotlib import colormaps
    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["gist_rainbow"](np.linspace(0, 1, n, endpoint=False))


# --------------------------------------------------------------------------- per run
def confusion_plot(matrix, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (each row = the recall spread of one
    true class), class names on the axes when they fit."""
    cm = np.asarray(matrix, dtype=float)
    n = len(classes)
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    side = float(np.clip(0.3 * n + 3.0, 5.0, 16.0))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 60:
        ax.set_xticks(range(n), labels=list(classes), rotation=90, fontsize=8 if n > 20 else 9)
        ax.set_yticks(range(n), labels=list(classes), fontsize=8 if n > 20 else 9)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def curves_plot(curves: dict, path: Path, title: str = "", chosen_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, training and validation."""
    fig = _figure(10, 4)
    for k, (kind, label) in enumerate((("loss", "cross-entropy loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for part, style in (("train", "-"), ("valid", "--")):
            values = curves.get(f"{part}_{kind}") or []
            if len(values):
                ax.plot(np.arange(1, len(values) + 1), values, style, label=part)
        if chosen_epoch:
            ax.axvline(chosen_epoch, color="grey", lw=0.8, ls=":", label=f"chosen epoch {chosen_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _digest(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _png_text(path: Path) -> dict:
    try:
        from PIL import Image
        with Image.open(path) as image:
            return dict(getattr(image, "text", {}) or image.info)
    except Exception:
        return {}


def tsne_plot(x: np.ndarray, y: np.ndarray, classes: Sequence[str], path: Path, title: str = "",
              max_points: int = TSNE_POINTS, seed: int = 0) -> Path:
    """2-D t-SNE of embeddings coloured by class, on at most `max_points`
    items (a fixed-seed subsample), after standardisation and PCA to 50
    dimensions. An existing PNG made from the same points is kept as is (the
    map does not depend on the probe head, so both heads share one)."""
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
    digest = _digest(x, y, np.asarray([max_points, seed]))
    path = Path(path)
    if path.exists() and _png_text(path).get("Comment", "") == f"tsne-input-sha1:{digest}":
        return path
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        keep = np.sort(rng.choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    fig = _figure(8, 6.5)
    ax = fig.add_subplot()
    degenerate = tsne_degenerate(x)
    if degenerate is None:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
        std = x.std(axis=0)
        z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
        with threadpool_limits(1):  # small problem: extra threads only contend for the cores
            if z.shape[1] > 50 and len(z) > 50:
                z = PCA(50, random_state=seed).fit_transform(z)
            options = {"n_components": 2, "init": "pca", "random_state": seed,
                       "perplexity": float(min(30.0, (len(z) - 1) / 3))}
            iterations = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
            options[iterations] = 500
            points = TSNE(**options).fit_transform(z)
        colors = class_colors(len(classes))
        for k, name in enumerate(classes):
            mask = y == k
            if mask.any():
                ax.scatter(points[mask, 0], points[mask, 1], s=10, color=colors[k], label=name, alpha=0.8,
                           linewidths=0)
        if len(classes) <= 20:
            ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    else:
        ax.text(0.5, 0.5, f"no t-SNE: {degenerate}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title}\nt-SNE of {len(x)} held-out embeddings", fontsize=10)
    return _save(fig, path, metadata={"Comment": f"tsne-input-sha1:{digest}"})


def layer_weights_plot(weights, layer_names: Sequence[str] | None, path: Path, title: str = "") -> Path:
    """Bar chart of the learned weights of a weighted sum of layers."""
    w = np.asarray(weights, dtype=float).reshape(-1)
    names = list(layer_names) if layer_names is not None and len(layer_names) == len(w) else \
        [str(i) for i in range(len(w))]
    fig = _figure(max(6.0, 0.45 * len(w) + 2), 4)
    ax = fig.add_subplot()
    ax.bar(range(len(w)), w, color="tab:blue")
    ax.set_xticks(range(len(w)), labels=names, rotation=45 if len(w) > 8 else 0, ha="right" if len(w) > 8 else "center")
    ax.set_xlabel("layer")
    ax.set_ylabel("weight")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def layer_curve_plot(layers: Sequence[str], means, stds, path: Path, metric: str = "accuracy",
                     title: str = "") -> Path:
    """Primary metric (mean ± std over folds and seeds) per layer, in depth order."""
    m, s = 100 * np.asarray(means, dtype=float), 100 * np.asarray(stds, dtype=float)
    fig = _figure(max(6.0, 0.5 * len(layers) + 2), 4)
    ax = fig.add_subplot()
    ax.errorbar(range(len(layers)), m, yerr=s, marker="o", capsize=3)
    best = int(np.nanargmax(m))
    ax.plot([best], [m[best]], "r*", markersize=12, label=f"best: {layers[best]} ({m[best]:.1f})")
    ax.set_xticks(range(len(layers)), labels=list(layers), rotation=45 if len(layers) > 8 else 0,
                  ha="right" if len(layers) > 8 else "center")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- leaderboard
def leaderboard_plot(columns: Sequence[str], encoders: Sequence[str], means, stds, path: Path,
                     title: str = "") -> Path:
    """Grouped bars: one group per task column, one bar per encoder; `means`
    and `stds` are [encoders, columns] in % (NaN = not run)."""
    m, s = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(stds, dtype=float))
    n_enc, n_col = m.shape
    fig = _figure(max(8.0, 1.2 * n_col * max(1, n_enc) ** 0.5 + 3), 5)
    ax = fig.add_subplot()
    width = 0.8 / max(n_enc, 1)
    colors = class_colors(max(n_enc, 1))
    for k, name in enumerate(encoders):
        pos = np.arange(n_col) - 0.4 + width * (k + 0.5)
        ok = ~np.isnan(m[k])
        ax.bar(pos[ok], m[k][ok], width, yerr=s[k][ok], capsize=2, label=name, color=colors[k])
    ax.set_xticks(range(n_col), labels=list(columns), rotation=30 if n_col > 4 else 0,
                  ha="right" if n_col > 4 else "center")
    ax.set_ylabel("primary metric (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
