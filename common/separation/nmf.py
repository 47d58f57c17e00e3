"""NMF separation with per-class spectral bases (the audio side of seed 002).

NMF itself (`kl_nmf`) is the classic multiplicative update for the KL
divergence, a few lines of torch: scikit-learn's `non_negative_factorization`
does the same (also with fixed bases) but 20x slower on these shapes in our
measurements; the tests check the two agree, with bases fixed and free.

Training (`learn_bases`, `train.py` in source_separation/): for each class,
the magnitude spectrograms of its solo training clips (digitally silent
frames dropped) are factorised into K bases (default 16). Saved as

    <stem>.bases.safetensors   "bases.<class>" tensors [F, K], unit-sum columns
    <stem>.bases.json          classes, K, STFT, sample rate, dataset, training clips, ...

Separation: the mixture's magnitude spectrogram V [F, T] is factorised with
the bases of the classes in the mixture fixed, each class's part
W_c A_c gives a soft Wiener mask, and the masks are applied to the mixture's
STFT. The classes come from the query: `classes` (target first; known or
predicted top-k by a saved probe), else the text naming the target and every
other class of the bases as the rest.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import MethodOption, Query, Separated, Separator
from .masks import HOP, N_FFT, apply_masks, stft, wiener_masks

FORMAT = "nmf-bases/1"
JSON_SUFFIX = ".bases.json"
DEFAULT_COMPONENTS = 16


class BasesError(UserError):
    """NMF bases that are missing, malformed or lack a class the query names."""


def class_key(name: str) -> str:
    """Class names compare without case and with spaces as underscores
    ("crying baby" == "crying_baby")."""
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def magnitude(audio: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    return np.abs(stft(audio, n_fft, hop))


def learn_bases(clips_by_class: dict[str, list[np.ndarray]], n_components: int = DEFAULT_COMPONENTS,
                n_fft: int = N_FFT, hop: int = HOP, max_iter: int = 200, seed: int = 0,
                progress=None, max_frames: int | None = None) -> dict[str, np.ndarray]:
    """{class: bases [F, K]} learned from each class's clips (at most
    `max_frames` evenly spaced non-silent frames); columns sum to one."""
    bases = {}
    for name, clips in clips_by_class.items():
        frames = np.concatenate([magnitude(c, n_fft, hop) for c in clips], axis=1).T   # [frames, F]
        frames = frames[frames.sum(axis=1) > 1e-6]          # digital silence carries no spectrum
        if max_frames and len(frames) > max_frames:
            frames = frames[np.linspace(0, len(frames) - 1, max_frames).astype(int)]
        if len(frames) < n_components:
            raise BasesError(f"class {name!r} has {len(frames)} non-silent frames in its training clips, fewer "
                             f"than the {n_components} bases asked for; give it more clips or fewer --components")
        w, _ = kl_nmf(frames.T, n_components=n_components, max_iter=max_iter, seed=seed)
        bases[name] = w / np.maximum(w.sum(axis=0, keepdims=True), 1e-12)
        if progress is not None:
            progress.update(1)
    return bases


def kl_nmf(spectrum: np.ndarray, bases: np.ndarray | None = None, n_components: int | None = None,
           max_iter: int = 200, seed: int = 0, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """V [F, T] ~ W [F, K] @ A [K, T], all >= 0, by multiplicative updates
    minimising the KL divergence (Lee & Seung). With `bases` given, W stays
    fixed and only the activations are fitted. Returns (W, A) as numpy."""
    import torch
    dtype = dtype or torch.float32
    v = torch.as_tensor(np.asarray(spectrum), dtype=dtype) + 1e-12
    gen = torch.Generator().manual_seed(int(seed))
    scale = float(v.mean()) ** 0.5 / max(1, (n_components or bases.shape[1])) ** 0.5
    if bases is None:
        w = torch.rand(v.shape[0], int(n_components), generator=gen, dtype=dtype) * scale + 1e-6
    else:
        w = torch.as_tensor(np.asarray(bases), dtype=dtype)
    a = torch.rand(w.shape[1], v.shape[1], generator=gen, dtype=dtype) * scale + 1e-6
    tiny = torch.finfo(dtype).tiny
    from ..probing.training import cpu_threads
    with cpu_threads("cpu"):   # these sizes run 10x faster on one thread than on contended cores
        for _ in range(int(max_iter)):
            a *= (w.T @ (v / (w @ a + tiny))) / (w.sum(dim=0)[:, None] + tiny)
            if bases is None:
                w *= ((v / (w @ a + tiny)) @ a.T) / (a.sum(dim=1)[None, :] + tiny)
    return w.numpy(), a.numpy()


def save_bases(bases: dict[str, np.ndarray], stem: str | Path, info: dict) -> Path:
    """Write `<stem>.bases.safetensors` and `<stem>.bases.json`; returns the JSON path."""
    import torch
    from safetensors.torch import save_file

    from ..files import atomic_path, atomic_write_json
    stem = Path(stem)
    weights = stem.with_name(stem.name + ".bases.safetensors")
    meta = stem.with_name(stem.name + JSON_SUFFIX)
    with atomic_path(weights) as tmp:
        save_file({f"bases.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in bases.items()}, str(tmp),
                  metadata={"format": FORMAT})
    record = {"format": FORMAT, "weights_file": weights.name, "classes": list(bases),
              "created": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    atomic_write_json(meta, record, default=str)
    return meta


def load_bases(path: str | Path, dataset: str | None = None, classes: list[str] | None = None
               ) -> tuple[Path, dict[str, np.ndarray], dict]:
    """(JSON path, {class: bases}, info) of a bases file, or of the newest one
    in a folder (of `dataset` and knowing every one of `classes`, if given)."""
    from safetensors.numpy import load_file
    path = Path(path)
    if path.is_dir() or not (path.exists() or path.name.endswith(JSON_SUFFIX)):   # a folder, perhaps not made yet
        path = find_bases(path, dataset, classes)
    if not path.name.endswith(JSON_SUFFIX) or not path.is_file():
        raise BasesError(f"{path} is not a saved NMF bases file (*{JSON_SUFFIX}); train bases with "
                         "`python train.py --data-root DIR` in source_separation/")
    info = json.loads(path.read_text())
    if info.get("format") != FORMAT:
        raise BasesError(f"{path} has format {info.get('format')!r}, not {FORMAT!r}; train the bases again")
    tensors = load_file(str(path.with_name(info["weights_file"])))
    bases = {name: tensors[f"bases.{name}"] for name in info["classes"]}
    return path, bases, info


def find_bases(folder: str | Path, dataset: str | None = None, classes: list[str] | None = None) -> Path:
    """The most recent bases JSON under `folder` of `dataset` (if given) that
    knows every class in `classes` (if given)."""
    folder = Path(folder)
    saved = []
    for path in folder.rglob(f"*{JSON_SUFFIX}") if folder.is_dir() else []:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        saved.append((info.get("created", ""), str(path), info))
    if not saved:
        raise BasesError(f"no NMF bases under {folder}: train them first "
                         "(`python train.py --data-root DIR` in source_separation/) or give --bases FILE")
    wanted = {class_key(c): c for c in classes or []}
    found = [(created, path) for created, path, info in saved
             if (dataset is None or info.get("dataset") == dataset)
             and set(wanted) <= {class_key(c) for c in info.get("classes", [])}]
    if not found:
        what = " and ".join(part for part in (f"of {dataset}" if dataset else "",
                                               f"that know {', '.join(map(repr, wanted.values()))}" if wanted else "")
                            if part)
        have = "; ".join(f"{Path(path).name} ({info.get('dataset')}: {_some(info.get('classes', []))})"
                         for _, path, info in sorted(saved, key=lambda s: s[:2], reverse=True)[:3])
        raise BasesError(f"no NMF bases {what} under {folder} (saved: {have}); train them "
                         "(`python train.py --dataset esc50|nsynth --data-root DIR`) or give --bases FILE")
    return Path(max(found)[1])


def _some(names, shown: int = 12) -> str:
    names = list(map(str, names))
    return ", ".join(names[:shown]) + (f", ... ({len(names)} classes)" if len(names) > shown else "")


class NMFSeparator(Separator):
    sample_rate = 16000   # replaced by the rate the bases were learned at
    method_options = (
        MethodOption("bases", str, None, "NMF bases (*.bases.json from train.py, or a folder holding them; "
                                         "default: the newest under source_separation/models/nmf/ that knows "
                                         "the classes asked for, of the probe's or benchmark's dataset)"),
        MethodOption("max_iter", int, 200, "multiplicative-update iterations per mixture"),
        MethodOption("mask_power", float, 2.0, "soft mask exponent (2: Wiener)"),
    )

    def __init__(self, bases: str | Path | None = None, max_iter: int = 200, mask_power: float = 2.0,
                 dataset: str | None = None, classes: list[str] | None = None):
        """`bases`: a file, or a folder whose newest bases of `dataset` knowing
        every one of `classes` are taken (both optional)."""
        if bases is None:
            from ..encoders import PROJECT_ROOT
            bases = PROJECT_ROOT / "source_separation" / "models" / "nmf"
        self.bases_path, self.bases, self.info = load_bases(bases, dataset, classes)
        self.dataset = self.info.get("dataset")
        self.keys = {class_key(name): name for name in self.bases}
        self.sample_rate = int(self.info["sample_rate"])
        self.n_fft, self.hop = int(self.info.get("n_fft", N_FFT)), int(self.info.get("hop", HOP))
        self.max_iter, self.mask_power = int(max_iter), float(mask_power)

    def config(self) -> dict:
        return {"bases": self.bases_path.name, "bases_created": self.info.get("created"),
                "dataset": self.info.get("dataset"), "n_components": self.info.get("n_components"),
                "classes": len(self.bases), "max_iter": self.max_iter, "mask_power": self.mask_power}

    def training_clips(self) -> set[str]:
        return set(self.info.get("train_clips", []))

    def unknown_classes(self, names) -> list[str]:
        return [n for n in names if class_key(n) not in self.keys]

    def resolve(self, query: Query) -> list[str]:
        """The bases' class names for the query, target first."""
        wanted = list(query.classes or [])
        if not wanted and query.text:
            wanted = [query.text]
        if not wanted:
            raise UserError("nmf needs to know what is in the mixture: give --classes TARGET OTHER..., "
                            "--query naming one of its classes, or --probe to predict them")
        names = []
        for name in wanted:
            key = class_key(name)
            if key not in self.keys:
                raise BasesError(f"the NMF bases {self.bases_path.name} have no class {name!r}; they know "
                                 f"{', '.join(sorted(self.bases))}")
            if self.keys[key] not in names:
                names.append(self.keys[key])
        if len(names) == 1:   # only the target named: every other class stands for the rest
            names += [n for n in self.bases if n != names[0]]
        return names

    def activations(self, spectrum: np.ndarray, bases: np.ndarray) -> np.ndarray:
        """A [K_total, T] >= 0 with bases [F, K_total] fixed: V ~ bases @ A."""
        return kl_nmf(spectrum, bases, max_iter=self.max_iter)[1]

    def separate(self, mixture: np.ndarray, query: Query, references=None) -> Separated:
        names = self.resolve(query)
        spec = stft(mixture, self.n_fft, self.hop)
        stacked = np.concatenate([self.bases[n] for n in names], axis=1)
        acts = self.activations(np.abs(spec), stacked)
        parts, start = [], 0
        for name in names:
            k = self.bases[name].shape[1]
            parts.append(self.bases[name] @ acts[start:start + k])
            start += k
        estimates = apply_masks(mixture, wiener_masks(parts, self.mask_power), spec, self.hop)
        return Separated(target=estimates[0], sources=dict(zip(names[1:], estimates[1:])),
                         info={"method": "nmf", "classes": names})


# --------------------------------------------------------------------------- training (train.py)
def training_clips(dataset: str, root, folds=(1, 2, 3), max_clips: int = 50, seed: int = 0
                   ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({class: [audio paths]}, {path: clip name as benchmarks list it}) of
    the solo clips to learn from: ESC-50 clips of `folds`, or NSynth train
    notes per family; at most `max_clips` per class, a seeded choice."""
    rng = np.random.default_rng(seed)
    if dataset == "esc50":
        from ..data import ESC50
        items = ESC50(root).items
        items = items[items["fold"].astype(int).isin([int(f) for f in folds])]
        names = dict(zip(items["path"], items["filename"]))
    elif dataset == "nsynth":
        from ..data.nsynth import read_nsynth
        items = read_nsynth(root).items
        items = items[items["split"] == "train"]
        names = dict(zip(items["path"], items["id"]))
    else:
        raise UserError(f"unknown dataset {dataset!r} for NMF bases; choose esc50 or nsynth")
    if items.empty:
        raise UserError(f"no {dataset} training clips under {root} (folds {list(folds)})" if dataset == "esc50"
                        else f"no nsynth-train notes under {root}")
    by_class = {}
    for label, group in items.sort_values("id").groupby("label"):
        paths = list(group["path"])
        if len(paths) > max_clips:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), size=max_clips, replace=False))]
        by_class[str(label)] = paths
    return by_class, names


def train_bases(dataset: str, root, work_dir: Path, folds=(1, 2, 3), n_components: int = DEFAULT_COMPONENTS,
                max_clips: int = 50, max_frames: int = 4000, max_iter: int = 200, sample_rate: int | None = None,
                seed: int = 0, name: str | None = None, n_fft: int = N_FFT, hop: int = HOP) -> Path:
    """Learn and save bases for every class of `dataset` (see train.py --help)."""
    from tqdm import tqdm

    from ..data.audio import load_audio
    rate = int(sample_rate or (32000 if dataset == "esc50" else 16000))
    by_class, names = training_clips(dataset, root, folds, max_clips, seed)
    clips = {label: [load_audio(p, rate) for p in paths] for label, paths in by_class.items()}
    with tqdm(total=len(clips), desc=f"NMF bases ({dataset})", unit="class") as bar:
        bases = learn_bases(clips, n_components, n_fft, hop, max_iter, seed, bar, max_frames=max_frames)
    what = f"folds{''.join(map(str, sorted(folds)))}" if dataset == "esc50" else "train"
    stem = Path(work_dir) / "models" / "nmf" / (name or f"{dataset}-{what}-k{n_components}")
    info = {"dataset": dataset, "sample_rate": rate, "n_components": n_components, "n_fft": n_fft, "hop": hop,
            "beta_loss": "kullback-leibler", "max_iter": max_iter, "max_frames": max_frames, "seed": seed,
            "folds": sorted(folds) if dataset == "esc50" else None, "data_root": str(root),
            "train_clips": sorted(names[p] for paths in by_class.values() for p in paths)}
    return save_bases(bases, stem, info)
