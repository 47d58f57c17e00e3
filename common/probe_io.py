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
from safetensors.torch import load_file, save_file

from .errors import UserError
from .probes import build_head

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
    save_file(tensors, str(weights_path), metadata={"format": FORMAT})
    info = {"format": FORMAT, "weights_file": weights_path.name, "head": fit.head, "lr": fit.lr,
            "epoch": fit.epoch, "created": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    json_path.write_text(json.dumps(info, indent=1))
    return json_path


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


def load_probe(json_path: str | Path) -> SavedProbe:
    json_path = Path(json_path)
    try:
        info = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise ProbeError(f"cannot read the saved probe {json_path}: {err}") from err
    if info.get("format") != FORMAT:
        raise ProbeError(f"{json_path} is not a saved probe of format {FORMAT}")
    weights_path = json_path.with_name(info["weights_file"])
    if not weights_path.exists():
        raise ProbeError(f"the weights of the saved probe {json_path} are missing: {weights_path}")
    tensors = load_file(str(weights_path))
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
            if info.get("format") != FORMAT:
                continue
            if all(v is None or str(info.get(k)) == str(v) for k, v in match.items()):
                found.append((path, info))
    found.sort(key=lambda p: (p[1].get("created", ""), p[0].stat().st_mtime_ns), reverse=True)
    return found
