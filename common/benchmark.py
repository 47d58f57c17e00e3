"""The whole benchmark in one call: every task folder, extract then probe."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .cli import add_encoder_options, add_selection_options, encoder_options, recipe_from_args
from .data.fetch import add_fetch_options, fetch_task_data
from .encoders import ENCODERS, PROJECT_ROOT, default_pretrained_dir
from .entry import add_debug_option, entry_point
from .options import HelpFormatter, device, non_negative_int, positive_int
from .task import load_task

# task folder -> name of its dataset in common.data.demo
TASK_FOLDERS = {
    "esc50_feature_fc": "esc50",
    "urbansound8k_feature_fc": "urbansound8k",
    "nsynth_feature_fc": "nsynth",
    "speaker_recognition": "librispeech",
    "key_word_spotting": "speech_commands",
    "icbhi_feature_fc": "icbhi",
}


def demo_encoder(pretrained_dir: Path) -> str:
    """Real AudioSet weights when the user has copied them in, MFCC otherwise."""
    weights = pretrained_dir / "efficientat_mn04" / "mn04_as_mAP_432.pt"
    return "efficientat_mn04" if weights.exists() else "mfcc"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Run the benchmark on all six tasks (extract embeddings, train both probes on the official "
                    "protocols) and print one results table. --demo makes small synthetic datasets in the "
                    "official layouts and runs on them; --data-root runs on the real datasets.",
        formatter_class=HelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--demo", action="store_true", help="generate demo data (into demo_data/) and run on it")
    src.add_argument("--data-root", help="folder holding the six datasets in their official layouts "
                                         "(ESC-50-master/, UrbanSound8K/, nsynth-*/, LibriSpeech/, "
                                         "speech_commands_v0.0x/, ICBHI_final_database/)")
    p.add_argument("--demo-dir", help="where demo data is generated (default: demo_data/)")
    p.add_argument("--encoder", choices=sorted(ENCODERS),
                   help="encoder (default with --demo: efficientat_mn04 if its weights are in "
                        "pretrained_models/efficientat_mn04/ (or --pretrained-dir), else mfcc; with --data-root: mfcc)")
    add_encoder_options(p)
    p.add_argument("--tasks", nargs="+", choices=list(TASK_FOLDERS), default=list(TASK_FOLDERS), metavar="TASK",
                   help=f"task folders to run, of: {', '.join(TASK_FOLDERS)} (default: all six)")
    p.add_argument("--work-dir", help="where features and results go (default: demo_runs/ with --demo, "
                                      "else each task folder)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="probe epochs, used as given (default: the recipe's, at most 100 and fewer on large "
                        "training sets)")
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=None,
                   help="probe seeds (default: 0 1 2 on single-split tasks, one per fold on k-fold tasks)")
    add_selection_options(p, scope=" on the fold tasks (ESC-50, UrbanSound8K)")
    p.add_argument("--device", default="auto", type=device, help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--num-workers", type=non_negative_int, default=None,
                   help="extraction's decoding workers, 0 = decode in the main process (default: cores-1, max 4)")
    p.add_argument("--download", action="store_true",
                   help="first fetch each task's official dataset archives into --data-root (verified, resumable, "
                        "licence printed; a dataset already complete there is not fetched again)")
    add_fetch_options(p)
    return add_debug_option(p)


@entry_point
def main(argv=None) -> list[dict]:
    p = parser()
    args = p.parse_args(argv)
    if args.download and args.demo:
        p.error("--download fetches the real datasets: use it with --data-root, not --demo")
    import warnings

    from .cli import show_warnings
    warnings.showwarning = show_warnings
    from .extraction.extract import extract_embeddings, resolve_device
    from .probing.evaluate import run_probes
    from .reporting.results import markdown_table

    started = time.time()
    pretrained_dir = Path(args.pretrained_dir) if args.pretrained_dir else default_pretrained_dir()
    encoder = args.encoder or (demo_encoder(pretrained_dir) if args.demo else "mfcc")
    options = encoder_options(args, encoder)
    roots: dict[str, Path] = {}
    if args.demo:
        from .data.demo import make_demo_datasets
        demo_dir = Path(args.demo_dir) if args.demo_dir else PROJECT_ROOT / "demo_data"
        made = make_demo_datasets(demo_dir, tasks=[TASK_FOLDERS[t] for t in args.tasks])
        roots = {t: made[TASK_FOLDERS[t]] for t in args.tasks}
    work_root = Path(args.work_dir) if args.work_dir else (PROJECT_ROOT / "demo_runs" if args.demo else None)
    recipe = recipe_from_args(args)
    torch_device = resolve_device(args.device)
    rows = []
    for folder in args.tasks:
        task = load_task(PROJECT_ROOT / folder)
        work_dir = work_root / folder if work_root else task.folder
        if args.download:
            roots[folder] = fetch_task_data(task, args.data_root)
        print(f"== {task.title}: extracting with {encoder}")
        store = extract_embeddings(task, encoder, roots.get(folder, args.data_root), work_dir=work_dir,
                                   device=args.device, num_workers=args.num_workers, encoder_options=options,
                                   pretrained_dir=pretrained_dir)
        rows += run_probes(task, [store], recipe=recipe, seeds=args.seeds, device=torch_device,
                           work_dir=work_dir, validation=args.validation, refit=args.refit)
    separation = None
    if args.demo and "esc50_feature_fc" in args.tasks:   # separation on the demo ESC-50 mixtures
        from .separation.demo import run_separation_demo
        print("== Source separation: mixture, oracle_irm and nmf on the demo ESC-50 mixtures")
        separation = run_separation_demo(roots["esc50_feature_fc"], work_root / "source_separation")
    print()
    print(markdown_table(rows))
    if separation is not None:
        from .separation.report import published_rows, table_with_notes
        print()
        print(table_with_notes(separation, published_rows()))
    print(f"\n{len(rows)} results in {time.time() - started:.0f} s; per-run JSON and results.csv under "
          f"{work_root or 'each task folder'}")
    return rows
