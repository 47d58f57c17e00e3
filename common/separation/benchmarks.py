"""Benchmark mixtures: what a separator is scored on.

`esc50` (AudioSep's ESC-50 protocol)
    The 2,000 rows of AudioSep's `evaluation/metadata/esc50_eval.csv`
    (shipped here as `esc50_eval.csv`; see README.md in this folder): every
    ESC-50 clip once as the target, queried by its class name (`caption`), mixed
    with the interfering clip of another class named on its row. AudioSep
    scores pre-mixed WAVs from a download it does not document; we build the
    mixtures from a local ESC-50 the way its training mixer (`SegmentMixer`)
    does, at a fixed 0 dB: both clips read at 32 kHz mono and cut or padded to
    5 s, the interference scaled to the target's energy (ratio clamped to
    [0.02, 50]), and when the sum peaks above 1 both target and mixture are
    scaled by 0.9 / peak. The same local files give the same mixtures, bit for
    bit. `--mixture-dir` scores AudioSep's own pre-mixed WAVs instead
    (`segment-<idx>.wav`, `mixture-<idx>.wav`), when you have them.

`nsynth_duets` (seed 002's duet setting)
    Pairs of NSynth test notes of two different instrument families, mixed at 0
    dB, 4 s at 16 kHz, drawn with a fixed seed; the query names both families
    (target first). Scored with BSS-eval SDR beside SDRi and SI-SDR.

A row whose clip is missing or unreadable yields a `MixtureError` (a
UserError naming the row and file) in place of its mixture; the pipeline
reports it and scores the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..data.audio import AudioReadError, load_audio
from ..errors import UserError
from .base import Query

HERE = Path(__file__).resolve().parent
ESC50_MIXTURE_LIST = HERE / "esc50_eval.csv"
MIXTURE_LIST_COLUMNS = ("idx", "caption", "src_wav", "noise_wav")
ESC50_DOWNLOAD = "https://github.com/karolpiczak/ESC-50 (archive master.zip)"
NSYNTH_DOWNLOAD = "https://magenta.tensorflow.org/datasets/nsynth (json/wav archives)"


class MixtureError(UserError):
    """A benchmark row that cannot be built (missing or unreadable clip)."""


class MixtureListError(UserError):
    """A mixture list that is not in AudioSep's format."""


@dataclass
class BenchmarkMixture:
    id: str                       # stable row id, e.g. "esc50-0007"
    mixture: np.ndarray           # [T] float32 at `sample_rate`
    target: np.ndarray            # [T] the reference of the queried source
    query: Query
    sample_rate: int
    info: dict = field(default_factory=dict)   # clips, classes, gains: JSON-able

    @property
    def interference(self) -> np.ndarray:
        return self.mixture - self.target


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad to `length` samples."""
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))


def mix_at_snr(target: np.ndarray, interference: np.ndarray, snr_db: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray, dict]:
    """AudioSep's SegmentMixer at a fixed SNR: the interference rescaled to
    the target's energy (energy ratio clamped to [0.02, 50] in amplitude),
    attenuated by `snr_db`, added; both scaled by 0.9 / peak if the sum clips.
    Returns (mixture, target, gains), float32."""
    target = np.asarray(target, dtype=np.float32)
    interference = np.asarray(interference, dtype=np.float32)
    energy_t = float(np.mean(target.astype(np.float64) ** 2))
    energy_i = max(float(np.mean(interference.astype(np.float64) ** 2)), 1e-10)
    ratio = min(max((energy_i / max(energy_t, 1e-10)) ** 0.5, 0.02), 50.0)
    gain = 10.0 ** (-snr_db / 20.0) / ratio
    mixture = target + np.float32(gain) * interference
    peak = float(np.max(np.abs(mixture))) if len(mixture) else 0.0
    scale = 0.9 / peak if peak > 1.0 else 1.0
    if scale != 1.0:
        target, mixture = target * np.float32(scale), mixture * np.float32(scale)
    return mixture.astype(np.float32), target.astype(np.float32), \
        {"interference_gain": gain, "declip_scale": scale}


def read_mixture_list(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MixtureListError(f"mixture list {path} not found: give a CSV with the columns "
                               f"{', '.join(MIXTURE_LIST_COLUMNS)} (AudioSep's esc50_eval.csv format)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in MIXTURE_LIST_COLUMNS if c not in table.columns]
    if missing:
        raise MixtureListError(f"{path} lacks the column(s) {missing}; a mixture list has the columns "
                               f"{', '.join(MIXTURE_LIST_COLUMNS)} (AudioSep's esc50_eval.csv format)")
    if not table["idx"].is_unique:
        raise MixtureListError(f"{path}: the idx column repeats {table['idx'][table['idx'].duplicated()].iloc[0]!r}; "
                               "every mixture needs its own idx")
    return table


# --------------------------------------------------------------------------- the benchmarks
@dataclass
class Benchmark:
    """A named set of mixtures; `mixtures(root)` yields (row id, mixture or
    MixtureError) in a fixed order."""
    name: str
    title: str
    sample_rate: int
    bss_eval: bool = False        # also score BSS-eval SDR
    dataset: str = ""             # the dataset its clips come from (NMF bases are learned per dataset)
    data_env: str = ""
    download: str = ""

    def settings(self) -> dict:
        return {"name": self.name, "sample_rate": self.sample_rate}

    def row_ids(self, root, **kwargs) -> list[str]:
        raise NotImplementedError

    def complete(self, root, **kwargs) -> bool:
        """Whether the data under `root` is the whole dataset the benchmark draws
        from (False: e.g. the demo data; scores are then marked not comparable)."""
        return True

    def mixtures(self, root, skip: set[str] = frozenset(), **kwargs) -> Iterator[tuple[str, object]]:
        raise NotImplementedError


@dataclass
class ESC50Mixtures(Benchmark):
    duration: float = 5.0
    snr_db: float = 0.0
    mixture_list: Path = ESC50_MIXTURE_LIST

    def settings(self, mixture_list: str | Path | None = None, mixture_dir: str | Path | None = None) -> dict:
        listed = Path(mixture_list or self.mixture_list)
        return {"name": self.name, "sample_rate": self.sample_rate, "duration": self.duration,
                "snr_db": self.snr_db, "mixture_list": listed.name,
                "official_list": listed.resolve() == ESC50_MIXTURE_LIST.resolve(),
                "premixed": bool(mixture_dir)}

    def root(self, given) -> Path:
        from ..data.base import find_root
        return find_root(given, "meta/esc50.csv", ("ESC-50-master", "ESC-50"), "ESC-50", self.download,
                         self.data_env)

    def row_ids(self, root, mixture_list=None, mixture_dir=None, **kwargs) -> list[str]:
        if mixture_dir is None:
            self.root(root)   # a wrong --data-root is reported before any work
        return [f"{self.name}-{int(i):04d}" for i in read_mixture_list(mixture_list or self.mixture_list)["idx"]]

    def mixtures(self, root, skip=frozenset(), mixture_list=None, mixture_dir=None, exclude_clips=frozenset()
                 ) -> Iterator[tuple[str, object]]:
        table = read_mixture_list(mixture_list or self.mixture_list)
        base = self.root(root) if root is not None or mixture_dir is None else None
        categories = self._categories(base) if base is not None else {}
        length = int(round(self.duration * self.sample_rate))
        for row in table.to_dict("records"):
            row_id = f"{self.name}-{int(row['idx']):04d}"
            if row_id in skip or row["src_wav"] in exclude_clips or row["noise_wav"] in exclude_clips:
                continue
            classes = [categories.get(_class_id(row["src_wav"]), row["caption"].replace(" ", "_")),
                       categories.get(_class_id(row["noise_wav"]), "interference")]
            info = {"target_clip": row["src_wav"], "interference_clip": row["noise_wav"],
                    "caption": row["caption"], "target_class": classes[0], "interference_class": classes[1]}
            query = Query(text=row["caption"], classes=classes)
            try:
                if mixture_dir:
                    folder = Path(mixture_dir)
                    target = load_audio(folder / f"segment-{row['idx']}.wav", self.sample_rate)
                    mixture = load_audio(folder / f"mixture-{row['idx']}.wav", self.sample_rate)
                    info["premixed"] = True
                else:
                    clips = []
                    for column in ("src_wav", "noise_wav"):
                        path = base / "audio" / row[column]
                        if not path.is_file():
                            raise MixtureError(f"mixture {row['idx']}: {path} is missing from the ESC-50 download")
                        clips.append(fit_length(load_audio(path, self.sample_rate), length))
                    mixture, target, gains = mix_at_snr(clips[0], clips[1], self.snr_db)
                    info.update(gains)
            except AudioReadError as err:
                yield row_id, MixtureError(f"mixture {row['idx']}: {err}")
                continue
            except MixtureError as err:
                yield row_id, err
                continue
            yield row_id, BenchmarkMixture(row_id, mixture, target, query, self.sample_rate, info)

    @staticmethod
    def _categories(base: Path) -> dict[str, str]:
        meta = pd.read_csv(base / "meta" / "esc50.csv", dtype=str)
        return dict(zip(meta["target"], meta["category"]))


def _class_id(filename: str) -> str:
    """ESC-50 file names end in -<class id>.wav."""
    return Path(filename).stem.rsplit("-", 1)[-1]


@dataclass
class NSynthDuets(Benchmark):
    """Seed 002's duet setting on NSynth: `count` pairs of test notes of two
    different families, drawn with `seed`, mixed at `snr_db`."""
    duration: float = 4.0
    snr_db: float = 0.0
    count: int = 200
    seed: int = 0
    split: str = "test"

    def settings(self, **kwargs) -> dict:
        return {"name": self.name, "sample_rate": self.sample_rate, "duration": self.duration,
                "snr_db": self.snr_db, "count": self.count, "seed": self.seed, "split": self.split}

    def pairs(self, root) -> pd.DataFrame:
        from ..data.nsynth import read_nsynth
        items = read_nsynth(root).items
        notes = items[items["split"] == self.split].sort_values("id").reset_index(drop=True)
        if notes["label"].nunique() < 2:
            raise MixtureError(f"NSynth {self.split} split under {root} holds fewer than two instrument families; "
                               "duets need two")
        rng = np.random.default_rng(self.seed)
        rows = []
        while len(rows) < self.count:
            a, b = rng.choice(len(notes), size=2, replace=False)
            if notes.at[a, "label"] != notes.at[b, "label"]:
                rows.append((notes.loc[a], notes.loc[b]))
        return rows

    def row_ids(self, root, **kwargs) -> list[str]:
        return [f"{self.name}-{i:04d}" for i in range(self.count)]

    def complete(self, root, **kwargs) -> bool:
        # the pairs are drawn from the split's notes: fewer notes, other pairs
        import json

        from ..data.nsynth import SPLITS
        listed = Path(root).expanduser().resolve() / f"nsynth-{self.split}" / "examples.json"
        return len(json.loads(listed.read_text())) == SPLITS[self.split]

    def mixtures(self, root, skip=frozenset(), exclude_clips=frozenset(), **kwargs):
        length = int(round(self.duration * self.sample_rate))
        for i, (a, b) in enumerate(self.pairs(root)):
            row_id = f"{self.name}-{i:04d}"
            if row_id in skip or a["id"] in exclude_clips or b["id"] in exclude_clips:
                continue
            try:
                clips = [fit_length(load_audio(note["path"], self.sample_rate), length) for note in (a, b)]
            except AudioReadError as err:
                yield row_id, MixtureError(f"duet {i}: {err}")
                continue
            mixture, target, gains = mix_at_snr(clips[0], clips[1], self.snr_db)
            info = {"target_clip": a["id"], "interference_clip": b["id"], "target_class": a["label"],
                    "interference_class": b["label"], **gains}
            query = Query(text=a["label"].replace("_", " "), classes=[a["label"], b["label"]])
            yield row_id, BenchmarkMixture(row_id, mixture, target, query, self.sample_rate, info)


BENCHMARKS: dict[str, Benchmark] = {
    "esc50": ESC50Mixtures("esc50", "ESC-50 (AudioSep protocol)", sample_rate=32000, dataset="esc50",
                           data_env="ESC50_ROOT", download=ESC50_DOWNLOAD),
    "nsynth_duets": NSynthDuets("nsynth_duets", "NSynth duets (seed 002)", sample_rate=16000, bss_eval=True,
                                dataset="nsynth", data_env="NSYNTH_ROOT", download=NSYNTH_DOWNLOAD),
}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown separation benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
