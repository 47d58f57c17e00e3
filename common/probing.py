"""evaluate_features: stored embeddings + a protocol -> trained probes and results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .metrics import evaluate
from .results import append_csv, csv_row, now, summarize, write_json
from .store import FeatureSet, FeatureStore
from .task import Task
from .training import DEFAULT_RECIPE, Recipe, cpu_threads, train_probe


def evaluate_features(task: Task, features: FeatureSet, layer: str, head: str, protocol_name: str, *,
                      split: str = "official", subset: str | None = None, recipe: Recipe = DEFAULT_RECIPE,
                      seeds: tuple[int, ...] = (0,), device="cpu", work_dir: Path | None = None,
                      store_name: str = "", progress: bool = True) -> dict:
    """Train `head` on `layer` of the stored features under one protocol, for
    every fold and seed; write the run's JSON, its split table and a CSV row."""
    protocol = task.protocol(protocol_name)
    if split == "random":
        protocol = protocol.with_random_split(valid_size=0.0 if recipe.select == "last" else 0.1)
    elif split != "official":
        raise ValueError(f"unknown split {split!r}: official or random")
    items = features.items
    rows = np.arange(len(items))
    if subset:
        if subset not in task.subsets:
            raise KeyError(f"{task.name} has no subset {subset!r}; available: {', '.join(task.subsets) or 'none'}")
        rows = np.flatnonzero(task.subsets[subset](items).to_numpy(dtype=bool))
        items = items.iloc[rows].reset_index(drop=True)
    data = protocol.prepare(items)
    x = features.embeddings[layer][rows][data.rows]
    meta = features.meta["settings"]
    work_dir = Path(work_dir or task.folder) / "results"
    tag = f"{protocol_name}{'-' + subset if subset else ''}-{split}"
    split_file = work_dir / meta["variant"] / "splits" / f"{tag}.csv"
    split_file.parent.mkdir(parents=True, exist_ok=True)
    data.split_table().to_csv(split_file, index=False)

    runs = []
    bar = tqdm(total=len(data.folds) * len(seeds) * len(recipe.lrs) * recipe.epochs, unit="epoch",
               disable=not progress, desc=f"{task.name} {store_name}/{layer} {head} {tag}", leave=False)
    for fold in data.folds:
        for seed in seeds:
            with cpu_threads(device):
                fit = train_probe(head, x[fold.train], data.y[fold.train], x[fold.valid], data.y[fold.valid],
                                  len(data.classes), recipe, seed=seed, device=device, progress=bar)
            predicted = fit.predict_proba(x[fold.test], device).argmax(-1)
            runs.append({"fold": fold.name, "seed": seed, "lr": fit.lr, "epoch": fit.epoch, "grid": fit.grid,
                         "sizes": {"train": len(fold.train), "valid": len(fold.valid), "test": len(fold.test)},
                         "metrics": evaluate(data.y[fold.test], predicted, data.classes, protocol.normal_class),
                         "curves": fit.curves})
    bar.close()
    result_file = work_dir / meta["variant"] / store_name / layer / f"{tag}-{head}.json"
    result = {
        "task": task.name, "title": task.title, "variant": meta["variant"], "encoder": meta["encoder"],
        "store": store_name, "layer": layer, "pooling": meta["pooling"], "head": head,
        "protocol": protocol_name, "protocol_description": protocol.description, "split": split,
        "subset": subset or "", "recipe_name": recipe.name, "recipe": recipe.to_dict(), "seeds": list(seeds),
        "classes": data.classes, "primary_metric": protocol.metric, "summary": summarize(runs), "runs": runs,
        "num_items": len(data.items), "dataset_complete": bool(features.meta.get("dataset_complete", True)),
        "dataset_notes": features.meta.get("dataset_notes", []), "num_failed": features.meta.get("num_failed", 0),
        "split_file": str(split_file), "created": now(), "result_file": str(result_file),
    }
    write_json(result, result_file)
    append_csv(csv_row(result), work_dir / "results.csv")
    return result


def run_probes(task: Task, stores: list[FeatureStore], *, layer: str | None = None, heads=("linear", "three_layer"),
               protocols=None, split: str = "official", subset: str | None = None, recipe: Recipe = DEFAULT_RECIPE,
               seeds: tuple[int, ...] = (0,), device="cpu", work_dir: Path | None = None,
               progress: bool = True) -> list[dict]:
    """Every (store, layer, protocol, head) combination; returns the CSV rows.
    `layer`: None = each store's default layer, "all" = every stored layer."""
    rows = []
    for store in stores:
        settings = store.meta()["settings"]
        layers = list(settings["layers"]) if layer == "all" else [layer or settings["default_layer"]]
        features = store.load(layers)
        for name in layers:
            for protocol in protocols or list(task.protocols):
                for head in heads:
                    result = evaluate_features(task, features, name, head, protocol, split=split, subset=subset,
                                               recipe=recipe, seeds=seeds, device=device, work_dir=work_dir,
                                               store_name=store.path.name, progress=progress)
                    rows.append(csv_row(result))
                    if progress:
                        metric, summary = result["primary_metric"], result["summary"]
                        print(f"{task.name} {store.path.name}/{name} {head} {protocol}: {metric} "
                              f"{100 * summary[metric]['mean']:.1f} ± {100 * summary[metric]['std']:.1f}"
                              f"  ({result['result_file']})")
    return rows
