"""Command lines of source_separation/: separate.py, evaluate.py, train.py.

A method's own options (`Separator.method_options`) are offered as named
options once `--method` has chosen it, so `--help` after `--method M` lists
them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import DatasetError
from ..data.audio import AudioReadError
from ..errors import UserError
from ..options import device, positive_int
from . import SEPARATORS, build_separator, separator_class
from .benchmarks import BENCHMARKS, benchmark

AUDIO_SUFFIXES = (".wav", ".flac")


def _fail(err: Exception) -> None:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    sys.exit(f"error: {' '.join(str(message).split())}")


USER_ERRORS = (UserError, DatasetError, AudioReadError, KeyError, ValueError, OSError)


def _method(argv: list[str] | None) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method")
    known, _ = pre.parse_known_args(argv)
    return known.method


def _add_method_options(p: argparse.ArgumentParser, method: str | None) -> None:
    if method not in SEPARATORS:
        return
    try:
        options = separator_class(method).method_options
    except ImportError as err:   # a method whose module has not landed or lacks a dependency
        p.epilog = f"(the options of {method} are not available: {err})"
        return
    group = p.add_argument_group(f"options of {method}")
    for option in options:
        if option.type is bool:
            group.add_argument(f"--{option.name.replace('_', '-')}", dest=f"method_{option.name}",
                               action="store_true", default=option.default, help=option.help)
        else:
            group.add_argument(f"--{option.name.replace('_', '-')}", dest=f"method_{option.name}",
                               type=option.type, default=option.default, help=option.help)


def _method_options(args) -> dict:
    return {k[len("method_"):]: v for k, v in vars(args).items() if k.startswith("method_")}


def _common(p: argparse.ArgumentParser, method: str | None) -> None:
    p.add_argument("--method", required=True, choices=sorted(SEPARATORS),
                   help="separation method from the registry (common/separation/__init__.py); its own options "
                        "are listed by `--method M --help`")
    p.add_argument("--pretrained-dir", help="folder holding checkpoints (default: pretrained_models/)")
    p.add_argument("--work-dir", help="where results/ and models/ are (default: the task folder)")
    _add_method_options(p, method)


def _build(args, work_dir: Path, dataset: str | None = None, classes: list[str] | None = None):
    options = _method_options(args)
    if "bases" in options and options["bases"] is None:   # NMF: the newest bases in this work dir that fit
        options["bases"] = str(work_dir / "models" / "nmf")
        options["dataset"] = dataset
        options["classes"] = classes
    return build_separator(args.method, args.pretrained_dir, **options)


# --------------------------------------------------------------------------- separate.py
def separate_parser(task, method: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"{task.title}: separate the queried source from mixtures. Writes <out>/<name>/target.wav and "
                    "one WAV per other separated source at the input's sample rate, and separation.json (what was "
                    "done). A folder is searched recursively for *.wav and *.flac.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="MIX", help="mixture file(s) or folder(s)")
    p.add_argument("-o", "--out", default="separated", help="output folder")
    q = p.add_argument_group("query (what to separate)")
    q.add_argument("--query", help='text naming the source, e.g. "dog barking"')
    q.add_argument("--query-audio", help="a reference recording of the wanted sound")
    q.add_argument("--query-embedding", help="a precomputed query embedding (.npy, e.g. 512-d CLAP)")
    classes = q.add_mutually_exclusive_group()
    classes.add_argument("--classes", nargs="+", help="classes in the mixture, target first (nmf)")
    classes.add_argument("--probe", help="predict the classes in each mixture with this saved probe (.probe.json "
                                         "from train.py in esc50_feature_fc/ or nsynth_feature_fc/); its top "
                                         "class is the target unless --query names one")
    classes.add_argument("--probe-task", help="predict them with the newest saved probe of this task folder "
                                              "(esc50_feature_fc or nsynth_feature_fc)")
    q.add_argument("--top-k", type=positive_int, default=2, help="classes taken from the probe's prediction")
    q.add_argument("--device", type=device, default="auto", help="device of the probe's encoder")
    _common(p, method)
    return p


def audio_files(paths: list[str]) -> list[tuple[Path, Path | None]]:
    """(file, base folder or None) for every input."""
    out = []
    for given in map(Path, paths):
        if given.is_file():
            out.append((given, None))
        elif given.is_dir():
            out += [(f, given) for f in sorted(given.rglob("*")) if f.suffix.lower() in AUDIO_SUFFIXES]
        else:
            raise UserError(f"{given} is neither an audio file nor a folder")
    if not out:
        raise UserError(f"no .wav or .flac files in {', '.join(paths)}")
    return out


def _saved_probe(args, task):
    """The probe --probe or --probe-task names; refused unless it classifies
    the dataset of one of this task's benchmarks (ESC-50, NSynth)."""
    from ..encoders import PROJECT_ROOT
    from ..probing.predict import PREDICT_FIELDS, choose_probe, default_work_dirs
    from ..probing.probe_io import ProbeError, load_probe
    from ..task import load_task
    datasets = sorted({benchmark(name).dataset for name in task.benchmarks})
    takes = f"separate.py takes probes of {' or '.join(datasets)} (the datasets of its benchmarks)"
    if args.probe:
        path = Path(args.probe)
    else:
        folder = PROJECT_ROOT / args.probe_task
        if not (folder / "task.py").is_file():
            raise ProbeError(f"--probe-task {args.probe_task}: {folder} is not a task folder; {takes}")
        probe_task = load_task(folder)
        if probe_task.name not in datasets:
            raise ProbeError(f"--probe-task {args.probe_task} classifies {probe_task.name}; {takes}")
        path = choose_probe(probe_task, default_work_dirs(probe_task))
    probe = load_probe(path, PREDICT_FIELDS)
    if probe.info["task"] not in datasets:
        raise ProbeError(f"{path} is a probe of task {probe.info['task']!r}; {takes}")
    return probe


def _check_probe_fits(probe, separator, method: str) -> None:
    """Refuse a probe whose classes the separator cannot separate, before any work."""
    from ..probing.probe_io import ProbeError
    task = probe.info["task"]
    if separator.dataset is not None and separator.dataset != task:
        raise ProbeError(f"the probe {probe.path} predicts {task} classes but the {method} separator separates "
                         f"{separator.dataset} classes; give a probe of {separator.dataset} (or other --bases)")
    unknown = separator.unknown_classes(probe.classes)
    if unknown:
        raise ProbeError(f"the probe {probe.path} predicts classes the {method} separator does not know: "
                         f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")


def _probe_predictions(probe, args, files: list[Path]) -> dict[str, list[tuple[str, float]]]:
    """file -> [(class, probability)] of the probe's top-k, best first."""
    from ..extraction.extract import resolve_device
    from ..probing.predict import PredictionError, Predictor
    predictor = Predictor(probe, resolve_device(args.device), args.pretrained_dir)   # refuses a changed encoder
    table = predictor.predict_files(files, args.top_k)
    failed = table[table["error"].notna()] if "error" in table else table.iloc[:0]
    if len(failed):
        first = failed.iloc[0]
        raise PredictionError(f"the probe could not classify {first['file']} ({first['error']})"
                              + (f" and {len(failed) - 1} more file(s)" if len(failed) > 1 else ""))
    ranks = sum(1 for c in table.columns if c.startswith("top"))
    print(f"classes predicted by the probe {probe.path}")
    return {row["file"]: [(row[f"top{i}"], float(row[f"p{i}"])) for i in range(1, ranks + 1)]
            for _, row in table.iterrows()}


def separate_main(task, argv: list[str] | None = None) -> list[dict]:
    method = _method(argv if argv is not None else sys.argv[1:])
    args = separate_parser(task, method).parse_args(argv)
    try:
        import numpy as np

        from ..data.audio import load_audio
        from .base import Query
        from .pipeline import separate_files
        work_dir = Path(args.work_dir or task.folder)
        inputs = audio_files(args.inputs)
        files = [f for f, _ in inputs]
        # every check (probe, bases, encoder) comes before the first file is written
        probe = _saved_probe(args, task) if args.probe or args.probe_task else None
        named = list(args.classes or ([args.query] if args.query else []))
        separator = _build(args, work_dir, dataset=probe.info["task"] if probe else None, classes=named or None)
        if probe:
            _check_probe_fits(probe, separator, args.method)
        predicted = _probe_predictions(probe, args, files) if probe else {}
        embedding = np.load(args.query_embedding, allow_pickle=False).astype(np.float32) \
            if args.query_embedding else None

        def query_for(path, audio, rate):
            classes = list(args.classes) if args.classes else None
            if probe:
                top = [name for name, _ in predicted[str(path)]]
                classes = ([args.query] + [c for c in top if c != args.query]) if args.query else top
            # Query.audio is at the separator's rate (the input's for methods that take any rate)
            reference = load_audio(args.query_audio, separator.sample_rate or rate) if args.query_audio else None
            return Query(text=args.query, audio=reference, embedding=embedding, classes=classes)

        def query_notes(path):   # how the classes were chosen, kept in separation.json
            return {"probe": str(probe.path), "predicted": predicted[str(path)]} if probe else {}

        done = []
        for base in dict.fromkeys(b for _, b in inputs):
            group = [f for f, b in inputs if b == base]
            done += separate_files(separator, args.method, group, Path(args.out), query_for, base,
                                   query_notes=query_notes)
    except USER_ERRORS as err:
        _fail(err)
    for item in done[:10]:
        print(f"{item['input']} -> {item['out_dir']}/ ({', '.join(item['files'])})")
    if len(done) > 10:
        print(f"... and {len(done) - 10} more")
    return done


# --------------------------------------------------------------------------- evaluate.py
def evaluate_parser(task, method: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"{task.title}: build a benchmark's mixtures, separate them, score SDRi and SI-SDR (AudioSep's "
                    "definitions; BSS-eval SDR on duets) and write results/<benchmark>/<method>/ (result.json, "
                    "scores.csv per mixture) and a row of results/separation_results.csv. Rerunning the same "
                    "command continues an interrupted run. Benchmarks: "
                    + "; ".join(f"{b.name}: {b.title}" for b in BENCHMARKS.values()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--benchmark", default="esc50", choices=list(BENCHMARKS))
    p.add_argument("--data-root", help="the dataset (ESC-50 root for esc50, $ESC50_ROOT; the folder holding "
                                       "nsynth-test/ for nsynth_duets, $NSYNTH_ROOT)")
    p.add_argument("--mixture-list", help="esc50: another list in AudioSep's format (idx,caption,src_wav,"
                                          "noise_wav) instead of the shipped esc50_eval.csv")
    p.add_argument("--mixture-dir", help="esc50: AudioSep's own pre-mixed evaluation WAVs "
                                         "(segment-<idx>.wav, mixture-<idx>.wav) instead of mixing ESC-50")
    p.add_argument("--limit", type=int, help="score only the first N mixtures (a quick look; marked partial)")
    p.add_argument("--save-audio", type=int, default=0, help="also write mixture/reference/estimate WAVs of the "
                                                             "first N mixtures")
    p.add_argument("--overwrite", action="store_true", help="replace scores made with other settings")
    _common(p, method)
    return p


def evaluate_main(task, argv: list[str] | None = None):
    import os
    import warnings

    method = _method(argv if argv is not None else sys.argv[1:])
    args = evaluate_parser(task, method).parse_args(argv)
    from ..cli import show_warnings   # after parsing: it imports torch, which --help does not need
    warnings.showwarning = show_warnings
    from .pipeline import evaluate
    from .report import markdown_rows
    try:
        bench = benchmark(args.benchmark)
        work_dir = Path(args.work_dir or task.folder)
        data_root = args.data_root or os.environ.get(bench.data_env) or None
        separator = _build(args, work_dir, dataset=bench.dataset)
        run = evaluate(separator, args.method, bench, data_root, work_dir, mixture_list=args.mixture_list,
                       mixture_dir=args.mixture_dir, limit=args.limit, overwrite=args.overwrite,
                       save_audio=args.save_audio)
    except USER_ERRORS as err:
        _fail(err)
    result = run.result
    for failure in run.failures[:10]:
        print(f"failed: {failure['id']}: {failure['error']}", file=sys.stderr)
    if len(run.failures) > 10:
        print(f"... {len(run.failures) - 10} more failures, listed in {result['result_file']}", file=sys.stderr)
    import pandas as pd

    from .pipeline import csv_row
    print()
    print(markdown_rows(pd.DataFrame([csv_row(result)])))
    print(f"\n{result['scored']} of {result['mixtures']} mixtures scored ({result['failed']} failed, "
          f"{result['excluded']} excluded) in {result['seconds']} s; {result['result_file']}")
    return run


# --------------------------------------------------------------------------- train.py (NMF bases)
def train_parser(task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"{task.title}: learn NMF spectral bases per class from solo training clips (for the nmf "
                    "method) and save them as <work-dir>/models/nmf/<name>.bases.safetensors + .bases.json. "
                    "esc50: clips of the given folds (mixtures using them are left out when nmf is scored); "
                    "nsynth: notes of nsynth-train per instrument family.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="esc50", choices=("esc50", "nsynth"))
    p.add_argument("--data-root", help="ESC-50 root ($ESC50_ROOT) or the folder holding nsynth-train/ ($NSYNTH_ROOT)")
    p.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3], help="esc50: folds to learn from")
    p.add_argument("--components", type=int, default=16, help="bases per class (seed 002: 16)")
    p.add_argument("--max-clips-per-class", type=int, default=50, help="clips per class (a seeded choice)")
    p.add_argument("--max-frames", type=int, default=4000, help="STFT frames per class given to NMF (evenly spaced)")
    p.add_argument("--max-iter", type=int, default=200, help="NMF iterations")
    p.add_argument("--sample-rate", type=int, help="rate of the bases (default: the benchmark's, 32 kHz for "
                                                   "esc50, 16 kHz for nsynth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="file stem (default: <dataset>-<folds or split>-k<components>)")
    p.add_argument("--work-dir", help="where models/ goes (default: the task folder)")
    return p


def train_main(task, argv: list[str] | None = None) -> Path:
    import os
    import warnings

    args = train_parser(task).parse_args(argv)
    from ..cli import show_warnings   # after parsing: it imports torch, which --help does not need
    warnings.showwarning = show_warnings
    from .nmf import train_bases
    try:
        env = "ESC50_ROOT" if args.dataset == "esc50" else "NSYNTH_ROOT"
        path = train_bases(args.dataset, args.data_root or os.environ.get(env), Path(args.work_dir or task.folder),
                           folds=args.folds, n_components=args.components, max_clips=args.max_clips_per_class,
                           max_frames=args.max_frames, max_iter=args.max_iter, sample_rate=args.sample_rate,
                           seed=args.seed, name=args.name)
    except USER_ERRORS as err:
        _fail(err)
    print(f"wrote {path}")
    return path
