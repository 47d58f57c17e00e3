"""A tiny CSV-described task built in a temp folder (also shows that a new
dataset of that kind is a declaration only)."""
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from common.data import CsvDataset
from common.probing.protocols import OfficialFolds, Protocol
from common.task import Task


def make_toy_task(root: Path, per_class: int = 6, classes: int = 3, corrupt: int = 0) -> Task:
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for c in range(classes):
        for k in range(per_class):
            name = f"c{c}_{k}.wav"
            seconds = 0.5 + 0.25 * (k % 3)
            t = np.arange(int(16000 * seconds)) / 16000
            x = 0.3 * np.sin(2 * np.pi * (300 + 400 * c) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(audio / name, x, 16000)
            rows.append({"file": name, "fold": k % 3 + 1, "label": f"class{c}"})
    for k in range(corrupt):
        (audio / rows[k]["file"]).write_bytes(b"not a wav at all")
    pd.DataFrame(rows).to_csv(root / "meta.csv", index=False)
    reader = CsvDataset(name="Toy", metadata="meta.csv", audio="audio/{file}", label="label", id="file",
                        columns=("file", "fold", "label"), subdirs=(), download="(made by the tests)")
    return Task(name="toy", title="Toy", read=reader, folder=root, data_env="TOY_ROOT", download="-",
                protocols={"official": Protocol("official", OfficialFolds("fold"))})
