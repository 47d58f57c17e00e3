"""Feature store: pooled embeddings of every item of a task for one encoder
setting, on disk as safetensors shards + JSON/CSV (never pickle).

    <work>/features/<dataset variant>/<store name>/
        meta.json                 settings, completion, failed items
        items.csv                 the item table; row i = item index i
        shards/shard-00000.safetensors   "index" [n] int64 + one [n, D] float32 tensor per layer

Shards are written atomically, so a killed extraction resumes from the last
completed shard. A store made with other settings is refused, never mixed.
A complete store is verified when it is reused (`damaged_shards`: counts,
sizes, safetensors headers, items.csv against the recorded `items_sha1`);
extraction re-extracts only the shards found damaged. The data root is
recorded but not part of the settings: a moved or copied data folder (or
project) reuses its store, with items.csv re-resolved to the new paths.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError
from ..files import atomic_path, atomic_write_json, lock_for

# recorded in meta.json, not compared: where the data is does not change its embeddings
LOCATION_SETTINGS = ("dataset_root",)


class StoreMismatchError(UserError, RuntimeError):
    """An existing store was made with other settings."""


class StoreDamagedError(UserError, RuntimeError):
    """A store file that cannot be read or no longer matches what was extracted."""


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
            diff = {k: (old.get(k), settings.get(k)) for k in set(old) | set(settings)
                    if old.get(k) != settings.get(k) and k not in LOCATION_SETTINGS}
            if diff:
                shown = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
                raise StoreMismatchError(
                    f"the features in {store.path} were made with other settings ({shown[:600]}). "
                    "Pass --overwrite to replace them, or --store NAME to keep both.")
            moved = {k: settings[k] for k in LOCATION_SETTINGS if k in settings and old.get(k) != settings[k]}
            if moved:
                store.update_meta(settings={**old, **moved})
            store._refresh_items(items)
            return store
        store.shard_dir.mkdir(parents=True, exist_ok=True)
        store._write_items(items)
        store._write_meta({"settings": settings, "complete": False, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "num_items": len(items)})
        return store

    def _write_items(self, items: pd.DataFrame) -> None:
        with atomic_path(self.path / "items.csv") as tmp:
            items.to_csv(tmp, index=False)

    def _refresh_items(self, items: pd.DataFrame) -> None:
        """items.csv as the reader lists the data now (same items, by the
        settings' `items_sha1`): re-resolves paths of a moved data folder and
        undoes edits of the file (reordered rows would mislabel embeddings)."""
        try:
            stored = self.items()
            same = stored["path"].astype(str).tolist() == items["path"].astype(str).tolist() and \
                items_digest(stored) == items_digest(items)
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            same = False
        if not same:
            self._write_items(items)

    def clear(self) -> None:
        for shard in self.shard_dir.glob("*"):
            shard.unlink()
        for name in ("meta.json", "items.csv", "durations.npy"):
            (self.path / name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ state
    def exists(self) -> bool:
        return (self.path / "meta.json").exists()

    def meta(self) -> dict:
        path = self.path / "meta.json"
        try:
            meta = json.loads(path.read_text())
            if not isinstance(meta, dict) or not isinstance(meta.get("settings"), dict):
                raise ValueError("no settings in it")
        except (ValueError, UnicodeDecodeError) as err:
            raise StoreDamagedError(f"{path} is damaged ({str(err).splitlines()[0]}): extract this store again "
                                    f"with --overwrite, or delete {self.path}") from err
        return meta

    def _write_meta(self, meta: dict) -> None:
        atomic_write_json(self.path / "meta.json", meta)

    def update_meta(self, **fields) -> None:
        with lock_for(self.path / "meta.json"):  # read-modify-write: concurrent updates never lose fields
            self._write_meta({**self.meta(), **fields})

    @property
    def complete(self) -> bool:
        return self.exists() and self.meta().get("complete", False)

    def items(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "items.csv", dtype={"id": str, "label": str, "path": str})

    def num_shards(self) -> int:
        meta = self.meta()
        size = int(meta["settings"].get("shard_size") or 1)
        return -(-int(meta["num_items"]) // size)

    def damaged_shards(self) -> dict[int, str]:
        """Shards that cannot be trusted, with why: missing, empty, truncated
        or unparsable, or holding other counts or shapes than the settings
        say. Reads headers and the small index tensors only."""
        meta = self.meta()
        settings, total = meta["settings"], int(meta["num_items"])
        size = int(settings.get("shard_size") or 1)
        layers = settings["layers"]
        damaged, seen = {}, set()
        for k in range(self.num_shards()):
            path = self.shard_path(k)
            expected = min(size, total - k * size)
            try:
                if not path.is_file() or path.stat().st_size == 0:
                    raise ValueError("missing or empty")
                with safe_open(str(path), "np") as f:
                    index = f.get_tensor("index")
                    failed = {int(i) for i in json.loads(f.metadata()["failed"])}
                    shapes = {name: f.get_slice(f"layer.{name}").get_shape() for name in layers}
                rows = set(index.tolist())
                if len(rows) != len(index) or rows & failed or len(rows) + len(failed) != expected:
                    raise ValueError(f"holds {len(index)} items and {len(failed)} failed, expected {expected}")
                if (rows | failed) & seen or any(not 0 <= i < total for i in rows | failed):
                    raise ValueError("holds items that are out of range or in another shard")
                bad = [n for n, shape in shapes.items() if list(shape) != [len(index), layers[n]]]
                if bad:
                    raise ValueError(f"layer {bad[0]} has shape {shapes[bad[0]]}, expected [{len(index)}, "
                                     f"{layers[bad[0]]}]")
                seen |= rows | failed
            except (OSError, ValueError, KeyError, SafetensorError) as err:
                damaged[k] = f"{path.name}: {str(err).splitlines()[0]}"
        return damaged

    def discard_damaged_shards(self) -> dict[int, str]:
        """Delete the damaged shards (missing ones count too), so that
        extraction makes them again, and only them; returns them with why."""
        damaged = self.damaged_shards()
        for k in damaged:
            self.shard_path(k).unlink(missing_ok=True)
        if damaged and self.complete:
            self.update_meta(complete=False)
        return damaged

    def check_items(self) -> None:
        """items.csv must be the table the embeddings were extracted for."""
        path = self.path / "items.csv"
        try:
            digest = items_digest(self.items())
        except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
            raise StoreDamagedError(f"{path} is unreadable ({str(err).splitlines()[0]}): run extract.py again "
                                    "with the same settings to repair it") from err
        if digest != self.meta()["settings"].get("items_sha1", digest):
            raise StoreDamagedError(f"{path} was changed since extraction (its items no longer match the "
                                    "recorded items_sha1): run extract.py again with the same settings to repair it")

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
        with atomic_path(self.shard_path(shard)) as tmp:  # a shard is either whole or absent
            save_file(tensors, str(tmp), metadata={"failed": json.dumps({str(k): v for k, v in failed.items()})})

    def failed(self) -> dict[int, str]:
        out = {}
        for shard in map(self.shard_path, range(self.num_shards())):
            if not shard.exists():
                continue
            with safe_open(str(shard), "pt") as f:
                out.update({int(k): v for k, v in json.loads(f.metadata()["failed"]).items()})
        return out

    # ------------------------------------------------------------------ reading
    def load(self, layers: list[str] | None = None) -> FeatureSet:
        if not self.complete:
            raise StoreDamagedError(f"the features in {self.path} are incomplete: run extract.py again "
                                    "with the same settings to finish them")
        meta = self.meta()
        self.check_items()
        damaged = self.damaged_shards()
        if damaged:
            raise StoreDamagedError(f"{len(damaged)} shard(s) of {self.path} are damaged ({next(iter(damaged.values()))}):"
                                    " run extract.py again with the same settings to re-extract them")
        layers = layers or [meta["settings"]["default_layer"]]
        stored = list(meta["settings"]["layers"])
        for layer in layers:
            if layer not in stored:
                raise KeyError(f"layer {layer!r} is not in {self.path}; it holds {', '.join(stored)}. "
                               "Extract it with --layer.")
        index, parts = [], {layer: [] for layer in layers}
        for shard in map(self.shard_path, range(self.num_shards())):
            with safe_open(str(shard), "np") as f:
                index.append(f.get_tensor("index"))
                for layer in layers:
                    parts[layer].append(f.get_tensor(f"layer.{layer}"))
        index = np.concatenate(index)
        order = np.argsort(index, kind="stable")
        items = self.items().iloc[index[order]].reset_index(drop=True)
        embeddings = {layer: np.concatenate(x)[order] for layer, x in parts.items()}
        return FeatureSet(items, embeddings, meta)


def find_stores(features_dir: Path, encoder: str | None = None, task: str | None = None) -> list[FeatureStore]:
    """Complete stores under `<work>/features/`, optionally of one encoder and
    one task (a task folder copied with its features/ holds the old task's
    stores, which must not be probed as the new task's). A store whose
    meta.json is damaged is named in a warning and left out: it blocks only
    itself."""
    found = []
    for meta_file in sorted(Path(features_dir).glob("*/*/meta.json")):
        store = FeatureStore(meta_file.parent)
        try:
            meta = store.meta()
        except StoreDamagedError as err:
            warnings.warn(f"{err}; skipped", stacklevel=2)
            continue
        settings = meta["settings"]
        if meta.get("complete") and (encoder is None or settings.get("encoder") == encoder) \
                and (task is None or settings.get("task") == task):
            found.append(store)
    return found
