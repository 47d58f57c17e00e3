"""Safe checkpoint reading and strict, explained loading.

Nothing here unpickles code: `.pt/.pth/.ckpt/.bin` files are read with
`torch.load(weights_only=True)`, `.safetensors` with safetensors."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable or of another architecture."""


def require_file(path: Path, what: str, source: str) -> Path:
    """Return `path` if it exists, else raise one sentence naming the file
    expected and where the official one comes from."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: expected {path}. Download it from {source} "
                              f"and put it there (or pass --checkpoint PATH).")
    return path


def _numpy_globals() -> list:
    """numpy array reconstruction, allowed beside tensors: official PANNs
    checkpoints store a sampler state of numpy arrays next to the weights.
    Rebuilding an array runs no code; its items still go through the
    weights-only unpickler."""
    import numpy as np
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *{type(np.dtype(t)) for t in
            ("float32", "float64", "int64", "int32", "uint32", "uint8", "bool")}, core.multiarray.scalar]


def _load_tensors_only(path: Path):
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)


def read_state_dict(path: Path, wrapper_keys: Iterable[str] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from Lightning/PANNs-style
    `{'state_dict': ...}` / `{'model': ...}` dicts."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        obj = _load_tensors_only(path)
    except Exception as err:
        raise CheckpointError(
            f"{path} cannot be read as plain tensors ({type(err).__name__}: {str(err)[:200]}). "
            "It may hold pickled Python objects, which this project refuses to load because "
            "unpickling can run code; re-save its state_dict with torch.save or safetensors.") from err
    for key in wrapper_keys:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path | str,
                ignore: Iterable[str] = ()) -> None:
    """Load `state` into `module`, refusing any missing, unexpected or
    mis-shaped key (keys in `ignore` are allowed to be absent from `state`)
    with a message naming the first ones."""
    own = module.state_dict()
    ignore = set(ignore)
    missing = [k for k in own if k not in state and k not in ignore]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:3])})")
        if shape:
            parts.append(f"{len(shape)} shape mismatches (first: {'; '.join(shape[:3])})")
        raise CheckpointError(f"{source} does not match {type(module).__name__}: " + "; ".join(parts)
                              + ". Is it the right checkpoint for this encoder?")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
