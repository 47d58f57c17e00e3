"""Separation on the demo data (`run_benchmark.py --demo`): NMF bases learned
on the demo ESC-50 folds 1-3, then the baselines and `nmf` scored on the demo
mixture list (folds 4-5, written by common.data.demo)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .baselines import MixtureBaseline, OracleIRM
from .benchmarks import BENCHMARKS
from .nmf import NMFSeparator, train_bases
from .pipeline import csv_row, evaluate

DEMO_LIST = "separation_mixtures.csv"


def run_separation_demo(esc50_root: Path, work_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Score mixture, oracle_irm and nmf on the demo mixtures; returns their rows."""
    bench = BENCHMARKS["esc50"]
    listed = Path(esc50_root) / "meta" / DEMO_LIST
    # small bases: the demo shows the pipeline working, in seconds
    bases = train_bases("esc50", esc50_root, work_dir, folds=(1, 2, 3), n_components=8, max_frames=800,
                        max_iter=100)
    rows = []
    for method, separator in (("mixture", MixtureBaseline()), ("oracle_irm", OracleIRM()),
                              ("nmf", NMFSeparator(bases, max_iter=100))):
        run = evaluate(separator, method, bench, esc50_root, work_dir, mixture_list=listed, overwrite=True,
                       progress=progress)
        rows.append(csv_row(run.result))
    return pd.DataFrame(rows)
