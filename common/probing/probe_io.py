"""Saved probes: a trained head + its scaler as safetensors, and everything
needed to use it on new audio as JSON (never pickle).

    <stem>.probe.safetensors   "model.<param>" tensors, "scaler_mean", "scaler_scale"
    <stem>.probe.json          labels, head, in_dim, protocol, split, layer, task,
                               encoder name/options/config, pooling, sample rate, store path
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..files import atomic_path, atomic_write_json
from .probes import HEADS, build_head

FORMAT = "audio-encoder-probe/1"
SUFFIX = ".probe.json"


class ProbeError(UserError, ValueError):
    """A saved probe that cannot be found, read or used with this encoder."""


def probe_paths(stem: Path) -> tuple[Path, Path]:
    stem = Path(stem)
    return stem.with_name(stem.name + ".probe.safetensors"), stem.with_name(stem.name + SUFFIX)


def _numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def save_probe(fit, stem: Path, info: dict) -> Path:
    """Write `fit` (a ProbeFit) beside the run JSON; returns the JSON path."""
    weights_path, json_path = probe_paths(stem)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in fit.model.state_dict().items()}
    tensors["scaler_mean"] = torch.as_tensor(np.asarray(_numpy(fit.scaler_mean), dtype=np.float32))
    tensors["scaler_scale"] = torch.as_tensor(np.asarray(_numpy(fit.scaler_scale), dtype=np.float32))
    layer_weights = fit.layer_weights
    if layer_weights is not None:  # a copy for inspection; the model's own tensors are what is used
        tensors["layer_weights"] = torch.as_tensor(np.asarray(_numpy(layer_weights), dtype=np.float32)).reshape(-1)
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    info = {"format": FORMAT, "weights_file": weights_path.name, "head": fit.head, "lr": fit.lr,
            "epoch": fit.epoch, "created": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    atomic_write_json(json_path, info)
    return json_path


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_info(info, path: Path, fields: tuple[str, ...] = ()) -> dict:
    """The probe JSON field by field: one-line ProbeError naming the first
    field that is missing or malformed. `fields`: further keys the caller needs."""
    if not isinstance(info, dict):
        raise ProbeError(f"{path} is not a saved probe (a JSON object was expected)")
    if info.get("format") != FORMAT:
        raise ProbeError(f"{path} is not a saved probe of format {FORMAT}")
    missing = [k for k in ("weights_file", "head", "in_dim", "classes", *fields) if k not in info]
    if missing:
        raise ProbeError(f"the saved probe {path} lacks the field(s) {', '.join(missing)}; train it again")
    weights = info["weights_file"]
    if not isinstance(weights, str) or not weights or Path(weights).name != weights or weights in (".", "..") \
            or "\\" in weights:
        raise ProbeError(f"the saved probe {path} names weights_file {weights!r}; it must be a bare file name "
                         "beside the JSON")
    if info["head"] not in HEADS:
        raise ProbeError(f"the saved probe {path} has head {info['head']!r}; known heads: {', '.join(HEADS)}")
    if not _positive_int(info["in_dim"]):
        raise ProbeError(f"the saved probe {path} has in_dim {info['in_dim']!r}; a positive integer was expected")
    if info.get("num_layers") is not None and not _positive_int(info["num_layers"]):
        raise ProbeError(f"the saved probe {path} has num_layers {info['num_layers']!r}; a positive integer "
                         "or null was expected")
    classes = info["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes) \
            or len(set(classes)) != len(classes):
        raise ProbeError(f"the saved probe {path} has classes {str(classes)[:80]}; a list of two or more "
                         "distinct names was expected")
    return info


@dataclass
class SavedProbe:
    model: torch.nn.Module
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    info: dict
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        expected = ((self.info["num_layers"],) if self.info.get("num_layers") else ()) + (self.info["in_dim"],)
        if x.shape[1:] != expected:
            raise ProbeError(f"the probe {self.path} takes embeddings of shape [N, "
                             f"{', '.join(map(str, expected))}], got {list(x.shape)}")
        scaled = torch.as_tensor((x - self.scaler_mean) / self.scaler_scale, device=device)
        self.model.to(device).eval()
        return torch.softmax(self.model(scaled), dim=-1).cpu().numpy()


def load_probe(json_path: str | Path, fields: tuple[str, ...] = ()) -> SavedProbe:
    """The saved probe at `json_path`, every field and tensor checked; `fields`:
    further JSON keys the caller needs."""
    json_path = Path(json_path)
    try:
        info = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise ProbeError(f"cannot read the saved probe {json_path}: {str(err).splitlines()[0]}") from err
    check_info(info, json_path, fields)
    weights_path = json_path.with_name(info["weights_file"])
    if not weights_path.exists():
        raise ProbeError(f"the weights of the saved probe {json_path} are missing: {weights_path}")
    try:
        tensors = load_file(str(weights_path))
    except (OSError, SafetensorError) as err:
        raise ProbeError(f"the weights of the saved probe {json_path} are unreadable ({weights_path}: "
                         f"{str(err).splitlines()[0]}); train it again") from err
    shape = ((int(info["num_layers"]),) if info.get("num_layers") else ()) + (int(info["in_dim"]),)
    for name in ("scaler_mean", "scaler_scale"):
        if name not in tensors:
            raise ProbeError(f"{weights_path} holds no {name}; train the probe again")
        value = tensors[name]
        if tuple(value.shape) not in (shape, shape[-1:]):
            raise ProbeError(f"{weights_path}: {name} has shape {list(value.shape)}, expected {list(shape)}")
        if not torch.isfinite(value).all():
            raise ProbeError(f"{weights_path}: {name} holds NaN or infinite values; train the probe again")
    if not (tensors["scaler_scale"] > 0).all():
        raise ProbeError(f"{weights_path}: scaler_scale has zero or negative entries (every prediction would be "
                         "NaN); train the probe again")
    bad = [k for k, v in tensors.items() if k.startswith("model.") and v.is_floating_point() and
           not torch.isfinite(v).all()]
    if bad:
        raise ProbeError(f"{weights_path}: {bad[0]} holds NaN or infinite values; train the probe again")
    if info.get("num_layers"):   # stacked layers: a learned weighted sum before the head
        model = build_head(info["head"], int(info["in_dim"]), len(info["classes"]), int(info["num_layers"]))
    else:
        model = build_head(info["head"], int(info["in_dim"]), len(info["classes"]))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ProbeError(f"the weights in {weights_path} do not fit a {info['head']} head "
                         f"({info['in_dim']} -> {len(info['classes'])}): {str(err).splitlines()[0]}") from err
    model.eval()
    return SavedProbe(model, tensors["scaler_mean"].numpy(), tensors["scaler_scale"].numpy(), info, json_path)


def find_probes(work_dirs, **match) -> list[tuple[Path, dict]]:
    """Saved probes under `<work>/results/` of each work dir whose JSON fields
    equal every non-None value in `match`, most recent first."""
    found = []
    for work in work_dirs:
        results = Path(work) / "results"
        if not results.is_dir():
            continue
        for path in results.rglob(f"*{SUFFIX}"):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(info, dict) or info.get("format") != FORMAT:
                continue
            if all(v is None or str(info.get(k)) == str(v) for k, v in match.items()):
                found.append((path, info))
    found.sort(key=lambda p: (p[1].get("created", ""), p[0].stat().st_mtime_ns), reverse=True)
    return found
