"""Classify new audio files with a saved probe (the task folders' predict.py).

    python predict.py FILE_OR_FOLDER [--top-k 5] [--encoder NAME] [--head linear|three_layer]
                      [--protocol P] [--work-dir DIR] [--device auto] [--out CSV]

The probe saved by train.py (first fold, first seed) is loaded, the encoder is
rebuilt from the settings stored with it and must produce the same config()
(checkpoint, options, library versions where the encoder records them),
sample rate and embedding size; otherwise the probe is refused. Each file is
decoded at the encoder's rate, embedded with the stored layer and pooling,
standardised with the probe's scaler and classified.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.audio import AudioReadError, load_audio
from ..encoders import PROJECT_ROOT
from ..entry import add_debug_option, entry_point
from ..errors import UserError
from ..files import atomic_path
from ..extraction.pooling import check_pooling, pooled_dim
from ..options import HelpFormatter, device, positive_int
from ..task import Task
from .probe_io import ProbeError, SavedProbe, find_probes, load_probe

AUDIO_SUFFIXES = (".wav", ".flac")
# fields of a saved probe that prediction needs besides the probe itself
PREDICT_FIELDS = ("task", "encoder", "pooling", "layer")


class PredictionError(UserError):
    """Some input files could not be classified (each is listed with why)."""


def _json_normal(value):
    """As the value comes back from JSON (tuples -> lists, keys -> str)."""
    return json.loads(json.dumps(value, default=str))


def default_work_dirs(task: Task) -> list[Path]:
    return [task.folder, PROJECT_ROOT / "demo_runs" / task.folder.name]


def choose_probe(task: Task, work_dirs: list[Path], encoder: str | None = None, head: str | None = None,
                 protocol: str | None = None, store: str | None = None, layer: str | None = None,
                 split: str | None = None) -> Path:
    """The most recent saved probe of `task` matching the given fields."""
    found = find_probes(work_dirs, task=task.name, encoder=encoder, head=head, protocol=protocol, store=store,
                        layer=layer, split=split)
    if not found:
        wanted = ", ".join(f"{k} {v}" for k, v in (("encoder", encoder), ("head", head), ("protocol", protocol),
                                                   ("store", store), ("layer", layer), ("split", split)) if v)
        raise ProbeError(f"no saved {task.name} probe{' with ' + wanted if wanted else ''} under "
                         f"{' or '.join(str(Path(w) / 'results') for w in work_dirs)}: run `python train.py` in "
                         f"{task.folder.name}/ first")
    return found[0][0]


class Predictor:
    """A saved probe plus the encoder rebuilt from its stored settings."""

    def __init__(self, probe: SavedProbe, device="cpu", pretrained_dir: str | Path | None = None):
        import torch

        from ..encoders import build_encoder
        info = probe.info
        self.probe, self.info = probe, info
        self.device = torch.device(device)
        try:
            encoder = build_encoder(info["encoder"], pretrained_dir, **info.get("encoder_options", {}))
        except Exception as err:
            raise ProbeError(f"cannot rebuild the encoder {info['encoder']!r} of the saved probe {probe.path}: "
                             f"{err}") from err
        self.check(encoder)
        self.encoder = encoder.to(self.device)
        self.layers = list(info.get("input_layers") or [info["layer"]])
        self.stacked = bool(info.get("num_layers"))
        self.pooling = info["pooling"]
        precision = info.get("precision", "fp32")
        self.precision = "fp32" if self.device.type == "cpu" and precision == "fp16" else precision

    def check(self, encoder) -> None:
        """Refuse, in one sentence, an encoder that would not give the
        embeddings the probe was trained on."""
        info, path = self.info, self.probe.path
        stored, now = _json_normal(info.get("encoder_config", {})), _json_normal(encoder.config())
        if stored != now:
            keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
            shown = "; ".join(f"{k}: stored {stored.get(k)!r}, now {now.get(k)!r}" for k in keys[:4])
            raise ProbeError(
                f"the saved probe {path} was trained on {info['encoder']} features made with another encoder "
                f"configuration ({shown}), so its predictions would be meaningless; extract the features and "
                f"train again with this encoder (python extract.py ... && python train.py)")
        if info.get("sample_rate") not in (None, encoder.sample_rate):
            raise ProbeError(f"the saved probe {path} expects audio at {info['sample_rate']} Hz but the encoder "
                             f"{info['encoder']} now reads {encoder.sample_rate} Hz; train the probe again")
        try:
            check_pooling(info["pooling"])
        except ValueError as err:
            raise ProbeError(f"the saved probe {path} uses a pooling this version does not know: {err}") from err
        dims = encoder.layer_dims()
        layers = info.get("input_layers") or ([] if info.get("num_layers") else [info["layer"]])
        if not layers:
            raise ProbeError(f"the saved probe {path} reads stacked layers whose names were not saved with it; "
                             f"train it again with this version")
        for layer in layers:
            if layer not in dims:
                raise ProbeError(f"the saved probe {path} was trained on layer {layer!r}, which the encoder "
                                 f"{info['encoder']} does not have (layers: {', '.join(dims)})")
            width = pooled_dim(dims[layer], info["pooling"])
            if width != info["in_dim"]:
                raise ProbeError(f"the saved probe {path} takes {info['in_dim']}-dimensional embeddings but "
                                 f"{info['encoder']}/{layer} with {info['pooling']} pooling gives {width}")

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        from ..extraction.extract import embed_batch
        out = embed_batch(self.encoder, audios, self.layers, self.pooling, self.device, self.precision)
        if self.stacked:
            return np.stack([out[name] for name in self.layers], axis=1)   # [N, L, D]
        return out[self.layers[0]]

    def predict_files(self, files: list[Path], top_k: int = 5, batch: int = 16) -> pd.DataFrame:
        """One row per file: file, top1, p1, ..., top<k>, p<k> (and error)."""
        classes = self.probe.classes
        k = max(1, min(top_k, len(classes)))
        rows = []
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            good, audios = [], []
            for path in chunk:
                try:
                    audio = load_audio(path, self.encoder.sample_rate)
                    if len(audio) == 0:
                        raise AudioReadError(f"{path} holds no samples")
                    good.append(path)
                    audios.append(audio)
                except AudioReadError as err:
                    rows.append({"file": str(path), "error": str(err)})
            if not good:
                continue
            proba = self.probe.predict_proba(self.embed(audios), self.device)
            for path, p in zip(good, proba):
                order = np.argsort(-p, kind="stable")[:k]
                row = {"file": str(path)}
                for rank, c in enumerate(order, 1):
                    row[f"top{rank}"] = classes[c]
                    row[f"p{rank}"] = round(float(p[c]), 4)
                rows.append(row)
        order = {str(f): i for i, f in enumerate(files)}
        frame = pd.DataFrame(rows)
        frame = frame.iloc[np.argsort([order[f] for f in frame["file"]], kind="stable")].reset_index(drop=True)
        columns = ["file"] + [f"{n}{r}" for r in range(1, k + 1) for n in ("top", "p")]
        columns += ["error"] if "error" in frame else []
        return frame.reindex(columns=columns)


def audio_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():  # broken links are kept: they are listed as failed, not silently left out
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                      and (p.is_file() or p.is_symlink()))
    raise ProbeError(f"{path} is neither an audio file nor a folder")


# --------------------------------------------------------------------------- command line
def predict_parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"Classify audio files with a probe trained by train.py on {task.title} "
                    f"(classes of the probe's protocol). A file prints its top-k classes; a folder "
                    f"(searched recursively for *.wav and *.flac) writes a CSV with one row per file.",
        formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="audio file(s) or folder(s)")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to show per file")
    p.add_argument("--encoder", help="use a probe trained on this encoder's features (default: the most recent)")
    p.add_argument("--store", help="use a probe trained on this feature store (default: any)")
    p.add_argument("--layer", help="use a probe trained on this layer (default: any)")
    p.add_argument("--head", choices=("linear", "three_layer"), help="probe head (default: the most recent)")
    p.add_argument("--protocol", choices=list(task.protocols), help="protocol (class set) of the probe (default: any)")
    p.add_argument("--split", choices=("official", "random"), help="split the probe was trained on (default: any)")
    p.add_argument("--probe", help="a saved probe's .probe.json (instead of searching)")
    p.add_argument("--work-dir", help="where results/ with saved probes is (default: the task folder, then "
                                      f"demo_runs/{task.folder.name})")
    p.add_argument("--pretrained-dir", help="folder holding the checkpoints (default: pretrained_models/)")
    p.add_argument("--device", default="auto", type=device, help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=positive_int, default=16, help="files embedded per forward pass")
    p.add_argument("--out", help="CSV to write (default for a folder: <folder name>_predictions.csv here)")
    return add_debug_option(p)


@entry_point
def predict_main(task: Task, argv: list[str] | None = None) -> pd.DataFrame:
    """Exits non-zero (PredictionError) when any file could not be classified,
    after printing and writing the others; each failure is listed with why."""
    args = predict_parser(task).parse_args(argv)
    from ..extraction.extract import resolve_device
    inputs = [Path(p) for p in args.inputs]
    files = [f for path in inputs for f in audio_files(path)]
    if not files:
        raise ProbeError(f"no .wav or .flac files in {', '.join(map(str, inputs))}")
    work_dirs = [Path(args.work_dir)] if args.work_dir else default_work_dirs(task)
    # a benchmark work root (run_benchmark.py --work-dir) holds one work dir per task folder
    work_dirs = [w / task.folder.name if not (w / "results").is_dir() and (w / task.folder.name).is_dir()
                 else w for w in work_dirs]
    probe_path = Path(args.probe) if args.probe else choose_probe(
        task, work_dirs, args.encoder, args.head, args.protocol, args.store, args.layer, args.split)
    probe = load_probe(probe_path, PREDICT_FIELDS)
    if probe.info.get("task") != task.name:
        raise ProbeError(f"{probe_path} is a probe of task {probe.info.get('task')!r}, not {task.name!r}")
    predictor = Predictor(probe, resolve_device(args.device), args.pretrained_dir)
    table = predictor.predict_files(files, args.top_k, args.batch_size)
    info = probe.info
    print(f"probe: {probe_path}\n       {task.title} {info['protocol']} ({info['split']} split), "
          f"{info['store']}/{info['layer']} {info['pooling']}-pooled, {info['head']} head, "
          f"{len(probe.classes)} classes, trained {info.get('created', '?')}")
    folder_input = any(p.is_dir() for p in inputs) or len(files) > 1
    k = sum(1 for c in table.columns if c.startswith("top"))
    if not folder_input:
        row = table.iloc[0]
        print(f"\n{row['file']}")
        for rank in range(1, k + 1) if not isinstance(row.get("error"), str) else ():
            print(f"  {rank}. {row[f'top{rank}']:<24} {row[f'p{rank}']:.3f}")
    if args.out or folder_input:
        first_dir = next((p for p in inputs if p.is_dir()), None)
        base = first_dir.resolve() if first_dir else None
        out = Path(args.out) if args.out else Path(f"{base.name if base else 'audio'}_predictions.csv")
        shown = table.copy()
        if base is not None:
            shown["file"] = [str(Path(f).resolve().relative_to(base)) if Path(f).resolve().is_relative_to(base)
                             else f for f in shown["file"]]
        with atomic_path(out) as tmp:
            shown.to_csv(tmp, index=False)
        if folder_input:
            print(f"\n{len(shown)} files; top-1 classes: " + ", ".join(
                f"{c} {n}" for c, n in shown["top1"].value_counts().head(10).items()))
            for _, row in shown.head(10).iterrows():
                if isinstance(row.get("error"), str):
                    print(f"  {row['file']}: error: {row['error']}")
                else:
                    print(f"  {row['file']}: {row['top1']} ({row['p1']:.3f})")
            if len(shown) > 10:
                print(f"  ... ({len(shown) - 10} more)")
        print(f"wrote {out}")
    failed = table[table["error"].notna()] if "error" in table else table.iloc[:0]
    if len(failed):
        for _, row in failed.iterrows():
            print(f"failed: {row['file']}: {row['error']}", file=sys.stderr)
        raise PredictionError(f"{len(failed)} of {len(table)} files could not be classified (listed above"
                              + (", and in the CSV" if args.out or folder_input else "") + ")")
    return table
