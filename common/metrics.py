"""Metric registry: every run writes all of them; a protocol names its primary one."""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def icbhi_scores(y_true: np.ndarray, y_pred: np.ndarray, normal: int) -> dict[str, float]:
    """ICBHI challenge: sensitivity = abnormal items given their exact abnormal
    class / abnormal items; specificity = normal items called normal / normal
    items; score = their mean."""
    abnormal = y_true != normal
    sensitivity = float((y_pred[abnormal] == y_true[abnormal]).mean()) if abnormal.any() else float("nan")
    specificity = float((y_pred[~abnormal] == normal).mean()) if (~abnormal).any() else float("nan")
    return {"sensitivity": sensitivity, "specificity": specificity,
            "icbhi_score": float(np.nanmean([sensitivity, specificity]))}


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": lambda y, p, **_: float((y == p).mean()),
    "macro_f1": lambda y, p, classes, **_: float(f1_score(y, p, labels=range(len(classes)), average="macro",
                                                          zero_division=0)),
    "icbhi_score": lambda y, p, normal, **_: icbhi_scores(y, p, normal)["icbhi_score"],
}


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], normal_class: str | None = None) -> dict:
    """All scalar metrics plus per-class recall and the confusion matrix
    (rows = true class, columns = predicted, in `classes` order)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.arange(len(classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    out = {"accuracy": METRICS["accuracy"](y_true, y_pred),
           "macro_f1": METRICS["macro_f1"](y_true, y_pred, classes=classes),
           "per_class_recall": {c: (float(cm[i, i] / support[i]) if support[i] else None)
                                for i, c in enumerate(classes)},
           "confusion_matrix": cm.tolist(), "num_test": int(len(y_true))}
    if normal_class is not None:
        out.update(icbhi_scores(y_true, y_pred, classes.index(normal_class)))
    return out
