"""Separation pipeline vs the bare separator, and memory against mixture count.

    python bench/separation_throughput.py                    # nmf and oracle_irm, 40 demo mixtures
    python bench/separation_throughput.py --mixtures 80 --methods nmf

On the demo ESC-50 clips (common.data.demo, 5 s, 44.1 kHz files) with a mixture
list in AudioSep's format:

- **bare**: `separator.separate` alone on mixtures built beforehand (at 32 kHz,
  in memory), the same mixtures in the same order;
- **pipeline**: `common.separation.pipeline.evaluate` from the files on disk:
  reading and resampling both clips, mixing, separating, scoring SDR/SDRi/SI-SDR,
  saving scores and results.

Ratio = pipeline / bare (wall and CPU time). Memory: the peak of traced
allocations (tracemalloc, numpy included) during `evaluate` on N and on 4N
mixtures; flat means the run does not keep audio per mixture.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
import pandas as pd


def mixture_list(esc50_root: Path, count: int, path: Path) -> Path:
    """`count` rows pairing demo clips of different classes (cycling), from
    folds 4-5 only (the NMF bases learn from folds 1-3)."""
    meta = pd.read_csv(esc50_root / "meta" / "esc50.csv")
    meta = meta[meta["fold"] >= 4].reset_index(drop=True)
    files, targets, categories = list(meta["filename"]), list(meta["target"]), list(meta["category"])
    rows, step = [], 7
    for i in range(count):
        a = i % len(files)
        b = (a + step * (1 + i // len(files))) % len(files)
        while targets[b] == targets[a]:
            b = (b + 1) % len(files)
        rows.append({"idx": i, "caption": categories[a].replace("_", " "), "src_wav": files[a], "noise_wav": files[b]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixtures", type=int, default=40)
    p.add_argument("--methods", nargs="+", default=["nmf", "oracle_irm"])
    args = p.parse_args(argv)

    from common.data.demo import make_demo_datasets
    from common.separation.baselines import OracleIRM
    from common.separation.benchmarks import BENCHMARKS
    from common.separation.nmf import NMFSeparator, train_bases
    from common.separation.pipeline import evaluate, run_separator

    tmp = Path(tempfile.mkdtemp(prefix="sepbench-"))
    try:
        root = make_demo_datasets(tmp / "data", tasks=["esc50"])["esc50"]
        bench = BENCHMARKS["esc50"]
        bases = train_bases("esc50", root, tmp / "work", folds=(1, 2, 3), n_components=16, max_frames=2000)
        separators = {"nmf": lambda: NMFSeparator(bases), "oracle_irm": lambda: OracleIRM()}
        small = mixture_list(root, args.mixtures, tmp / "small.csv")
        large = mixture_list(root, 4 * args.mixtures, tmp / "large.csv")
        built = [m for _, m in bench.mixtures(root, mixture_list=small)]
        summary = []
        for method in args.methods:
            separator = separators[method]()
            refs = lambda m: {"target": m.target, "interference": m.interference} \
                if separator.needs_references else None  # noqa: E731
            run_separator(separator, built[0].mixture, bench.sample_rate, built[0].query, refs(built[0]))  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            for m in built:
                work = separator.sample_rate or m.sample_rate
                assert work == m.sample_rate, "bare timing assumes no resampling"
                separator.separate(m.mixture, m.query, refs(m))
            bare_wall, bare_cpu = time.perf_counter() - wall, time.process_time() - cpu

            wall, cpu = time.perf_counter(), time.process_time()
            tracemalloc.start()
            run = evaluate(separator, method, bench, root, tmp / f"run-{method}-small", mixture_list=small,
                           progress=False)
            assert run.result["scored"] == len(built), run.result
            peak_small = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            pipe_wall, pipe_cpu = time.perf_counter() - wall, time.process_time() - cpu
            tracemalloc.start()
            evaluate(separator, method, bench, root, tmp / f"run-{method}-large", mixture_list=large, progress=False)
            peak_large = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            line = (f"{method}: {args.mixtures} mixtures, bare {bare_wall:.1f} s wall / {bare_cpu:.1f} s CPU, "
                    f"pipeline {pipe_wall:.1f} s / {pipe_cpu:.1f} s: ratio {pipe_wall / bare_wall:.2f} wall, "
                    f"{pipe_cpu / bare_cpu:.2f} CPU; peak traced memory {peak_small / 2**20:.0f} MiB at "
                    f"{args.mixtures} mixtures, {peak_large / 2**20:.0f} MiB at {4 * args.mixtures}")
            print(line, flush=True)
            summary.append(f"{method} {pipe_cpu / bare_cpu:.2f}x CPU ({pipe_wall / bare_wall:.2f}x wall), "
                           f"memory {peak_small / 2**20:.0f}->{peak_large / 2**20:.0f} MiB")
        print("pipeline/bare: " + "; ".join(summary))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
