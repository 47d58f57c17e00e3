"""Result files: one JSON per run, one CSV row per (task, encoder, head,
protocol) appended to `<work>/results/results.csv`, Markdown tables."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_path, atomic_write_json, lock_for

SCALARS = ("accuracy", "macro_f1", "sensitivity", "specificity", "icbhi_score")


def summarize(runs: list[dict]) -> dict:
    """mean and std (population, over all fold x seed runs) of every scalar metric."""
    out = {}
    for name in SCALARS:
        values = [r["metrics"][name] for r in runs if name in r["metrics"]]
        if values:
            out[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
    return out


def write_json(result: dict, path: Path) -> Path:
    """Atomically: a reader (or a kill) never sees half a result."""
    return atomic_write_json(path, result)


def csv_row(result: dict) -> dict:
    summary, metric = result["summary"], result["primary_metric"]
    row = {k: result[k] for k in ("task", "variant", "encoder", "store", "layer", "pooling", "head", "protocol",
                                  "split", "subset", "recipe_name")}
    row.update({"metric": metric, "mean": summary[metric]["mean"], "std": summary[metric]["std"],
                "runs": summary[metric]["n"], "seeds": " ".join(map(str, result["seeds"])),
                "macro_f1": summary["macro_f1"]["mean"], "dataset_complete": result["dataset_complete"],
                "created": result["created"], "result_file": result["result_file"]})
    return row


def append_csv(row: dict, path: Path) -> None:
    """Add `row` to the CSV at `path`. Runs in one work dir append to one file:
    the lock serialises them (no row lost), the atomic replace means a reader
    or a kill never sees a truncated table."""
    frame = pd.DataFrame([row])
    with lock_for(path):
        if path.exists() and path.stat().st_size:
            frame = pd.concat([pd.read_csv(path, dtype=str), frame.astype(str)], ignore_index=True)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)


def markdown_table(rows: list[dict]) -> str:
    """Encoders x (task, protocol, head) as a Markdown table, primary metric in %."""
    lines = ["| task | protocol | encoder | layer | head | metric | mean ± std (%) | macro-F1 (%) | runs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        protocol = r["protocol"] + (f" ({r['subset']})" if r.get("subset") else "") + \
            (" [random split]" if r["split"] == "random" else "")
        lines.append(f"| {r['task']} | {protocol} | {r['encoder']} | {r['layer']} | {r['head']} | {r['metric']} | "
                     f"{100 * float(r['mean']):.1f} ± {100 * float(r['std']):.1f} | "
                     f"{100 * float(r['macro_f1']):.1f} | {r['runs']} |")
    return "\n".join(lines)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
