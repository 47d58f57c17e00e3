"""Evaluation protocols: which items, which labels, which splits.

A protocol selects items from a task's item table, maps their labels to the
protocol's classes and cuts them into folds (train / valid / test index sets).
Every fold is checked: the parts are disjoint and the train and test parts
non-empty, and where the protocol names a group column (ESC-50 `src_file`,
UrbanSound8K `fsID`, LibriSpeech `chapter`) no group is on two sides. A
failed check raises `ProtocolError` (never `assert`, which `python -O`
removes).

Validation rules of the fold datasets (`OfficialFolds`), by name, as read in
each benchmark's code:
- `carve` (EVAR's): the held-out fold tests and 10% of the other folds'
  items validate. EVAR's `lineareval.py` gives the probe no validation set for
  fold datasets, and its `TorchMLPClassifier2.fit` then draws
  `validation_fraction=0.1` of the training items with `train_test_split`,
  redrawing until every class is in the draw, and keeps the epoch best on it.
  Here the 10% is stratified by class (so every class is in it without
  redrawing) and never splits a group (ESC-50 `src_file`, US8K `fsID`),
  which EVAR's random draw does not guarantee; the rest (90% of 4 ESC-50
  folds) trains.
- `next-fold` (HEAR's): hear-eval-kit's `data_splits_from_folds` sorts the
  folds, tests on fold k, validates on fold k+1 (the first after the last)
  and trains on the others (3 of 5 ESC-50 folds).
Neither benchmark retrains on train + validation; `--refit` is ours and its
results are never paired with a published number.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split

from ..errors import ProtocolError

RANDOM_SEED = 42  # the seeds' split
VALIDATION_RULES = ("carve", "next-fold")


@dataclass
class Fold:
    name: str
    train: np.ndarray  # row positions in the protocol's item table
    valid: np.ndarray  # may be empty (seeds recipe: no model selection)
    test: np.ndarray

    def check(self, items: pd.DataFrame, group: str | None) -> None:
        """Raise ProtocolError for an empty train or test part, an item in two
        parts, or a `group` value in two parts."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        if not len(self.train) or not len(self.test):
            raise ProtocolError(f"fold {self.name}: empty train or test part; check the split column's values")
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            if np.intersect1d(parts[a], parts[b]).size:
                raise ProtocolError(f"fold {self.name}: {a} and {b} share items; each item belongs to one part")
        if group:
            values = items[group].to_numpy()
            for a, b in (("test", "train"), ("test", "valid"), ("valid", "train")):
                leaked = set(values[parts[a]]) & set(values[parts[b]])
                if leaked:
                    raise ProtocolError(
                        f"fold {self.name}: {len(leaked)} {group} groups on both sides of the split "
                        f"({a} and {b}), e.g. {sorted(map(str, leaked))[:3]}; a group must stay on one side")


# --------------------------------------------------------------------------- split rules
@dataclass(frozen=True)
class OfficialFolds:
    """Leave-one-fold-out over the dataset's fold column, validated by the rule
    named in `validation` (see the module docstring).

    The default is `carve`: it trains on 4 of 5 ESC-50 folds (less 10%), as the
    leave-one-fold-out protocol of the ESC-50 paper and EVAR's linear
    evaluation do, where `next-fold` trains on 3; `next-fold` is one option
    away for comparisons with HEAR."""
    column: str = "fold"
    validation: str = "carve"
    valid_size: float = 0.1

    def __post_init__(self):
        if self.validation not in VALIDATION_RULES:
            raise ProtocolError(f"unknown validation rule {self.validation!r}: choose from "
                                f"{', '.join(VALIDATION_RULES)}")

    def folds(self, items: pd.DataFrame, labels: np.ndarray, group: str | None = None) -> list[Fold]:
        values = sorted(items[self.column].unique())
        if len(values) < 3:
            raise ProtocolError(f"need at least 3 folds in column {self.column!r}, found {values}; "
                                "is the metadata complete?")
        column = items[self.column].to_numpy()
        groups = items[group].to_numpy() if group else None
        out = []
        for i, test_fold in enumerate(values):
            test = np.flatnonzero(column == test_fold)
            if self.validation == "next-fold":
                valid_fold = values[(i + 1) % len(values)]
                train, valid = (np.flatnonzero((column != test_fold) & (column != valid_fold)),
                                np.flatnonzero(column == valid_fold))
            else:
                rest = np.flatnonzero(column != test_fold)
                train, valid = carve_validation(rest, labels[rest], None if groups is None else groups[rest],
                                                self.valid_size)
            out.append(Fold(f"fold{test_fold}", train, valid, test))
        return out


@dataclass(frozen=True)
class OfficialSplit:
    """A predefined train/test split (and validation part where the dataset
    has one; otherwise 10% of training, carved by `valid_group`, or by the
    protocol's group, when given)."""
    column: str = "split"
    train: str | tuple[str, ...] = "train"
    test: str | tuple[str, ...] = "test"
    valid: str | tuple[str, ...] | None = None
    valid_group: str | None = None

    def folds(self, items: pd.DataFrame, labels: np.ndarray, group: str | None = None) -> list[Fold]:
        column = items[self.column].to_numpy()
        train = np.flatnonzero(np.isin(column, self.train))
        test = np.flatnonzero(np.isin(column, self.test))
        if self.valid is not None:
            valid = np.flatnonzero(np.isin(column, self.valid))
        else:
            by = self.valid_group or group
            train, valid = carve_validation(train, labels[train], items[by].to_numpy()[train] if by else None)
        return [Fold("test", train, valid, test)]


@dataclass(frozen=True)
class RandomSplit:
    """Stratified random split (the seeds' 80/20 with seed 42; LibriSpeech's
    per-speaker split); validation is 10% of training unless `valid_size=0`."""
    test_size: float = 0.2
    seed: int = RANDOM_SEED
    valid_size: float = 0.1

    def folds(self, items: pd.DataFrame, labels: np.ndarray, group: str | None = None) -> list[Fold]:
        positions = np.arange(len(items))
        train, test = train_test_split(positions, test_size=self.test_size, random_state=self.seed,
                                       stratify=_stratify(labels))
        valid = np.array([], dtype=int)
        if self.valid_size:
            train, valid = carve_validation(train, labels[train], None, self.valid_size, self.seed)
        return [Fold("random", np.sort(train), np.sort(valid), np.sort(test))]


@dataclass(frozen=True)
class GroupsPerClassSplit:
    """Every class keeps items on both sides, but each group (LibriSpeech: a
    chapter, one recording session) lies on one side: per class, whole groups
    are drawn for the test part until it holds `test_size` of the class's
    items, at least one group staying in training; validation takes whole
    groups the same way from classes left with two or more training groups.
    Classes with a single group cannot be split so and are left out (their
    items are in no part)."""
    group: str = "chapter"
    test_size: float = 0.2
    valid_size: float = 0.1
    seed: int = RANDOM_SEED

    def folds(self, items: pd.DataFrame, labels: np.ndarray, group: str | None = None) -> list[Fold]:
        groups = items[self.group].astype(str).to_numpy()
        rng = np.random.default_rng(self.seed)
        train, valid, test = [], [], []
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            own = rng.permutation(np.unique(groups[rows]))
            if len(own) < 2:
                continue
            held, kept = _draw_groups(own, groups[rows], self.test_size)
            test.append(rows[np.isin(groups[rows], held)])
            rest = rows[np.isin(groups[rows], kept)]
            if len(kept) >= 2:
                held, kept = _draw_groups(kept, groups[rest], self.valid_size)
                valid.append(rest[np.isin(groups[rest], held)])
                rest = rest[np.isin(groups[rest], kept)]
            train.append(rest)
        if not test:
            raise ProtocolError(f"no class has two or more {self.group} groups: a {self.group}-disjoint split "
                                "needs at least two per class")
        parts = [np.sort(np.concatenate(p)) if p else np.array([], dtype=int) for p in (train, valid, test)]
        return [Fold(f"{self.group}-disjoint", *parts)]


def _draw_groups(order: np.ndarray, groups: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(held, kept): groups taken in `order` until they hold `share` of the
    items (at least one group), at least one group kept."""
    sizes = np.array([(groups == g).sum() for g in order])
    count = int(np.searchsorted(np.cumsum(sizes), share * sizes.sum()) + 1)
    count = min(max(count, 1), len(order) - 1)
    return order[:count], order[count:]


def _stratify(labels: np.ndarray):
    """Stratify when every class has at least two items, else split plainly."""
    _, counts = np.unique(labels, return_counts=True)
    return labels if counts.min() >= 2 else None


def carve_validation(train: np.ndarray, labels: np.ndarray, groups: np.ndarray | None,
                     size: float = 0.1, seed: int = RANDOM_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split training positions into (train, valid), stratified by label; with
    groups, whole groups go to one side (stratified as far as the groups allow)."""
    if groups is not None:
        n_splits = max(2, round(1 / size))
        # StratifiedGroupKFold needs n_splits groups and a class with n_splits items
        if len(np.unique(groups)) >= n_splits and np.bincount(np.unique(labels, return_inverse=True)[1]).max() >= n_splits:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            with warnings.catch_warnings():  # rare classes: stratified as far as possible
                warnings.simplefilter("ignore", UserWarning)
                keep, held = next(splitter.split(train, labels, groups))
        else:
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
    split: OfficialFolds | OfficialSplit | RandomSplit | GroupsPerClassSplit
    description: str = ""
    select: Callable[[pd.DataFrame], pd.Series] | None = None   # which items take part
    relabel: Callable[[str], str] | None = None                  # dataset label -> class
    classes: Sequence[str] | None = None                         # fixed class list and order
    group: str | None = None            # column whose values must stay on one side of every split
    metric: str = "accuracy"            # primary metric, from common.probing.metrics.METRICS
    normal_class: str | None = None     # ICBHI sensitivity/specificity
    # metric that picks learning rate and epoch on validation (None: `metric`)
    selection_metric: str | None = None
    # draw training batches class-balanced (weights 1 / class count, with
    # replacement), as SUPERB's WeightedRandomSampler does
    balanced_sampling: bool = False
    # the dataset variant the protocol is defined on (None: any); features of
    # another variant are run but recorded as not comparable
    variant: str | None = None
    # False: no published table uses this protocol; never put it beside one
    comparable: bool = True
    # raises a UserError naming what the items lack (e.g. a separate test archive)
    requires: Callable[[pd.DataFrame], None] | None = None

    @property
    def selected_by(self) -> str:
        return self.selection_metric or self.metric

    @property
    def validation(self) -> str:
        """The validation rule: `carve` / `next-fold` for fold datasets, else
        `official` (the dataset's own part), `carve` or `none`."""
        if isinstance(self.split, OfficialFolds):
            return self.split.validation
        if isinstance(self.split, OfficialSplit) and self.split.valid is not None:
            return "official"
        if isinstance(self.split, RandomSplit) and not self.split.valid_size:
            return "none"
        return "carve"

    def with_random_split(self, valid_size: float = 0.1) -> "Protocol":
        """The seeds' protocol on the same items and labels: random 80/20 with seed
        42. Groups may then straddle the split; that is the seeds' protocol."""
        return replace(self, split=RandomSplit(valid_size=valid_size), group=None)

    def with_validation(self, rule: str) -> "Protocol":
        """The same protocol validated by `rule` (fold datasets only)."""
        if not isinstance(self.split, OfficialFolds):
            raise ProtocolError(f"protocol {self.name} is not a fold protocol: its validation part is fixed "
                                f"({self.validation}); --validation applies to ESC-50 and UrbanSound8K")
        return replace(self, split=replace(self.split, validation=rule))

    def variant_notes(self, variant: str) -> list[str]:
        """Why results on features of `variant` are not comparable with the
        published ones this protocol reproduces (empty when they are)."""
        if self.variant and variant != self.variant:
            return [f"protocol {self.name} is defined on {self.variant}; these features are {variant}: "
                    "not comparable with published numbers"]
        return []

    def prepare(self, items: pd.DataFrame) -> "ProtocolData":
        if self.requires is not None:
            self.requires(items)
        keep = self.select(items).to_numpy(dtype=bool) if self.select is not None else np.ones(len(items), bool)
        rows = np.flatnonzero(keep)
        chosen = items.iloc[rows].reset_index(drop=True)
        if chosen.empty:
            raise ProtocolError(f"protocol {self.name}: no items of the dataset take part; "
                                "is this the dataset (and archive) the protocol is meant for?")
        raw = chosen["label"].astype(str)
        labels = raw.map(self.relabel) if self.relabel else raw
        classes = list(self.classes) if self.classes is not None else sorted(labels.unique())
        unknown = set(labels) - set(classes)
        if unknown:
            raise ProtocolError(f"protocol {self.name}: labels {sorted(unknown)} are not among its classes "
                                f"{classes}; check the dataset's label column")
        index = {c: i for i, c in enumerate(classes)}
        y = labels.map(index).to_numpy(dtype=np.int64)
        folds = self.split.folds(chosen, y, self.group)
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
