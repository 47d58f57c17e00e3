"""Feature store: pooled embeddings of every item of a task for one encoder
setting, on disk as safetensors shards + JSON/CSV (never pickle).

    <work>/features/<dataset variant>/<store name>/
        meta.json                 settings, completion, failed items
        items.csv                 the item table; row i = item index i
        shards/shard-00000.safetensors   "index" [n] int64 + one [n, D] float32 tensor per layer

Shards are written atomically, so a killed extraction resumes from the last
completed shard. A store made with other settings is refused, never mixed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import UserError


class StoreMismatchError(UserError, RuntimeError):
    """An existing store was made with other settings."""


def items_digest(items: pd.DataFrame) -> str:
    key = "\n".join(f"{i}|{s}|{e}" for i, s, e in zip(items["id"], items["clip_start"], items["clip_end"]))
    return hashlib.sha1(key.encode()).hexdigest()


@dataclass
class FeatureSet:
    """Stored embeddings loaded for training: rows align with `items`."""
    items: pd.DataFrame
    embeddings: dict[str, np.ndarray]   # layer -> [N, D]
    meta: dict


class FeatureStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shard_dir = self.path / "shards"

    # ------------------------------------------------------------------ creation
    @classmethod
    def open(cls, path: str | Path, settings: dict, items: pd.DataFrame, overwrite: bool = False) -> "FeatureStore":
        """Create the store, or reopen it when `settings` match what it was made
        with (resuming a partial extraction, reusing a complete one)."""
        store = cls(path)
        if store.exists() and overwrite:
            store.clear()
        if store.exists():
            old = store.meta()["settings"]
            diff = {k: (old.get(k), settings.get(k)) for k in set(old) | set(settings) if old.get(k) != settings.get(k)}
            if diff:
                shown = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
                raise StoreMismatchError(
                    f"the features in {store.path} were made with other settings ({shown[:600]}). "
                    "Pass --overwrite to replace them, or --store NAME to keep both.")
            return store
        store.shard_dir.mkdir(parents=True, exist_ok=True)
        items.to_csv(store.path / "items.csv", index=False)
        store._write_meta({"settings": settings, "complete": False, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "num_items": len(items)})
        return store

    def clear(self) -> None:
        for shard in self.shard_dir.glob("*"):
            shard.unlink()
        for name in ("meta.json", "items.csv", "durations.npy"):
            (self.path / name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ state
    def exists(self) -> bool:
        return (self.path / "meta.json").exists()

    def meta(self) -> dict:
        with open(self.path / "meta.json") as f:
            return json.load(f)

    def _write_meta(self, meta: dict) -> None:
        tmp = self.path / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.path / "meta.json")

    def update_meta(self, **fields) -> None:
        self._write_meta({**self.meta(), **fields})

    @property
    def complete(self) -> bool:
        return self.exists() and self.meta().get("complete", False)

    def items(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "items.csv", dtype={"id": str, "label": str})

    def shard_path(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:05d}.safetensors"

    def has_shard(self, shard: int) -> bool:
        return self.shard_path(shard).exists()

    # ------------------------------------------------------------------ writing
    def write_shard(self, shard: int, index: np.ndarray, embeddings: dict[str, np.ndarray],
                    failed: dict[int, str]) -> None:
        tensors = {"index": torch.as_tensor(np.asarray(index, dtype=np.int64))}
        tensors.update({f"layer.{name}": torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
                        for name, x in embeddings.items()})
        tmp = self.shard_dir / f".tmp-{shard:05d}-{os.getpid()}.safetensors"
        save_file(tensors, str(tmp), metadata={"failed": json.dumps({str(k): v for k, v in failed.items()})})
        os.replace(tmp, self.shard_path(shard))  # atomic: a shard is either whole or absent

    def failed(self) -> dict[int, str]:
        out = {}
        for shard in sorted(self.shard_dir.glob("shard-*.safetensors")):
            with safe_open(str(shard), "pt") as f:
                out.update({int(k): v for k, v in json.loads(f.metadata()["failed"]).items()})
        return out

    # ------------------------------------------------------------------ reading
    def load(self, layers: list[str] | None = None) -> FeatureSet:
        if not self.complete:
            raise RuntimeError(f"the features in {self.path} are incomplete: run extract.py again "
                               "with the same settings to finish them")
        meta = self.meta()
        layers = layers or [meta["settings"]["default_layer"]]
        stored = list(meta["settings"]["layers"])
        for layer in layers:
            if layer not in stored:
                raise KeyError(f"layer {layer!r} is not in {self.path}; it holds {', '.join(stored)}. "
                               "Extract it with --layer.")
        index, parts = [], {layer: [] for layer in layers}
        for shard in sorted(self.shard_dir.glob("shard-*.safetensors")):
            with safe_open(str(shard), "np") as f:
                index.append(f.get_tensor("index"))
                for layer in layers:
                    parts[layer].append(f.get_tensor(f"layer.{layer}"))
        index = np.concatenate(index)
        order = np.argsort(index, kind="stable")
        items = self.items().iloc[index[order]].reset_index(drop=True)
        embeddings = {layer: np.concatenate(x)[order] for layer, x in parts.items()}
        return FeatureSet(items, embeddings, meta)


def find_stores(features_dir: Path, encoder: str | None = None) -> list[FeatureStore]:
    """Complete stores under `<work>/features/`, optionally of one encoder."""
    stores = [FeatureStore(p.parent) for p in sorted(Path(features_dir).glob("*/*/meta.json"))]
    return [s for s in stores if s.complete and (encoder is None or s.meta()["settings"]["encoder"] == encoder)]
