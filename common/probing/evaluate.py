"""evaluate_features: stored embeddings + a protocol -> trained probes and results."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import DatasetError
from ..errors import UserError
from ..files import atomic_path
from ..extraction.store import FeatureSet, FeatureStore
from ..reporting.results import append_csv, csv_row, now, summarize, write_json
from ..task import Task
from .metrics import evaluate, scorer
from .probe_io import save_probe
from .protocols import OfficialFolds, Protocol
from .training import DEFAULT_RECIPE, Recipe, cpu_threads, refit_probe, train_probe

WEIGHTED = "weighted"  # learnable weighted sum of all stored layers (SUPERB's featurizer)


class LayerError(UserError, ValueError):
    """A --layer value that a store cannot serve (not stored, index out of range)."""
SINGLE_SPLIT_SEEDS = (0, 1, 2)


def default_seeds(protocol: Protocol) -> tuple[int, ...]:
    """Probe seeds when none are given: one per fold on k-fold protocols (the
    folds give the spread), three on single-split protocols, so that every
    leaderboard cell has a mean ± std."""
    return (0,) if isinstance(protocol.split, OfficialFolds) else SINGLE_SPLIT_SEEDS


def layer_matrix(features: FeatureSet, layer: str) -> np.ndarray:
    """[N, D] for one layer; [N, L, D] of every stored layer for `weighted`."""
    if layer == WEIGHTED:
        return np.stack([features.embeddings[name] for name in features.meta["settings"]["layers"]], axis=1)
    return features.embeddings[layer]


def probe_layers(settings: dict, spec: str | None) -> tuple[list[str], list[str]]:
    """(layers to probe, stored layers to load) for a --layer value: None = the
    store's default, "all" = each stored layer, "weighted" = their learnable
    weighted sum, an index into the stored layers, or a layer name."""
    stored = list(settings["layers"])
    if spec in (None, "default"):
        return [settings["default_layer"]], [settings["default_layer"]]
    if spec == "all":
        return stored, stored
    if spec == WEIGHTED:
        if len(stored) < 2:
            raise LayerError("--layer weighted needs features of several layers: extract with --layer all")
        if len(set(settings["layers"].values())) > 1:
            raise LayerError(f"--layer weighted sums layers of one width; this store's differ: {settings['layers']}")
        return [WEIGHTED], stored
    if spec.lstrip("-").isdigit() and spec not in stored:
        index = int(spec)
        if not -len(stored) <= index < len(stored):
            raise LayerError(f"layer index {index} is out of range: the store holds {', '.join(stored)}")
        spec = stored[index]
    if spec not in stored:
        raise LayerError(f"layer {spec!r} is not stored; the store holds {', '.join(stored)} "
                         "(extract it with --layer)")
    return [spec], [spec]


def evaluate_features(task: Task, features: FeatureSet, layer: str, head: str, protocol_name: str, *,
                      split: str = "official", subset: str | None = None, recipe: Recipe = DEFAULT_RECIPE,
                      seeds: tuple[int, ...] | None = None, device="cpu", work_dir: Path | None = None,
                      store_name: str = "", progress: bool = True, plots: bool = True,
                      store_path: Path | None = None, validation: str | None = None, refit: bool = False) -> dict:
    """Train `head` on `layer` of the stored features under one protocol, for
    every fold and seed (`seeds` None: `default_seeds`); write the run's
    JSON, its split table and a CSV row, the probe of the first fold and seed
    (safetensors + JSON, for predict.py) and, with `plots`, PNG figures beside
    the JSON. Every run is scored on its test part and, with the same probe,
    on its validation part (`valid_metrics`: the predictions of the probe
    that chose lr and epoch, made before any refit).

    Learning rate and epoch are chosen on the validation part by the
    protocol's selection metric. `validation` names the rule of a fold
    protocol (`carve` or `next-fold`; None: the protocol's own); `refit`
    retrains each probe on training and validation items at the chosen lr and
    epoch before testing."""
    protocol = task.protocol(protocol_name)
    if validation is not None and validation != protocol.validation and split == "official":
        protocol = protocol.with_validation(validation)
    else:
        validation = None  # the protocol's default (or a random split): file names stay as they were
    if split == "random":
        protocol = protocol.with_random_split(valid_size=0.0 if recipe.select == "last" else 0.1)
    elif split != "official":
        raise ValueError(f"unknown split {split!r}: official or random")
    seeds = tuple(seeds) if seeds else default_seeds(protocol)
    items = features.items
    rows = np.arange(len(items))
    if subset:
        if subset not in task.subsets:
            raise KeyError(f"{task.name} has no subset {subset!r}; available: {', '.join(task.subsets) or 'none'}")
        rows = np.flatnonzero(task.subsets[subset](items).to_numpy(dtype=bool))
        items = items.iloc[rows].reset_index(drop=True)
    data = protocol.prepare(items)
    x = layer_matrix(features, layer)[rows][data.rows]
    meta = features.meta["settings"]
    work_dir = Path(work_dir or task.folder) / "results"
    tag = (f"{protocol_name}{'-' + subset if subset else ''}-{split}{'-' + validation if validation else ''}"
           f"{'-refit' if refit else ''}")
    split_file = work_dir / meta["variant"] / "splits" / f"{tag}.csv"
    with atomic_path(split_file) as tmp:  # shared by every encoder and head run with this tag
        data.split_table().to_csv(tmp, index=False)

    select_by = scorer(protocol.selected_by, data.classes, protocol.normal_class)
    variant_notes = protocol.variant_notes(meta["variant"])
    for note in variant_notes:
        warnings.warn(note)
    runs, first = [], None
    bar = tqdm(total=len(data.folds) * len(seeds) * len(recipe.lrs) * recipe.epochs, unit="epoch",
               disable=not progress, desc=f"{task.name} {store_name}/{layer} {head} {tag}", leave=False)
    for fold in data.folds:
        for seed in seeds:
            with cpu_threads(device):
                fit = train_probe(head, x[fold.train], data.y[fold.train], x[fold.valid], data.y[fold.valid],
                                  len(data.classes), recipe, seed=seed, device=device, progress=bar,
                                  select_by=select_by, balanced=protocol.balanced_sampling)
                # the same metrics on the validation part, of the probe that chose lr and epoch (before
                # any refit): what the report chooses heads by, never test
                valid_metrics = (evaluate(data.y[fold.valid], fit.valid_predictions, data.classes,
                                          protocol.normal_class) if fit.valid_predictions is not None else None)
                if refit and len(fold.valid):
                    fit = refit_probe(fit, x[fold.train], data.y[fold.train], x[fold.valid], data.y[fold.valid],
                                      len(data.classes), recipe, seed=seed, device=device)
            predicted = fit.predict_proba(x[fold.test], device).argmax(-1)
            if first is None:
                first = (fit, fold, seed)
            runs.append({"fold": fold.name, "seed": seed, "lr": fit.lr, "epoch": fit.epoch, "grid": fit.grid,
                         "sizes": {"train": len(fold.train), "valid": len(fold.valid), "test": len(fold.test)},
                         "metrics": evaluate(data.y[fold.test], predicted, data.classes, protocol.normal_class),
                         "valid_metrics": valid_metrics, "refit": fit.refit,
                         "plan": fit.plan, "layer_weights": fit.layer_weights,
                         "curves": fit.curves})
    bar.close()
    stem = work_dir / meta["variant"] / store_name / layer / f"{tag}-{head}"
    result_file = stem.with_name(stem.name + ".json")
    fit, fold, seed = first
    store_path = Path(store_path) if store_path else work_dir.parent / "features" / meta["variant"] / store_name
    # stacked layers ([N, L, D], weighted-sum probe): the stored layers, in order
    input_layers = [layer] if x.ndim == 2 else \
        (list(meta["layers"]) if len(meta["layers"]) == x.shape[1] else None)
    probe_file = save_probe(fit, stem, {
        "task": task.name, "title": task.title, "variant": meta["variant"], "protocol": protocol_name,
        "split": split, "subset": subset or "", "fold": fold.name, "seed": seed, "layer": layer,
        "input_layers": input_layers, "num_layers": int(x.shape[1]) if x.ndim == 3 else None,
        "in_dim": int(x.shape[-1]), "classes": list(data.classes), "primary_metric": protocol.metric,
        "test_metrics": {k: v for k, v in runs[0]["metrics"].items() if isinstance(v, float)},
        "encoder": meta["encoder"], "encoder_options": meta.get("encoder_options", {}),
        "encoder_config": meta.get("encoder_config", {}), "pooling": meta["pooling"],
        "sample_rate": meta.get("sample_rate"), "window_seconds": meta.get("window_seconds"),
        "precision": meta.get("precision", "fp32"), "store": store_name, "store_path": str(store_path),
        "recipe_name": recipe.name, "result_file": str(result_file), "validation": protocol.validation,
        "refit": bool(refit)})
    result = {
        "task": task.name, "title": task.title, "variant": meta["variant"], "encoder": meta["encoder"],
        "store": store_name, "layer": layer, "pooling": meta["pooling"], "head": head,
        "protocol": protocol_name, "protocol_description": protocol.description, "split": split,
        "subset": subset or "", "recipe_name": recipe.name, "recipe": recipe.to_dict(), "seeds": list(seeds),
        "classes": data.classes, "primary_metric": protocol.metric, "selection_metric": protocol.selected_by,
        "validation": protocol.validation, "refit": bool(refit), "balanced_sampling": protocol.balanced_sampling,
        "protocol_variant": protocol.variant, "protocol_comparable": protocol.comparable and not variant_notes,
        "summary": summarize(runs), "valid_summary": summarize(runs, "valid_metrics"), "runs": runs,
        "num_items": len(data.items), "dataset_complete": bool(features.meta.get("dataset_complete", True)),
        "dataset_notes": features.meta.get("dataset_notes", []) + variant_notes,
        "num_failed": features.meta.get("num_failed", 0),
        "split_file": str(split_file), "created": now(), "result_file": str(result_file),
        "probe_file": str(probe_file), "plots": {},
    }
    # results first: a figure that fails, or crashes its plotting library, cannot take them
    write_json(result, result_file)
    append_csv(csv_row(result), work_dir / "results.csv")
    if plots:
        title = f"{task.title} {protocol_name}{' (' + subset + ')' if subset else ''} {split} split · " \
                f"{store_name}/{layer} · {head}"
        test_rows = np.unique(np.concatenate([f.test for f in data.folds]))
        result["plots"], result["plot_notes"] = run_plots(
            stem, title, runs, data.classes, fit, x[test_rows].reshape(len(test_rows), -1), data.y[test_rows],
            input_layers or list(meta.get("layers", [])), tsne_stem=work_dir / meta["variant"] / store_name / layer / tag)
        write_json(result, result_file)
    return result


def run_plots(stem: Path, title: str, runs: list[dict], classes: list[str], fit, x_test: np.ndarray,
              y_test: np.ndarray, layer_names: list[str], tsne_stem: Path) -> tuple[dict[str, str], list[str]]:
    """The run's figures, each drawn in a child process: (figures made, notes
    on figures skipped or failed). A figure that fails is reported and
    skipped, never the end of a run."""
    from ..reporting import plots
    made, notes = {}, []
    folds = len({r["fold"] for r in runs})
    jobs = {  # name -> (figure function, its arguments before the path, after it)
        "confusion": (plots.confusion_plot, (np.sum([r["metrics"]["confusion_matrix"] for r in runs], axis=0),
                                             classes),
                      (f"{title}\nconfusion matrix, summed over {len(runs)} run(s) ({folds} fold(s)), "
                       "normalised per true class",)),
        "curves": (plots.curves_plot, (fit.curves,),
                   (f"{title}\ntraining curves (first fold: {runs[0]['fold']}, seed {runs[0]['seed']}, "
                    f"lr {fit.lr:g})", fit.epoch)),
        "tsne": (plots.tsne_plot, (x_test, y_test, classes), (title.rsplit(" · ", 1)[0],)),
    }
    degenerate = plots.tsne_degenerate(x_test)
    if degenerate:
        notes.append(f"t-SNE skipped: {degenerate}")
    if fit.layer_weights is not None:
        weights = fit.layer_weights
        weights = weights.detach().cpu().numpy() if hasattr(weights, "detach") else np.asarray(weights)
        jobs["layer_weights"] = (plots.layer_weights_plot, (weights, layer_names), (f"{title}\nlearned layer weights",))
    for name, (function, before, after) in jobs.items():
        path = (tsne_stem if name == "tsne" else stem)
        path = path.with_name(f"{path.name}-{name}.png")
        try:
            made[name] = str(plots.draw_in_child(function, *before, path, *after))
        except plots.PlotError as err:  # a figure is a by-product: report it, keep the results
            notes.append(f"could not draw {path.name}: {err}")
    for note in notes:
        warnings.warn(note)
    return made, notes


def layer_plots(results: list[dict], work_dir: Path | None, task: Task) -> list[str]:
    """One accuracy-over-layers PNG per (store, protocol, split, subset, head)
    when several layers of a store were probed."""
    from ..reporting import plots
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["store"], r["protocol"], r["split"], r["subset"], r["head"]), []).append(r)
    made = []
    for (variant, store, protocol, split, subset, head), group in groups.items():
        if len(group) < 2:
            continue
        metric = group[0]["primary_metric"]
        tag = f"{protocol}{'-' + subset if subset else ''}-{split}"
        path = Path(work_dir or task.folder) / "results" / variant / store / f"{tag}-{head}-layers.png"
        try:
            made.append(str(plots.draw_in_child(
                plots.layer_curve_plot, [r["layer"] for r in group], [r["summary"][metric]["mean"] for r in group],
                [r["summary"][metric]["std"] for r in group], path, metric,
                f"{task.title} {protocol}{' (' + subset + ')' if subset else ''} {split} split · {store} · {head}"
                f"\n{metric.replace('_', ' ')} per layer (mean ± std over folds and seeds)")))
        except plots.PlotError as err:
            warnings.warn(f"could not draw {path.name}: {err}")
    return made


def run_probes(task: Task, stores: list[FeatureStore], *, layer: str | None = None, heads=("linear", "three_layer"),
               protocols=None, split: str = "official", subset: str | None = None, recipe: Recipe = DEFAULT_RECIPE,
               seeds: tuple[int, ...] | None = None, device="cpu", work_dir: Path | None = None,
               progress: bool = True, plots: bool = True, validation: str | None = None,
               refit: bool = False) -> list[dict]:
    """Every (store, layer, protocol, head) combination; returns the CSV rows.
    `layer`: see `probe_layers`; with "all" and `plots`, a metric-per-layer PNG
    per protocol and head. Without `protocols`, every protocol of the task
    whose data the store holds (a protocol needing, e.g., a test archive the
    store lacks is skipped with its reason); `validation` applies to fold
    protocols only."""
    rows, results, plans, skipped = [], [], [], []
    for store in stores:
        try:
            plans.append((store, *probe_layers(store.meta()["settings"], layer)))
        except LayerError as err:
            skipped.append((store.path.name, err))
    # with several stores of an encoder (its default layer, and all layers), a
    # layer choice is served by those that hold it
    if skipped and not plans:
        if len(skipped) == 1:
            raise skipped[0][1]
        raise LayerError("no store serves --layer " + str(layer) + ": "
                         + "; ".join(f"{name}: {err}" for name, err in skipped))
    for name, err in skipped if progress else ():
        print(f"{task.name}: skipping store {name}: {err}")
    for store, layers, needed in plans:
        features = store.load(needed)
        chosen = protocols or [name for name in task.protocols if _runnable(task, name, features.items, progress)]
        for name in layers:
            for protocol in chosen:
                rule = validation if isinstance(task.protocol(protocol).split, OfficialFolds) else None
                for head in heads:
                    result = evaluate_features(task, features, name, head, protocol, split=split, subset=subset,
                                               recipe=recipe, seeds=seeds, device=device, work_dir=work_dir,
                                               store_name=store.path.name, progress=progress, plots=plots,
                                               store_path=store.path, validation=rule, refit=refit)
                    rows.append(csv_row(result))
                    results.append(result)
                    if progress:
                        metric, summary = result["primary_metric"], result["summary"]
                        print(f"{task.name} {store.path.name}/{name} {head} {protocol}: {metric} "
                              f"{100 * summary[metric]['mean']:.1f} ± {100 * summary[metric]['std']:.1f}"
                              f"  ({result['result_file']})")
    if plots and layer == "all":
        for path in layer_plots(results, work_dir, task):
            if progress:
                print(f"layer-wise plot: {path}")
    return rows


def _runnable(task: Task, name: str, items, progress: bool) -> bool:
    """Whether the items hold what protocol `name` requires; says why not."""
    requires = task.protocol(name).requires
    try:
        if requires is not None:
            requires(items)
    except (UserError, DatasetError) as err:  # DatasetError: not yet a UserError on every branch
        if progress:
            print(f"{task.name}: skipping protocol {name}: {err}")
        return False
    return True
