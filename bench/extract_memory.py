"""Peak memory of an extraction does not grow with the number of items.

    python bench/extract_memory.py [--small 2000] [--large 20000] [--seconds 0.25] [--num-workers K]

Writes `--large` tiny synthetic clips (16 kHz WAV) once to a temp folder, with
two CSV listings (the first `--small` clips, and all of them), then extracts
`mfcc` embeddings of each listing in a fresh Python process, so that the two
peaks are measured apart. Each child reports its own peak resident set
(VmHWM from /proc/self/status, ru_maxrss where /proc is absent), its resident
set before extracting (imports, encoder), and the peak of its DataLoader
workers (ru_maxrss of its waited-for children).

The last line holds the key figure: growth of the main process's peak from
the small to the large run (target: under 100 MB).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import csv_task, write_clips  # noqa: E402


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # ru_maxrss: kB on Linux, bytes on macOS
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return kb / 1024


def child(root: Path, metadata: str, work: Path, num_workers: int | None) -> None:
    import common.extraction.extract as ex
    task = csv_task(root, metadata)
    ex.build_encoder("mfcc")  # imports done before the baseline
    before = (_status_kb("VmRSS") or 0) / 1024
    start = time.perf_counter()
    store = ex.extract_embeddings(task, "mfcc", root, work_dir=work, store_name=Path(metadata).stem,
                                  num_workers=num_workers, progress=False, overwrite=True)
    seconds = time.perf_counter() - start
    meta = store.meta()
    assert meta["complete"] and meta["num_failed"] == 0
    workers_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"items": meta["num_items"], "seconds": seconds, "rss_before_mb": before,
                      "peak_mb": peak_rss_mb(), "workers_peak_mb": workers_kb / 1024}))


def measure(root: Path, metadata: str, work: Path, num_workers: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), metadata, str(work)]
    if num_workers is not None:
        cmd += ["--num-workers", str(num_workers)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=2000, help="clips in the small run (default 2000)")
    parser.add_argument("--large", type=int, default=20000, help="clips in the large run (default 20000)")
    parser.add_argument("--seconds", type=float, default=0.25, help="clip length (default 0.25)")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: the pipeline's)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder for the clips, kept for later runs (default: a temp folder, deleted)")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "METADATA", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        root, metadata, work = args.child
        return child(Path(root), metadata, Path(work), args.num_workers)

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = args.data or Path(tmp) / "data"
        start = time.perf_counter()
        write_clips(root, args.large, args.seconds, metadata="meta-large.csv")
        write_clips(root, args.small, args.seconds, metadata="meta-small.csv")  # reuses the files
        print(f"{args.large:,} clips of {args.seconds:g} s in {root} ({time.perf_counter() - start:.0f} s to write)",
              flush=True)
        runs = {}
        for name, n in (("small", args.small), ("large", args.large)):
            r = runs[name] = measure(root, f"meta-{name}.csv", Path(tmp) / "work", args.num_workers)
            print(f"  {n:>7,} clips: peak RSS {r['peak_mb']:7.1f} MB (before extraction {r['rss_before_mb']:.1f} MB), "
                  f"DataLoader workers' peak {r['workers_peak_mb']:.1f} MB, {r['seconds']:.1f} s "
                  f"({n / r['seconds']:.0f} clips/s)", flush=True)
    growth = runs["large"]["peak_mb"] - runs["small"]["peak_mb"]
    print(f"peak RSS growth from {args.small:,} to {args.large:,} clips: {growth:+.1f} MB (target < 100 MB)")


if __name__ == "__main__":
    main()
