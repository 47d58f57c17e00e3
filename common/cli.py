"""Command lines of the task folders' extract.py and train.py."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .data import PartialDownloadWarning
from .data.fetch import add_fetch_options, apply_fetch_options, fetch_task_data
from .encoders import ENCODERS, encoder_class
from .entry import add_debug_option, entry_point
from .errors import UserError
from .extraction.pooling import POOLINGS
from .extraction.store import FeatureStore, find_stores
from .options import HelpFormatter, OptionError, device, learning_rate, non_negative_int, positive_float, positive_int
from .probing.protocols import VALIDATION_RULES, OfficialFolds
from .probing.training import DEFAULT_RECIPE, SEEDS_RECIPE, Recipe
from .task import Task


def _options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise OptionError(f"--encoder-option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = value
    return out


def show_warnings(message, category, *args, **kwargs):
    """One line per warning, without the source line that Python adds."""
    if issubclass(category, PartialDownloadWarning):
        print(f"warning: {message} (results will not be comparable with published ones)", file=sys.stderr)
    else:
        print(f"warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- extract
def add_encoder_options(p: argparse.ArgumentParser) -> None:
    """Where the encoder's weights are and how it is set up: shared by
    extract.py and run_benchmark.py (read back by `encoder_options`)."""
    p.add_argument("--checkpoint", help="checkpoint file or folder, instead of the default under pretrained_models/")
    p.add_argument("--encoder-option", action="append", metavar="KEY=VALUE", help="extra encoder option, repeatable")
    p.add_argument("--pretrained-dir", help="folder holding the checkpoints (default: pretrained_models/)")


def encoder_options(args, encoder: str) -> dict:
    """The encoder options of a command line (--encoder-option, --checkpoint,
    --revision), refused in one line before any data is read."""
    options = _options(args.encoder_option)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    apply_fetch_options(args, options)
    encoder_class(encoder).parse_options(options)
    return options


def extract_parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"Extract pooled embeddings of every {task.title} item with a frozen encoder and store them "
                    f"under {task.folder.name}/features/. Re-running with the same settings resumes an "
                    "interrupted extraction or reuses a complete one.",
        formatter_class=HelpFormatter)
    p.add_argument("--encoder", required=True, choices=sorted(ENCODERS), help="encoder from the registry")
    p.add_argument("--data-root", help=f"dataset root in its official layout (default: ${task.data_env}); "
                                       f"download: {task.download}")
    p.add_argument("--layer", default=None,
                   help="layer(s) to store: a name, an index, a comma list, or 'all' (default: the encoder's)")
    p.add_argument("--pooling", default="mean", choices=POOLINGS, help="pooling over time")
    p.add_argument("--device", default="auto", type=device, help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast precision")
    p.add_argument("--batch-size", type=positive_int, default=64, help="most items per batch")
    p.add_argument("--max-batch-seconds", type=positive_float, default=160.0,
                   help="audio seconds per batch including padding (bounds memory)")
    p.add_argument("--num-workers", type=non_negative_int, default=None,
                   help="DataLoader decoding workers, 0 = decode in the main process (default: cores-1, max 4)")
    p.add_argument("--shard-size", type=positive_int, default=1024, help="items per saved shard (unit of resumption)")
    add_encoder_options(p)
    p.add_argument("--work-dir", help="where features/ and results/ go (default: the task folder)")
    p.add_argument("--store", help="store name (default: derived from encoder, layer and pooling)")
    p.add_argument("--overwrite", action="store_true", help="rebuild a store made with other settings")
    add_fetch_options(p, task.downloads)
    return add_debug_option(p)


@entry_point
def extract_main(task: Task, argv: list[str] | None = None) -> FeatureStore:
    args = extract_parser(task).parse_args(argv)
    warnings.showwarning = show_warnings
    from .extraction.extract import extract_embeddings  # torch import after argument errors
    options = encoder_options(args, args.encoder)
    data_root = args.data_root
    if args.download is not None:
        data_root = fetch_task_data(task, task.data_root(data_root), args.download or None)
    return extract_embeddings(
        task, args.encoder, data_root, work_dir=args.work_dir, store_name=args.store, layer=args.layer,
        pooling=args.pooling, device=args.device, precision=args.precision,
        max_batch_seconds=args.max_batch_seconds, batch_size=args.batch_size, num_workers=args.num_workers,
        shard_size=args.shard_size, overwrite=args.overwrite, encoder_options=options,
        pretrained_dir=args.pretrained_dir)


# --------------------------------------------------------------------------- train
def add_selection_options(p: argparse.ArgumentParser, fold_tasks: bool = True, scope: str = "") -> None:
    """--validation (only where a task has official folds) and --refit: shared by
    train.py and run_benchmark.py."""
    if fold_tasks:
        p.add_argument("--validation", choices=VALIDATION_RULES, default=None,
                       help=f"validation part of each fold{scope}: carve = 10%% of the training folds, stratified "
                            "and group-safe (EVAR's rule, the default); next-fold = the fold after the test fold "
                            "(HEAR's rule)")
    p.add_argument("--refit", action="store_true",
                   help="after choosing lr and epoch on validation, retrain on training + validation items at "
                        "that lr and epoch before testing (validation metrics stay those measured before)")


def train_parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"Train probes on stored {task.title} features and write results under "
                    f"{task.folder.name}/results/. Protocols: "
                    + "; ".join(f"{name}: {pr.description}" for name, pr in task.protocols.items()),
        formatter_class=HelpFormatter)
    p.add_argument("--encoder", help="train on this encoder's features (default: every encoder that has features)")
    p.add_argument("--store", help="a store name under features/<dataset>/ (when an encoder has several)")
    p.add_argument("--layer", default=None,
                   help="stored layer to probe: a name or an index, 'all' for each layer in turn, or 'weighted' for "
                        "a learnable weighted sum of all stored layers (default: the store's default layer)")
    p.add_argument("--head", default="both", choices=("linear", "three_layer", "both"),
                   help="probe head(s) to train: one linear layer, three layers (256-unit hidden), or both")
    p.add_argument("--protocol", nargs="+", default=None, choices=list(task.protocols),
                   help="protocols to run (default: all official ones)")
    p.add_argument("--split", default="official", choices=("official", "random"),
                   help="official protocol split, or the seeds' random 80/20 split with seed 42")
    if task.subsets:
        p.add_argument("--subset", choices=list(task.subsets), help="restrict to a subset of the classes")
    add_selection_options(p, fold_tasks=any(isinstance(pr.split, OfficialFolds) for pr in task.protocols.values()))
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=None,
                   help="probe seeds; mean ± std over them (default: 0 1 2 on single-split protocols, 0 on k-fold "
                        "protocols, whose folds give the spread)")
    p.add_argument("--recipe", default="default", choices=("default", "seeds"),
                   help=f"default (the default): lr grid {list(DEFAULT_RECIPE.lrs)} and epoch picked on validation "
                        f"({DEFAULT_RECIPE.name}); seeds: the seeds' lr 1e-3, batch 8, 100 epochs, last epoch")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs, used as given (default: the recipe's: at most 100, fewer on large training sets)")
    p.add_argument("--lr", type=learning_rate, default=None,
                   help="pin the learning rate (default: the recipe's grid, or 1e-3 for seeds)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="probe batch size, used as given (default: the recipe's: 64, larger on large training "
                        "sets; seeds: 8)")
    p.add_argument("--device", default="auto", type=device, help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures beside each result")
    p.add_argument("--work-dir", help="where features/ and results/ are (default: the task folder)")
    return add_debug_option(p)


def recipe_from_args(args) -> Recipe:
    """The recipe named by --recipe with --epochs, --lr and --batch-size
    applied (train.py; run_benchmark.py, which has only --epochs). A changed
    recipe is named after its changes, so results never record `grid-v2` for
    settings that are not grid-v2's."""
    recipe, epochs = getattr(args, "recipe", "default"), getattr(args, "epochs", None)
    lr, batch_size = getattr(args, "lr", None), getattr(args, "batch_size", None)
    base = SEEDS_RECIPE if recipe == "seeds" else DEFAULT_RECIPE
    changes = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if lr is not None:
        changes["lrs"] = (lr,)
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if not changes:
        return base
    fields = {**base.to_dict(), **changes}
    fields["name"] = base.name + "+" + ",".join(f"{k}={v[0] if k == 'lrs' else v}" for k, v in changes.items())
    # a value the user pins is used as given, not rescaled by the size rules
    if batch_size is not None:
        fields["steps_per_epoch"] = None
    if epochs is not None:
        fields["item_budget"] = None
    return Recipe(**fields)


@entry_point
def train_main(task: Task, argv: list[str] | None = None) -> list[dict]:
    args = train_parser(task).parse_args(argv)
    from .extraction.extract import resolve_device
    from .probing.evaluate import run_probes
    from .reporting.results import markdown_table

    warnings.showwarning = show_warnings
    work_dir = Path(args.work_dir or task.folder)
    stores = find_stores(work_dir / "features", args.encoder, task=task.name)
    if args.store:
        stores = [s for s in stores if s.path.name == args.store]
    if not stores:
        what = " ".join(filter(None, (f"of encoder {args.encoder!r}" if args.encoder else "",
                                      f"in store {args.store!r}" if args.store else "")))
        others = sorted({s.meta()["settings"].get("task") for s in find_stores(work_dir / "features")} - {task.name})
        hint = f" (the stores there are of task {', '.join(map(str, others))}, e.g. copied with the folder)" \
            if others else ""
        raise UserError(f"no complete {task.name} features {what + ' ' if what else ''}under "
                        f"{work_dir / 'features'}{hint}: run `python extract.py --encoder NAME --data-root DIR` "
                        "first")
    recipe = recipe_from_args(args)
    torch_device = resolve_device(args.device)
    heads = ["linear", "three_layer"] if args.head == "both" else [args.head]
    protocols = args.protocol or list(task.protocols)
    rows = run_probes(task, stores, layer=args.layer, heads=heads, protocols=protocols, split=args.split,
                      subset=getattr(args, "subset", None), recipe=recipe, seeds=args.seeds,
                      device=torch_device, work_dir=work_dir, plots=not args.no_plots,
                      validation=getattr(args, "validation", None), refit=args.refit)
    print()
    print(markdown_table(rows))
    return rows
