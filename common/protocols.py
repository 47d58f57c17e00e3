"""Evaluation protocols: which items, which labels, which splits.

A protocol selects items from a task's item table, maps their labels to the
protocol's classes and cuts them into folds (train / valid / test index sets).
Every fold is checked: the parts are disjoint and non-empty, and where the
protocol names a group column (ESC-50 `src_file`, ICBHI `patient`) no group
crosses from the test part into training.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

RANDOM_SEED = 42  # the seeds' split


@dataclass
class Fold:
    name: str
    train: np.ndarray  # row positions in the protocol's item table
    valid: np.ndarray  # may be empty (seeds recipe: no model selection)
    test: np.ndarray

    def check(self, items: pd.DataFrame, group: str | None) -> None:
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        assert len(self.train) and len(self.test), f"fold {self.name}: empty train or test part"
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            assert not np.intersect1d(parts[a], parts[b]).size, f"fold {self.name}: {a} and {b} share items"
        if group:
            test_groups = set(items[group].iloc[self.test])
            leaked = test_groups & set(items[group].iloc[np.concatenate([self.train, self.valid])])
            assert not leaked, (f"fold {self.name}: {len(leaked)} {group} groups on both sides of the split, "
                                f"e.g. {sorted(leaked)[:3]}")


# --------------------------------------------------------------------------- split rules
@dataclass(frozen=True)
class OfficialFolds:
    """Leave-one-fold-out over the dataset's fold column; the fold after the
    test fold is the validation part (EVAR's choice), the rest is training."""
    column: str = "fold"

    def folds(self, items: pd.DataFrame, labels: np.ndarray) -> list[Fold]:
        values = sorted(items[self.column].unique())
        assert len(values) >= 3, f"need at least 3 folds in column {self.column!r}, found {values}"
        column = items[self.column].to_numpy()
        out = []
        for i, test_fold in enumerate(values):
            valid_fold = values[(i + 1) % len(values)]
            out.append(Fold(f"fold{test_fold}", np.flatnonzero((column != test_fold) & (column != valid_fold)),
                            np.flatnonzero(column == valid_fold), np.flatnonzero(column == test_fold)))
        return out


@dataclass(frozen=True)
class OfficialSplit:
    """A predefined train/test split (and validation part where the dataset
    has one; otherwise 10% of training, carved by `group` when given)."""
    column: str = "split"
    train: str = "train"
    test: str = "test"
    valid: str | None = None
    valid_group: str | None = None

    def folds(self, items: pd.DataFrame, labels: np.ndarray) -> list[Fold]:
        column = items[self.column].to_numpy()
        train = np.flatnonzero(column == self.train)
        test = np.flatnonzero(column == self.test)
        if self.valid is not None:
            valid = np.flatnonzero(column == self.valid)
        else:
            groups = items[self.valid_group].to_numpy()[train] if self.valid_group else None
            train, valid = carve_validation(train, labels[train], groups)
        return [Fold("test", train, valid, test)]


@dataclass(frozen=True)
class RandomSplit:
    """Stratified random split (the seeds' 80/20 with seed 42; LibriSpeech's
    per-speaker split); validation is 10% of training unless `valid_size=0`."""
    test_size: float = 0.2
    seed: int = RANDOM_SEED
    valid_size: float = 0.1

    def folds(self, items: pd.DataFrame, labels: np.ndarray) -> list[Fold]:
        positions = np.arange(len(items))
        train, test = train_test_split(positions, test_size=self.test_size, random_state=self.seed,
                                       stratify=_stratify(labels))
        valid = np.array([], dtype=int)
        if self.valid_size:
            train, valid = carve_validation(train, labels[train], None, self.valid_size, self.seed)
        return [Fold("random", np.sort(train), np.sort(valid), np.sort(test))]


def _stratify(labels: np.ndarray):
    """Stratify when every class has at least two items, else split plainly."""
    _, counts = np.unique(labels, return_counts=True)
    return labels if counts.min() >= 2 else None


def carve_validation(train: np.ndarray, labels: np.ndarray, groups: np.ndarray | None,
                     size: float = 0.1, seed: int = RANDOM_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split training positions into (train, valid): by group when groups are
    given (no group on both sides), else stratified by label."""
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        keep, held = next(splitter.split(train, labels, groups))
        return np.sort(train[keep]), np.sort(train[held])
    stratify = _stratify(labels)
    if stratify is not None:  # a stratified part needs at least one item per class
        size = max(size, len(np.unique(labels)) / len(train))
        stratify = stratify if size <= 0.5 else None
    keep, held = train_test_split(train, test_size=min(size, 0.5), random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)


# --------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Protocol:
    name: str
    split: OfficialFolds | OfficialSplit | RandomSplit
    description: str = ""
    select: Callable[[pd.DataFrame], pd.Series] | None = None   # which items take part
    relabel: Callable[[str], str] | None = None                  # dataset label -> class
    classes: Sequence[str] | None = None                         # fixed class list and order
    group: str | None = None            # column that must never cross the test boundary
    metric: str = "accuracy"            # primary metric, from common.metrics.METRICS
    normal_class: str | None = None     # ICBHI sensitivity/specificity

    def with_random_split(self, valid_size: float = 0.1) -> "Protocol":
        """The seeds' protocol on the same items and labels: random 80/20 with seed
        42. Groups may then straddle the split; that is the seeds' protocol."""
        return replace(self, split=RandomSplit(valid_size=valid_size), group=None)

    def prepare(self, items: pd.DataFrame) -> "ProtocolData":
        keep = self.select(items).to_numpy(dtype=bool) if self.select is not None else np.ones(len(items), bool)
        rows = np.flatnonzero(keep)
        chosen = items.iloc[rows].reset_index(drop=True)
        raw = chosen["label"].astype(str)
        labels = raw.map(self.relabel) if self.relabel else raw
        classes = list(self.classes) if self.classes is not None else sorted(labels.unique())
        unknown = set(labels) - set(classes)
        assert not unknown, f"protocol {self.name}: labels {sorted(unknown)} are not among its classes"
        index = {c: i for i, c in enumerate(classes)}
        y = labels.map(index).to_numpy(dtype=np.int64)
        folds = self.split.folds(chosen, y)
        for fold in folds:
            fold.check(chosen, self.group)
        return ProtocolData(self, chosen, rows, y, classes, folds)


@dataclass
class ProtocolData:
    protocol: Protocol
    items: pd.DataFrame    # the protocol's items, positions match y and fold indices
    rows: np.ndarray       # their row positions in the table given to prepare()
    y: np.ndarray
    classes: list[str]
    folds: list[Fold] = field(default_factory=list)

    def split_table(self) -> pd.DataFrame:
        """One row per (fold, item) with its part: written beside the results so
        that every encoder is compared on the same items."""
        rows = []
        for fold in self.folds:
            for part in ("train", "valid", "test"):
                positions = getattr(fold, part)
                rows.append(pd.DataFrame({"fold": fold.name, "part": part,
                                          "id": self.items["id"].to_numpy()[positions]}))
        return pd.concat(rows, ignore_index=True)
