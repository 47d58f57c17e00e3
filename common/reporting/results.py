"""Result files: one JSON per run, one CSV row per (task, encoder, head,
protocol) appended to `<work>/results/results.csv`, Markdown tables."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_path, atomic_write_json, lock_for

SCALARS = ("accuracy", "macro_f1", "sensitivity", "specificity", "icbhi_score")


def summarize(runs: list[dict], part: str = "metrics") -> dict:
    """mean and std (population, over all fold x seed runs) of every scalar
    metric of one part of the runs: "metrics" (test) or "valid_metrics"
    (validation; runs without a validation part are left out)."""
    out = {}
    for name in SCALARS:
        values = [r[part][name] for r in runs if r.get(part) and name in r[part]]
        if values:
            out[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
    return out


def write_json(result: dict, path: Path) -> Path:
    """Atomically: a reader (or a kill) never sees half a result."""
    return atomic_write_json(path, result)


def csv_row(result: dict) -> dict:
    summary, metric = result["summary"], result["primary_metric"]
    row = {k: result[k] for k in ("task", "variant", "encoder", "store", "layer", "pooling", "head", "protocol",
                                  "split", "subset", "recipe_name", "validation", "refit", "selection_metric")}
    valid = result.get("valid_summary", {}).get(metric, {})
    row.update({"metric": metric, "mean": summary[metric]["mean"], "std": summary[metric]["std"],
                "valid_mean": valid.get("mean", ""), "valid_std": valid.get("std", ""),
                "runs": summary[metric]["n"], "seeds": " ".join(map(str, result["seeds"])),
                "macro_f1": summary["macro_f1"]["mean"], "dataset_complete": result["dataset_complete"],
                # False where the protocol's own settings are not those of any published table
                "comparable": result.get("protocol_comparable", True),
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
    """Encoders x (task, protocol, head) as a Markdown table, primary metric in %
    (test mean ± std, and the validation mean that the leaderboard chooses heads by)."""
    lines = ["| task | protocol | encoder | layer | head | metric | mean ± std (%) | validation (%) | macro-F1 (%) "
             "| runs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        # what tells two rows of one encoder apart: the settings that are not the defaults, and the store
        tags = [tag for tag, shown in (("random split", r["split"] == "random"),
                                       ("next-fold", r.get("validation") == "next-fold"),
                                       ("refit", str(r.get("refit", "")).lower() == "true")) if shown]
        protocol = r["protocol"] + (f" ({r['subset']})" if r.get("subset") else "") + \
            (f" [{', '.join(tags)}]" if tags else "")
        encoder = r["encoder"] + (f" ({r['store']})" if r.get("store") and r["store"] != r["encoder"] else "")
        valid = f"{100 * float(r['valid_mean']):.1f}" if str(r.get("valid_mean", "")) != "" else "–"
        lines.append(f"| {r['task']} | {protocol} | {encoder} | {r['layer']} | {r['head']} | {r['metric']} | "
                     f"{100 * float(r['mean']):.1f} ± {100 * float(r['std']):.1f} | {valid} | "
                     f"{100 * float(r['macro_f1']):.1f} | {r['runs']} |")
    return "\n".join(lines)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
