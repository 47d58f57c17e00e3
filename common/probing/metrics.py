"""Metric registry: every run writes all of them; a protocol names its primary
one and the one that selects learning rate and epoch on validation."""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from ..errors import ProtocolError


def icbhi_scores(y_true: np.ndarray, y_pred: np.ndarray, normal: int) -> dict[str, float]:
    """ICBHI challenge: sensitivity = abnormal items given their exact abnormal
    class / abnormal items; specificity = normal items called normal / normal
    items; score = their mean."""
    abnormal = y_true != normal
    sensitivity = float((y_pred[abnormal] == y_true[abnormal]).mean()) if abnormal.any() else float("nan")
    specificity = float((y_pred[~abnormal] == normal).mean()) if (~abnormal).any() else float("nan")
    return {"sensitivity": sensitivity, "specificity": specificity,
            "icbhi_score": float(np.nanmean([sensitivity, specificity]))}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 averaged over the classes present in the true labels: a class the
    test split lacks (NSynth test has no synth_lead) would otherwise count as
    F1 = 0 and cap the score below 1. Predictions of an absent class still
    cost the precision of the classes they were taken from."""
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in the true labels: the accuracy
    a class-balanced draw of the items would see (SUPERB's dev sampler)."""
    present = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in present]))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": lambda y, p, **_: float((y == p).mean()),
    "macro_f1": lambda y, p, **_: macro_f1(y, p),
    "balanced_accuracy": lambda y, p, **_: balanced_accuracy(y, p),
    "icbhi_score": lambda y, p, normal, **_: icbhi_scores(y, p, normal)["icbhi_score"],
}


def scorer(name: str, classes: list[str], normal_class: str | None = None) -> Callable[[np.ndarray, np.ndarray], float]:
    """METRICS[name] as a function of (true, predicted) class indices, higher
    is better: what training selects learning rate and epoch with."""
    if name not in METRICS:
        raise ProtocolError(f"unknown metric {name!r}: choose from {', '.join(METRICS)}")
    if name == "icbhi_score" and normal_class is None:
        raise ProtocolError("the ICBHI score needs the protocol's normal class (normal_class=...)")
    normal = list(classes).index(normal_class) if normal_class is not None else None
    metric = METRICS[name]
    return lambda y, p: metric(np.asarray(y), np.asarray(p), normal=normal)


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], normal_class: str | None = None) -> dict:
    """All scalar metrics plus per-class recall and the confusion matrix
    (rows = true class, columns = predicted, in `classes` order; recall is
    None for a class without test items)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.arange(len(classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    out = {"accuracy": METRICS["accuracy"](y_true, y_pred),
           "macro_f1": macro_f1(y_true, y_pred),
           "balanced_accuracy": balanced_accuracy(y_true, y_pred),
           "per_class_recall": {c: (float(cm[i, i] / support[i]) if support[i] else None)
                                for i, c in enumerate(classes)},
           "confusion_matrix": cm.tolist(), "num_test": int(len(y_true))}
    if normal_class is not None:
        out.update(icbhi_scores(y_true, y_pred, classes.index(normal_class)))
    return out
