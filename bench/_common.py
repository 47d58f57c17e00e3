"""Shared by the bench scripts: a synthetic CSV dataset on disk and its task."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))


def csv_task(root: Path, metadata: str = "meta.csv"):
    """A task over `root/<metadata>` (columns file, fold, label; audio/{file})."""
    from common.data import CsvDataset
    from common.probing.protocols import OfficialFolds, Protocol
    from common.task import Task
    reader = CsvDataset(name="Bench", metadata=metadata, audio="audio/{file}", label="label", id="file",
                        columns=("file", "fold", "label"), subdirs=(), download="(synthetic, made by bench/)")
    return Task(name="bench", title="Bench", read=reader, folder=root, data_env="BENCH_ROOT", download="-",
                protocols={"official": Protocol("official", OfficialFolds("fold"))})


def write_clips(root: Path, clips: int, seconds: float, rate: int = 16000, seed: int = 0,
                metadata: str = "meta.csv", min_seconds: float | None = None) -> list[Path]:
    """`clips` WAV files (16-bit PCM, tones + noise) under root/audio/ and the
    CSV listing them; files already there are reused. Clips last `seconds`, or
    uniformly between `min_seconds` and `seconds` (in file order at random)."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = np.full(clips, int(round(seconds * rate)))
    if min_seconds is not None and min_seconds < seconds:
        lengths = rng.integers(int(round(min_seconds * rate)), lengths[0] + 1, clips)
    rows, paths = [], []
    for k in range(clips):
        name = f"clip{k:06d}.wav"
        path = audio / name
        if not path.exists():
            t = np.arange(lengths[k]) / rate
            x = 0.3 * np.sin(2 * np.pi * (200 + 37 * (k % 50)) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
        rows.append({"file": name, "fold": k % 5 + 1, "label": f"c{k % 10}"})
        paths.append(path)
    pd.DataFrame(rows).to_csv(root / metadata, index=False)
    return paths


class Timer:
    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._start
